"""The project's tests and `drimcheck run` in a checkout: the step library's pytest wiring (steps/_plugin.py)."""

pytest_plugins = ["steps._plugin"]
