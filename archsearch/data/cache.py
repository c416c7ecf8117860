"""The cache of decoded arrays: one uncompressed `.npz` per source identity and options, written atomically."""

import hashlib
import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import platformdirs

from archsearch.errors import DataError
from archsearch.files import atomic_file

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


def read_cache(path):
    """Returns `(splits, class names)` from a cache file, or None when there is none or it is unreadable."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            splits = {s: (arrays[f"x_{s}"], arrays[f"y_{s}"]) for s in ("train", "test")}
            return splits, [str(n) for n in arrays["class_names"]]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        warnings.warn(f"ignoring the unreadable cache file {path} ({error}); decoding again", stacklevel=3)
        return None


def _save_splits(path, splits, names, **extra):
    """Writes the splits, the class names and `extra` arrays to the `.npz` at `path`, atomically (`atomic_file`)."""
    with atomic_file(path, "wb") as file:
        np.savez(
            file,
            x_train=splits["train"][0],
            y_train=splits["train"][1],
            x_test=splits["test"][0],
            y_test=splits["test"][1],
            class_names=np.array(names, dtype=str),
            **extra,
        )


def write_cache(path, splits, names, source):
    """Writes the arrays atomically (a temporary file, then a rename); returns whether it could."""
    try:
        _save_splits(path, splits, names, source=np.array(source))
    except OSError as error:
        warnings.warn(f"cannot write the data cache {path} ({error}); data will be decoded on every load", stacklevel=3)
        return False
    return True


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
            _save_splits(path, splits, names)
        except OSError as error:
            raise DataError(f"Data.from_arrays: cannot write the arrays to {path} ({error})") from None
    return source
