"""Keeps TensorFlow's native log lines off standard error, for the command line and for notebooks.

TensorFlow 2.21 writes its start-up lines from C++, straight to file
descriptor 2, before Python's logging exists and whatever
`TF_CPP_MIN_LOG_LEVEL` says; some come later (the first `tf.data` pipeline,
the first device query, each load of a `.tflite` file). No library option
removes them all, so a thread reads descriptor 2 through a pipe and passes
every line on except those in absl's log format
(`I0000 00:00:...  file.cc:12] ...`) and the banner lines that come with
them. A Jupyter kernel shows what its descriptor 2 receives in the cells, so
`archsearch.run()` puts the same filter there.
"""

import atexit
import os
import re
import sys
import threading

NOISE = re.compile(
    # absl's: I0000 00:00:1795572767.063936  6509 port.cc:153]
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.-]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags"
    # LiteRT's interpreter, each time the export check loads model.tflite, and its int8 quantizer:
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
    rb"|fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+$)"
)

_filtered = set()  # the descriptors filtered already: a second run in one notebook kernel adds no second thread


def filter_native_logs(stream_fd=2):
    """Filters TensorFlow's native log lines out of `stream_fd`, from now until the process exits.

    Call it before TensorFlow is imported to catch its start-up lines too;
    calling it again does nothing. `TF_CPP_MIN_LOG_LEVEL` is set to 3 (what
    TensorFlow does honour, in child processes too) unless already set.

    Args:
        stream_fd: the file descriptor to filter (standard error).

    Example:

    >>> filter_native_logs()  # doctest: +SKIP
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if stream_fd in _filtered:
        return
    _filtered.add(stream_fd)
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
