"""The cache of decoded arrays: one folder of `.npy` files per source identity and options, complete or absent."""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import platformdirs

from archsearch.data.images import DiskImages
from archsearch.errors import DataError
from archsearch.files import atomic_file, folder_mode

_CACHE_VERSION = 2  # bump when the cached arrays' meaning changes


def cache_key(identity, data):
    """Digest of the source's identity and of the options that change the cached arrays."""
    options = {
        k: data.to_dict()[k]
        for k in ("classes", "grayscale", "per_class", "test_per_class", "image_size", "train_split", "test_split")
    }
    if data.crop_to_aspect_ratio:  # only when set: the caches and run fingerprints of earlier versions stay valid
        options["crop_to_aspect_ratio"] = True
    text = json.dumps({"version": _CACHE_VERSION, "identity": identity, "options": options}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_folder(cache_dir=None):
    """Returns archsearch's cache folder, created if need be; `None` if it cannot be.

    Args:
        cache_dir: the folder; by default the environment variable
            `ARCHSEARCH_CACHE_DIR`, else the per-user cache folder.
    """
    path = Path(
        cache_dir or os.environ.get("ARCHSEARCH_CACHE_DIR") or platformdirs.user_cache_dir("archsearch")
    ).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        warnings.warn(f"cannot create the cache folder {path} ({error}); nothing will be cached", stacklevel=3)
        return None
    return path


SPLITS = ("train", "test")
_ENTRY_FORMAT = 3  # the layout of an entry: a folder of `.npy` files (format 2 was one `.npz`, converted when met)


def read_cache(entry):
    """Returns `(splits, class names)` of a cache entry, or None when there is none or it is unreadable.

    Each split's images are `DiskImages`, read from disk a batch at a time;
    labels are in memory. An entry of an earlier version (`<key>.npz`, the
    same key) is converted to the folder first, or, where the folder cannot
    be written, read whole from it as before.

    Args:
        entry: the entry's folder, `<cache>/<key>`.
    """
    earlier = entry.with_name(f"{entry.name}.npz")
    if not entry.is_dir() and earlier.is_file():
        unconverted = _convert(earlier, entry)
        if unconverted:
            return unconverted
    if not entry.is_dir():
        return None
    try:
        meta = json.loads((entry / "meta.json").read_text())
        splits = {}
        for split in SPLITS:
            x, y = DiskImages(entry / f"x_{split}.npy"), np.load(entry / f"y_{split}.npy", allow_pickle=False)
            if x.ndim != 4 or x.dtype != np.uint8 or y.shape != (len(x),):
                raise ValueError(f"{split}: images {x.shape} {x.dtype}, labels {y.shape}")
            splits[split] = (x, y)
        return splits, [str(name) for name in meta["class_names"]]
    except (FileNotFoundError, ValueError, KeyError, TypeError) as error:  # incomplete or damaged: decoded again
        warnings.warn(f"ignoring the unreadable cache entry {entry} ({error}); decoding again", stacklevel=3)
        _remove(entry)
    except OSError as error:  # not the entry's fault (permissions, open files): left as it is
        warnings.warn(f"cannot read the cache entry {entry} ({error}); decoding again", stacklevel=3)
    return None


def _remove(entry):
    """Removes a folder: renamed aside first, so that no reader finds it half-deleted."""
    aside = entry.with_name(f".{entry.name}.{os.getpid()}.removed")
    with contextlib.suppress(OSError):
        os.rename(entry, aside)
    shutil.rmtree(aside, ignore_errors=True)


def _convert(earlier, entry):
    """Writes an earlier version's `.npz` entry as a folder, one array at a time, and removes it.

    Returns:
        None; or, where the folder cannot be written, `(splits, class names)` read whole from the `.npz`.
    """
    try:
        with np.load(earlier, allow_pickle=False) as arrays:
            contents = {key: arrays[key] for key in arrays.files}
            splits = {split: (contents[f"x_{split}"], contents[f"y_{split}"]) for split in SPLITS}
            names, source = [str(n) for n in contents["class_names"]], str(contents["source"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        warnings.warn(f"ignoring the unreadable cache file {earlier} ({error}); decoding again", stacklevel=4)
        with contextlib.suppress(OSError):
            earlier.unlink()
        return None
    try:
        with new_entry(entry) as staging:
            save_splits(staging, splits)
            write_meta(staging, names, source)
    except OSError as error:
        warnings.warn(f"cannot convert the cache file {earlier} to a folder ({error}); reading it whole", stacklevel=4)
        return splits, names
    with contextlib.suppress(OSError):
        earlier.unlink()
    return None


@contextlib.contextmanager
def new_entry(entry):
    """Yields a staging folder to write a cache entry into, renamed to `entry` once the block ends without error.

    The files are synced to disk before the rename, so that an entry that
    exists is complete after a power loss too. Where another process
    completed the same entry first, its entry is kept and this one
    discarded: both hold the same arrays. Staging folders of processes that
    are gone are removed.
    """
    for stale in entry.parent.glob(f".{entry.name}.*.tmp"):
        if not _running(stale.name.split(".")[2]):
            shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.{os.getpid()}.", suffix=".tmp", dir=entry.parent))
    os.chmod(staging, folder_mode())  # as a folder made with mkdir is, not mkdtemp's owner-only
    try:
        yield staging
        for path in [*staging.iterdir(), staging]:
            _sync(path)
        try:
            os.rename(staging, entry)
        except OSError:
            if not entry.is_dir():
                raise
        _sync(entry.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _sync(path):
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _running(pid):
    """Whether a process of this id runs on this machine."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def write_meta(folder, names, source):
    """Writes an entry's `meta.json`, last: an entry without it is incomplete."""
    meta = {"format": _ENTRY_FORMAT, "class_names": list(names), "source": source}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def save_splits(folder, splits):
    """Writes splits held in memory as a cache entry's `x_<split>.npy` and `y_<split>.npy`."""
    for split in SPLITS:
        x, y = splits[split]
        np.save(folder / f"x_{split}.npy", np.ascontiguousarray(x, dtype=np.uint8))
        np.save(folder / f"y_{split}.npy", np.asarray(y, dtype=np.int32))


def _save_npz(path, splits, names):
    """Writes `Data.from_arrays()`'s splits and class names to the `.npz` at `path`, atomically (`atomic_file`)."""
    with atomic_file(path, "wb") as file:
        np.savez(
            file,
            x_train=splits["train"][0],
            y_train=splits["train"][1],
            x_test=splits["test"][0],
            y_test=splits["test"][1],
            class_names=np.array(names, dtype=str),
        )


def file_hash(path):
    """The sha256 of a file's bytes: the identity of an archive or a `.npz`."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


ARRAYS = "arrays:"  # the source of `Data.from_arrays()`: "arrays:<digest>", the file `arrays/<digest>.npz` of the cache


def arrays_path(source):
    """The `.npz` that a `Data.from_arrays()` source (`"arrays:<digest>"`) names, in the cache folder; None if none."""
    folder = cache_folder()
    return folder / "arrays" / f"{source.removeprefix(ARRAYS)}.npz" if folder else None


def store_arrays(splits, names):
    """Writes arrays once to the cache, named by the sha256 of their content; returns their source, `arrays:<digest>`.

    The same arrays give the same digest, so a space declared on them keeps
    its fingerprint (and its runs resume), and other arrays give another.

    Args:
        splits: `{"train": (x, y), "test": (x, y)}`, checked (`arrays.checked_arrays()`).
        names: the class names.

    Raises:
        DataError: if there is no cache folder to write to.
    """
    digest = hashlib.sha256(json.dumps(names).encode())
    for split in ("train", "test"):
        for array in splits[split]:
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).data)
    source = ARRAYS + digest.hexdigest()[:20]
    path = arrays_path(source)
    if path is None:
        raise DataError("Data.from_arrays: no cache folder to keep the arrays in; set ARCHSEARCH_CACHE_DIR to one")
    if not path.is_file():
        try:
            path.parent.mkdir(exist_ok=True)
            _save_npz(path, splits, names)
        except OSError as error:
            raise DataError(f"Data.from_arrays: cannot write the arrays to {path} ({error})") from None
    return source
