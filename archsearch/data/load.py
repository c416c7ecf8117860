"""Loading: which source a declaration means, the cache or a decode, then the validation split."""

import atexit
import dataclasses
import hashlib
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from archsearch.data.arrays import array_options, read_digits, read_npz
from archsearch.data.cache import (
    ARRAYS,
    arrays_path,
    cache_folder,
    cache_key,
    file_hash,
    new_entry,
    read_cache,
    save_splits,
    write_meta,
)
from archsearch.data.declaration import Dataset, check_classes
from archsearch.data.decode import listed_shape, write_tree
from archsearch.data.folders import ARCHIVE_SUFFIXES, Archive, Folder, listing_identity, tree_listing
from archsearch.data.images import take
from archsearch.data.tfds import TFDS_NAME, read_tfds, tfds_builder, tfds_features
from archsearch.errors import DataError


def _locate(data, data_dir):
    """Returns the local file or folder to read, or None for "digits" and tfds names."""
    override = data_dir or os.environ.get("ARCHSEARCH_DATA_DIR")
    if override:
        path = Path(override).expanduser()
        if not path.exists():
            flag = "--data-dir" if data_dir else "ARCHSEARCH_DATA_DIR"
            raise DataError(f"{flag} {path}: no such file or folder")
        return path
    if data.source == "digits":
        return None
    if data.source.startswith(ARRAYS):
        path = arrays_path(data.source)
        if path is None or not path.is_file():
            raise DataError(
                f"data: source {data.source}: these arrays are no longer in the cache ({path}); "
                "declare them again with Data.from_arrays(...)"
            )
        return path
    path = Path(data.source).expanduser()
    if path.exists():
        return path
    if not TFDS_NAME.match(data.source):
        raise DataError(
            f"data: source {data.source}: no such file or folder (tensorflow-datasets names look like 'cifar10')"
        )
    return None


def _local_kind(path):
    """Returns "npz", "archive" or "folder" for a local source, or raises DataError."""
    if path.is_file() and path.suffix.lower() == ".npz":
        return "npz"
    if path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return "archive"
    if path.is_dir():
        return "folder"
    raise DataError(
        f"{path}: expected an image folder <root>/<split>/<class>/<image>, a .tar.gz or .zip of one, or a .npz"
    )


@dataclasses.dataclass
class _Plan:
    """A source worked out without decoding: its description, identity and writer."""

    source: str
    identity: str
    write: object  # (folder) -> class names: writes the splits' files, every option applied but the validation split


def _plan(data, data_dir):
    local = _locate(data, data_dir)
    if local is None and data.source == "digits":
        return _Plan(
            "sklearn:digits", "sklearn:digits", _in_memory(lambda: array_options(*read_digits(), data, "digits"))
        )
    if local is None:
        name = tfds_builder(data).info.full_name
        read = _in_memory(lambda: array_options(*read_tfds(data), data, f"tfds:{name}"))
        return _Plan(f"tfds:{name}", f"tfds:{name}", read)
    kind = _local_kind(local)
    if kind == "npz":
        # Data.from_arrays's arrays are named by their digest, not by where the cache keeps them.
        arrays = data.source.startswith(ARRAYS) and local == arrays_path(data.source)
        return _Plan(
            data.source if arrays else f"npz:{local}",
            f"npz:{file_hash(local)}",
            _in_memory(lambda: array_options(*read_npz(local), data, str(local))),
        )
    if kind == "archive":
        return _Plan(
            f"archive:{local}",
            f"archive:{file_hash(local)}",
            lambda folder: write_tree(data, tree_listing(Archive(local), data), folder),
        )
    listing = tree_listing(Folder(local), data)
    return _Plan(
        f"folder:{local}", f"folder:{listing_identity(listing[1])}", lambda folder: write_tree(data, listing, folder)
    )


def _in_memory(read):
    """The writer of a source read into memory whole (`.npz`, digits, tensorflow-datasets)."""

    def write(folder):
        splits, names = read()
        save_splits(folder, splits)
        return names

    return write


def _decoded(plan, entry):
    """Decodes a source into the cache entry `entry`, or, without one, into a temporary folder.

    The temporary folder is removed when the process ends: the data is
    decoded again by every process that loads it.

    Returns:
        `(splits, class names, the entry or None)`.
    """
    if entry is not None:
        try:
            with new_entry(entry) as staging:
                write_meta(staging, plan.write(staging), plan.source)
        except OSError as error:
            warnings.warn(
                f"cannot write the data cache {entry} ({error}); data will be decoded on every load", stacklevel=3
            )
        else:
            cached = read_cache(entry)
            if cached:
                return (*cached, entry)
    folder = Path(tempfile.mkdtemp(prefix="archsearch-data-"))
    atexit.register(shutil.rmtree, folder, True)
    try:
        write_meta(folder, plan.write(folder), plan.source)
    except OSError as error:
        raise DataError(f"{plan.source}: cannot write the decoded images to {folder} ({error})") from None
    cached = read_cache(folder)
    if not cached:
        raise DataError(f"{plan.source}: cannot read back the decoded images from {folder}")
    return (*cached, None)


def _validation_split(x, y, names, data, source):
    """Carves the stratified, seeded validation split from the training split."""
    counts = np.bincount(y, minlength=len(names))
    empty = [name for name, count in zip(names, counts) if count == 0]
    if empty:
        raise DataError(f"{source}: no training images of class {', '.join(map(repr, empty))}")
    try:  # the split of the images' positions is the split of the images, which stay on disk
        train, validation, y_train, y_val = train_test_split(
            np.arange(len(y)), y, test_size=data.validation, stratify=y, random_state=data.seed
        )
    except ValueError as error:
        raise DataError(
            f"{source}: cannot carve a stratified validation={data.validation} split from {len(y)} training images "
            f"of {len(names)} classes ({error}); use more images per class (per_class) or another validation fraction"
        ) from None
    return take(x, train), take(x, validation), y_train, y_val


def load_data(data, *, data_dir=None, cache_dir=None):
    """Loads a space's data as NumPy arrays, decoding only what the cache lacks.

    Args:
        data: the space's `Data` declaration.
        data_dir: a local image folder (or the folder holding exactly one),
            a `.tar.gz` / `.zip` of one, or a `.npz`, read instead of the
            declared source, e.g. a local copy of a tensorflow-datasets data
            set without a network (default: the environment variable
            `ARCHSEARCH_DATA_DIR`). Classes are then the folder's, matched
            by name against `classes`.
        cache_dir: where decoded arrays are cached (default: the
            environment variable `ARCHSEARCH_CACHE_DIR`, else the per-user
            cache directory).

    Returns:
        A `Dataset`, its validation split carved from the training split.

    Raises:
        DataError: naming the path, class or file at fault and what to do.

    Example:

    >>> import tempfile
    >>> from archsearch import Data
    >>> dataset = load_data(Data("digits", validation=0.2), cache_dir=tempfile.mkdtemp())
    >>> dataset.shape, dataset.num_classes
    ((8, 8, 1), 10)
    """
    start = time.perf_counter()
    plan = _plan(data, data_dir)
    key = cache_key(plan.identity, data)
    cache = cache_folder(cache_dir)
    entry = cache / key if cache else None
    cached = read_cache(entry) if entry else None
    if cached:
        splits, names = cached
    else:
        splits, names, entry = _decoded(plan, entry)
    x_train, x_val, y_train, y_val = _validation_split(*splits["train"], names, data, plan.source)
    fingerprint = hashlib.sha256(f"{key}:{data.validation}:{data.seed}".encode()).hexdigest()[:20]
    return Dataset(
        x_train,
        y_train,
        x_val,
        y_val,
        *splits["test"],
        class_names=names,
        source=plan.source,
        fingerprint=fingerprint,
        cache_path=str(entry) if entry else None,
        seconds=time.perf_counter() - start,
    )


def peek(data, *, data_dir=None):
    """Returns `(image shape, number of classes)` without decoding the data.

    Reads a folder's listing and every image's header (an archive's too),
    a `.npz`'s arrays, or tensorflow-datasets' metadata (no download), so
    that it gives the shape `load_data()` would.

    Args:
        data: the space's `Data` declaration.
        data_dir: as for `load_data()`.

    Returns:
        `((height, width, channels), num_classes)`.
    """
    local = _locate(data, data_dir)
    if local is None and data.source == "digits":
        shape, names = (8, 8, 1), [str(i) for i in range(10)]
    elif local is None:
        info = tfds_builder(data).info
        image, label = tfds_features(info, data)
        shape, names = tuple(image.shape), label.names
    elif _local_kind(local) == "npz":
        splits, names = read_npz(local)
        shape = splits["train"][0].shape[1:]
    else:
        tree = Archive(local) if _local_kind(local) == "archive" else Folder(local)
        names, entries, wheres = tree_listing(tree, data)
        shape = listed_shape(entries, wheres)
    if data.classes:
        if local is not None:  # tfds learns some class names only when it downloads
            check_classes(data.classes, list(names), str(local))
        names = data.classes
    height, width = data.image_size or shape[:2]
    if height is None or width is None:
        raise DataError(f"data: {data.source!r} has images of mixed sizes; set image_size=(height, width)")
    return (height, width, 1 if data.grayscale else shape[2]), len(names)


def data_summary(dataset):
    """Returns a JSON-ready summary of a loaded `Dataset`.

    Args:
        dataset: what `load_data()` returned.

    Returns:
        `{"source", "classes", "shape", "counts": {"train", "validation", "test"},
        "per_class": {split: {class: count}}, "fingerprint", "cache", "seconds"}`.
    """
    splits = {"train": dataset.y_train, "validation": dataset.y_val, "test": dataset.y_test}
    return {
        "source": dataset.source,
        "classes": list(dataset.class_names),
        "shape": list(dataset.shape),
        "counts": {split: int(len(y)) for split, y in splits.items()},
        "per_class": {
            split: {name: int(n) for name, n in zip(dataset.class_names, np.bincount(y, minlength=dataset.num_classes))}
            for split, y in splits.items()
        },
        "fingerprint": dataset.fingerprint,
        "cache": dataset.cache_path,
        "seconds": round(dataset.seconds, 3),
    }
