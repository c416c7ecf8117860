"""The `archsearch` command line: run, worker, spaces, init, describe, presets, data, runs, leaderboard, report,
export, predict.

Each command is a module of `archsearch.cli.commands`, which imports what it
needs only when it runs. Errors that archsearch understands (a bad space
file, missing data, an infeasible architecture, a full disk, ...) print one
line and exit with status 2; `--debug` shows the traceback instead.
"""

import argparse
import os
import sys

from archsearch.cli.commands import (
    data,
    describe,
    export,
    init,
    leaderboard,
    predict,
    presets,
    report,
    run,
    runs,
    spaces,
    worker,
)
from archsearch.cli.console import interrupt_outside_gc_callbacks, quiet
from archsearch.errors import ArchsearchError
from archsearch.files import is_disk_full

# In --help's order.
COMMANDS = (run, worker, spaces, init, describe, presets, data, runs, leaderboard, report, export, predict)


def _parser():
    parser = argparse.ArgumentParser(
        prog="archsearch", description="Search the VGG/ResNet recipe for the best image classifier."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv=None):
    """Runs one command, e.g. `main(["leaderboard", "results/digits"])`; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.debug:
        from archsearch.compat.keras_tuner import show_tracebacks

        show_tracebacks(True)
    try:
        return args.handler(args) or 0
    except ArchsearchError as error:
        if args.debug:
            raise
        print(f"archsearch: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a full disk, said in one line as `run` says it; anything else is a bug: a traceback
        if args.debug or not is_disk_full(error):
            raise
        where = getattr(error, "filename", None) or getattr(args, "out", None) or getattr(args, "results", None)
        print(
            f"archsearch: error: {f'{where}: ' if where else ''}no space left on device; "
            "free some space, then run the command again",
            file=sys.stderr,
        )
        return 2


def console_main():
    """Entry point of the `archsearch` console script and `python -m archsearch`: `main()`, quietly.

    The filter on standard error (`archsearch.cli.console.quiet()`) is set up for
    the whole process, so it is done here, in the program's entry point, and
    not in `main()`, which tests call in their own process.
    """
    debug = "--debug" in sys.argv[1:]
    if not debug:
        quiet()
    interrupt_outside_gc_callbacks()
    try:
        return main()
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (a `console.Terminated`)
        if debug:
            raise
        from archsearch.cli.console import interrupted_line, interrupted_status

        print(interrupted_line(interrupt, sys.argv[1:]), file=sys.stderr)
        return interrupted_status(interrupt)
    except BrokenPipeError:
        # The reader went away (`archsearch presets | head`): stop quietly, as Unix tools do, with
        # standard output pointed at /dev/null so that Python's flush at exit does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
