"""Extra subcommands (offline checkers...). Each module defines register(subparsers) and sets
`handler=<function(args) -> int>` on its parser; raise drimcheck.cli.UsageError for bad input."""
