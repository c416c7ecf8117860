"""Keeps the terminal to what archsearch says: no TensorFlow, absl, CUDA or oneDNN start-up lines.

The native lines TensorFlow writes to descriptor 2 are filtered out
(`archsearch.output.native_logs`); Python warnings from dependencies are
silenced too, and absl's, TensorFlow's and JAX's loggers keep to errors;
archsearch's own warnings (about your data, say) stay. `archsearch --debug`
turns all of this off. Ctrl-C and SIGTERM stop a command cleanly.
"""

import gc
import logging
import os
import shlex
import signal
import sys
import threading
import warnings

from archsearch.output.native_logs import filter_native_logs


def quiet(stream_fd=2):
    """Filters native start-up noise out of `stream_fd` and silences dependencies' warnings.

    Call it once, first thing in a command, before TensorFlow is imported.

    Args:
        stream_fd: the file descriptor to filter (standard error).

    Example:

    >>> quiet()  # doctest: +SKIP
    """
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # what TensorFlow does honour (child processes too)
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"archsearch(\.|$)")
    for name in ("absl", "tensorflow", "jax"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        # A filter too, which stays whatever sets the level later: on JAX, a run's export still
        # printed TensorFlow's SavedModel warnings of "unsaved custom gradients" through absl.
        logger.addFilter(lambda record: record.levelno >= logging.ERROR)
    filter_native_logs(stream_fd)


class Terminated(KeyboardInterrupt):
    """SIGTERM, as a batch scheduler, `docker stop` or systemd sends it: stops the program as Ctrl-C does.

    A `KeyboardInterrupt`, so that whatever records an interrupted run (its
    `run.json` says `stopped`) records this one too; the command line tells
    the two apart only by their exit status (130, 143).
    """


def interrupt_outside_gc_callbacks():
    """Makes Ctrl-C and SIGTERM raise in the program (`KeyboardInterrupt`, `Terminated`), never inside a gc callback.

    Python ignores an exception raised in a gc callback: it prints "Exception
    ignored in ..." with a traceback and goes on running. JAX, which Keras
    imports whenever it is installed, registers such a callback, and it runs
    often while a model trains. A signal that lands there is sent again 50 ms
    later instead, so one press of Ctrl-C, or one SIGTERM, stops the program.
    """

    def handler(signum, frame):
        callbacks = {getattr(callback, "__code__", None) for callback in gc.callbacks}
        while frame is not None:
            if frame.f_code in callbacks:
                threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
                return
            frame = frame.f_back
        if signum == signal.SIGTERM:
            raise Terminated("SIGTERM")
        raise KeyboardInterrupt("Ctrl-C")

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def interrupted_line(interrupt, argv):
    """The line an interrupted command ends with: what stopped it, and for `archsearch run`, how to continue.

    A run that recorded something (`runner.run()` sets `interrupt.run_dir`) continues with the
    same command, `--overwrite` left out (it would delete the run) and `--results RUN --resume`
    naming the run; one that recorded nothing left no directory, so the same command starts it again.

    Args:
        interrupt: the `KeyboardInterrupt` (a `Terminated` for SIGTERM).
        argv: the command's arguments, e.g. `["run", "search_spaces/digits.py", "--results", "out"]`.

    Example:

    >>> stopped = Terminated("SIGTERM")
    >>> stopped.run_dir = "out"
    >>> interrupted_line(stopped, ["run", "digits.py", "--results", "out", "--overwrite"])
    'archsearch: terminated (SIGTERM); the run continues with `archsearch run digits.py --results out --resume`'
    >>> interrupted_line(KeyboardInterrupt(), ["run", "digits.py"])
    'archsearch: interrupted; nothing was recorded; run the command again'
    """
    stopped = "terminated (SIGTERM)" if isinstance(interrupt, Terminated) else "interrupted"
    if not argv or argv[0] != "run":
        return f"archsearch: {stopped}"
    run_dir = getattr(interrupt, "run_dir", None)
    if run_dir is None:
        return f"archsearch: {stopped}; nothing was recorded; run the command again"
    kept = _without(argv, flags=("--overwrite",), with_value=("--results",), maybe_value=("--resume",))
    again = ["archsearch", *kept, "--results", os.fspath(run_dir), "--resume"]
    return f"archsearch: {stopped}; the run continues with `{shlex.join(again)}`"


def _without(argv, flags=(), with_value=(), maybe_value=()):
    """`argv` less the options named, as argparse reads them: `--opt`, `--opt=V`, `--opt V`, or an abbreviation.

    Args:
        argv: the arguments.
        flags: options that take no value.
        with_value: options that take one (the next argument, unless given with `=`).
        maybe_value: options whose value is optional (`nargs="?"`): the next argument, unless it starts with `-`.

    Returns:
        The list of the other arguments, in their order.
    """
    options = (*flags, *with_value, *maybe_value)
    kept, rest = [], list(argv)
    while rest:
        argument = rest.pop(0)
        name, equals, _ = argument.partition("=")
        # argparse accepts any prefix that names one option alone (`--over`); `--res` names two, so it is kept.
        named = [option for option in options if name.startswith("--") and len(name) > 2 and option.startswith(name)]
        if len(named) != 1 or (equals and named[0] in flags):
            kept.append(argument)
        elif not equals and (
            named[0] in with_value or (named[0] in maybe_value and rest and not rest[0].startswith("-"))
        ):
            del rest[:1]
    return kept


def interrupted_status(interrupt):
    """The exit status of an interrupted command: 128 plus the signal's number, as a shell reports it (130, 143)."""
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)


def note(line):
    """A remark for the person at the terminal, kept out of the output scripts read (standard error)."""
    print(line, file=sys.stderr)
