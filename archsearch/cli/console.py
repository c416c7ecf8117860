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

    Args:
        interrupt: the `KeyboardInterrupt` (a `Terminated` for SIGTERM).
        argv: the command's arguments, e.g. `["run", "search_spaces/digits.py", "--results", "out"]`.

    Example:

    >>> interrupted_line(Terminated("SIGTERM"), ["run", "digits.py", "--results", "out"])
    'archsearch: terminated (SIGTERM); the run continues with `archsearch run digits.py --results out --resume`'
    """
    stopped = "terminated (SIGTERM)" if isinstance(interrupt, Terminated) else "interrupted"
    if not argv or argv[0] != "run":
        return f"archsearch: {stopped}"
    again = ["archsearch", *argv, *([] if "--resume" in argv else ["--resume"])]
    return f"archsearch: {stopped}; the run continues with `{shlex.join(again)}`"


def interrupted_status(interrupt):
    """The exit status of an interrupted command: 128 plus the signal's number, as a shell reports it (130, 143)."""
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)


def note(line):
    """A remark for the person at the terminal, kept out of the output scripts read (standard error)."""
    print(line, file=sys.stderr)
