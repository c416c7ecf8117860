"""Keeps the terminal to what archsearch says: no TensorFlow, absl, CUDA or oneDNN start-up lines.

TensorFlow 2.21 writes its start-up lines from C++, straight to file
descriptor 2, before Python's logging exists and whatever
`TF_CPP_MIN_LOG_LEVEL` says; some come later (the first `tf.data` pipeline,
the first device query). No library option removes them all, so the command
line puts a filter on descriptor 2: a thread passes every line on except
those in absl's log format (`I0000 00:00:...  file.cc:12] ...`) and the two
banner lines that come with them. Python warnings from dependencies are
silenced too; archsearch's own warnings (about your data, say) stay.
`archsearch --debug` turns all of this off.
"""

import atexit
import gc
import logging
import os
import re
import shlex
import signal
import sys
import threading
import warnings

NOISE = re.compile(
    # absl's: I0000 00:00:1795572767.063936  6509 port.cc:153]
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.-]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags"
    # LiteRT's interpreter, each time the export check loads model.tflite, and its int8 quantizer:
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
    rb"|fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+$)"
)


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

    sys.stderr.flush()
    original = os.dup(stream_fd)
    read_end, write_end = os.pipe()
    os.dup2(write_end, stream_fd)
    os.close(write_end)

    def forward():
        with os.fdopen(read_end, "rb") as pipe, os.fdopen(os.dup(original), "wb", buffering=0) as out:
            for line in pipe:
                if not NOISE.match(line):
                    out.write(line)

    thread = threading.Thread(target=forward, name="archsearch-stderr-filter", daemon=True)
    thread.start()

    def restore():
        sys.stderr.flush()
        os.dup2(original, stream_fd)  # closes the pipe's write end: the thread reads to its end
        thread.join(timeout=2)

    atexit.register(restore)


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
