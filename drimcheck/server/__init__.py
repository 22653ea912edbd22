"""Campaign server (`drimcheck serve`): editors and ANS share DUTs, campaigns, evidence and packages.

Layout: db (engine, sessions, migrations), models (SQLAlchemy 2), security (passwords, tokens, roles),
services (the operations the API and the web pages call), queue (huey on the same database), worker (runs
a campaign as a `drimcheck run` subprocess), api (JSON API under /api), web (HTML pages), app (factory).
"""
