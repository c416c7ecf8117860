"""Files written atomically: to a temporary file beside the target, then renamed over it.

A reader (or a crash) never sees half a file, and the file gets the
permissions any new file gets (0666 less the umask), so a teammate or a
server under another account can read results and caches: `tempfile.mkstemp`
alone would leave them 0600. `write_csv()`, `write_json()` and `write_atomic()`
write a whole table, document or text that way. `is_disk_full()` tells a
full disk from the other errors a write can raise.
"""

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path


def _umask():
    """The process's umask (reading it means setting it, for an instant)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def folder_mode():
    """The permissions `mkdir` gives a new folder: 0777 less the umask (for folders made by `tempfile.mkdtemp`)."""
    return 0o777 & ~_umask()


@contextlib.contextmanager
def atomic_file(path, mode="w"):
    """Opens a temporary file that replaces `path` when the block ends without an error.

    Args:
        path: the file to write; its folder must exist.
        mode: `"w"` for text, `"wb"` for bytes.

    Example:

    ```python
    with atomic_file("results/x/trials.csv") as file:
        file.write(text)
    ```
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_atomic(path, text):
    """Writes `text` to `path` through a temporary file and a rename, creating its folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as file:
        file.write(text)


def write_csv(frame, path):
    """Writes a DataFrame as CSV, without its index, atomically."""
    write_atomic(path, frame.to_csv(index=False))


def write_json(data, path):
    """Writes JSON-ready data, indented, atomically (values JSON cannot hold are written as text)."""
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path):
    """Reads a JSON file."""
    return json.loads(Path(path).read_text())


def is_disk_full(error):
    """Whether `error` says the disk is full: Python's ENOSPC, or TensorFlow's (`SaveV2`'s, in the same words).

    Example:

    >>> is_disk_full(OSError(errno.ENOSPC, "No space left on device")), is_disk_full(OSError(errno.EACCES, "no"))
    (True, False)
    """
    return (isinstance(error, OSError) and error.errno == errno.ENOSPC) or os.strerror(errno.ENOSPC) in str(error)
