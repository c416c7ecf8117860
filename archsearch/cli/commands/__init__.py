"""One module per command: `add_parser(commands)` declares its options, `handle(args)` runs it."""

RUN_HELP = "a run directory, or a space's results folder (its most recent complete run)"
