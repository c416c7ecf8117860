"""Data in: image folders (or archives of one), .npz arrays, tensorflow-datasets, and the offline default.

Every source becomes plain uint8 NumPy arrays `(N, H, W, C)`, channels last,
with int32 labels, so feeding is the same under every Keras backend (no
`tf.data` in what is returned). TensorFlow and tensorflow-datasets are
imported only for tensorflow-datasets sources.

Policies:

- Decoded arrays are cached as an uncompressed `.npz`, written atomically and
  keyed by the source's identity (a folder: its files' relative paths, sizes
  and modification times; a `.npz` or archive: a hash of its bytes; a
  tensorflow-datasets name: its full versioned name) and by the options that
  change the arrays (`classes`, `grayscale`, `per_class`, `test_per_class`,
  `image_size`, the split names). The validation split is carved afterwards,
  so changing `validation` or `seed` reuses the cache.
- Unreadable images in a folder are skipped with a warning that names them,
  as long as they are at most 1% of their split; more than that is an error,
  since it usually means the folder is not what the space thinks it is.
  Files that are not images by their extension are ignored, with a warning.
- Images of other sizes are resized (bilinear) to `image_size`, or, without
  it, to the most common size of the training split, with a warning.
- A folder of gray images loads with one channel, unless any of its images
  is in color; `grayscale=True` converts everything to one channel of ITU-R
  601 luma, exactly as Pillow's `convert("L")`.
- `per_class` keeps the first images of each class in source order (file
  name order in a folder), before the validation split; `test_per_class` does
  the same to the test split, which nothing else touches.
"""

import collections
import concurrent.futures
import dataclasses
import hashlib
import io
import json
import multiprocessing
import numbers
import os
import re
import sys
import tarfile
import time
import warnings
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import platformdirs
from PIL import Image
from sklearn.model_selection import train_test_split

from archsearch.errors import DataError
from archsearch.files import atomic_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
MAX_UNREADABLE_FRACTION = 0.01
DIGITS_TEST_FRACTION = 0.2
DECODE_CHUNK = 1000  # images per task of the decoding pool
_TFDS_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[\w.-]+)?(:[\d.*]+)?$")
UNREADABLE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
_CACHE_VERSION = 2  # bump when the cached arrays' meaning changes


@dataclasses.dataclass(frozen=True)
class Data:
    """The data of a space, as declared in a space file.

    Args:
        source: `"digits"` (scikit-learn's bundled 8x8 handwritten digits,
            1,797 images, the offline default), a tensorflow-datasets name
            (`"cifar10"`, `"mnist"`, `"cats_vs_dogs"`, ...), an image folder
            `<root>/<split>/<class>/<image>` or a `.tar.gz` / `.zip` of one,
            or a `.npz` with `x_train`, `y_train`, `x_test`, `y_test` (and
            optionally `class_names`). An existing path wins over a
            tensorflow-datasets name.
        validation: fraction of the training split held out for validation
            (stratified, seeded), in (0, 1).
        classes: keep only these classes, relabeled 0, 1, ... in this order.
        grayscale: convert to one channel (ITU-R 601 luma, as Pillow's "L").
        per_class: keep at most this many training images per class (the
            first ones in source order), before the validation split.
        test_per_class: the same cap for the test split (default: none).
        image_size: `(height, width)` every image is resized to; without it,
            images of other sizes are resized to the most common size.
        data_dir: tensorflow-datasets' own `data_dir`.
        train_split: name of the training split: a folder name, or a
            tensorflow-datasets split such as `"train[:80%]"`.
        test_split: name of the test split, e.g. `"train[80%:]"` for a
            tensorflow-datasets source with a training split only.
        seed: seed of the validation split.

    Example:

    ```python
    Data("cifar10", classes=["automobile", "truck"], grayscale=True, validation=0.1)
    ```
    """

    source: str = "digits"
    _: dataclasses.KW_ONLY
    validation: float = 0.1
    classes: tuple = None
    grayscale: bool = False
    per_class: int = None
    test_per_class: int = None
    image_size: tuple = None
    data_dir: str = None
    train_split: str = "train"
    test_split: str = "test"
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.source, (str, os.PathLike)) or not str(self.source):
            raise DataError(f"data: source={self.source!r}: expected 'digits', a tfds name, a folder or a .npz path")
        self._set("source", str(self.source))
        if isinstance(self.validation, bool) or not isinstance(self.validation, numbers.Real) or not 0 < self.validation < 1:
            raise DataError(f"data: validation={self.validation!r}: expected a fraction between 0 and 1, e.g. 0.1")
        if self.classes is not None:
            self._set("classes", _checked_classes(self.classes))
        if not isinstance(self.grayscale, bool):
            raise DataError(f"data: grayscale={self.grayscale!r}: expected True or False")
        for field in ("per_class", "test_per_class"):
            value = getattr(self, field)
            if value is not None and (not _is_int(value) or value < 1):
                raise DataError(f"data: {field}={value!r}: expected an int >= 1, or None for no cap")
            self._set(field, None if value is None else int(value))
        if self.image_size is not None:
            self._set("image_size", _checked_size(self.image_size))
        if self.data_dir is not None and not isinstance(self.data_dir, (str, os.PathLike)):
            raise DataError(f"data: data_dir={self.data_dir!r}: expected a path")
        for field in ("train_split", "test_split"):
            if not isinstance(getattr(self, field), str) or not getattr(self, field):
                raise DataError(f"data: {field}={getattr(self, field)!r}: expected a split name, e.g. 'train'")
        if self.train_split == self.test_split:
            raise DataError(f"data: test_split={self.test_split!r}: the same as train_split; the test split must be held out")
        if not _is_int(self.seed):
            raise DataError(f"data: seed={self.seed!r}: expected an int")
        self._set("seed", int(self.seed))
        self._set("validation", float(self.validation))

    def _set(self, field, value):
        object.__setattr__(self, field, value)

    def to_dict(self):
        """Returns the declaration as JSON-ready data; `Data(**data.to_dict())` rebuilds it."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        values["data_dir"] = None if self.data_dir is None else str(self.data_dir)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _checked_classes(classes):
    if isinstance(classes, str) or not all(isinstance(c, str) and c for c in classes):
        raise DataError(f"data: classes={classes!r}: expected a list of class names, e.g. ['automobile', 'truck']")
    classes = tuple(classes)
    if len(classes) < 2:
        raise DataError(f"data: classes={list(classes)!r}: expected at least two classes")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise DataError(f"data: classes={list(classes)!r}: {', '.join(repeated)} named twice")
    return classes


def _checked_size(size):
    if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2 or not all(_is_int(s) and s > 0 for s in size):
        raise DataError(f"data: image_size={size!r}: expected (height, width) in pixels, e.g. (32, 32)")
    return tuple(int(s) for s in size)


@dataclasses.dataclass
class Dataset:
    """Loaded data: uint8 images `(N, H, W, C)` and int32 labels, per split.

    Args:
        x_train, y_train: the training split less the validation split.
        x_val, y_val: the validation split, carved from training.
        x_test, y_test: the test split, for the final evaluation only.
        class_names: the names of labels 0, 1, ...
        source: where it came from, e.g. `"folder:/data/cifar10"`,
            `"archive:/data/cifar10.tar.gz"`, `"npz:/data/a.npz"`,
            `"tfds:cifar10/3.0.2"` or `"sklearn:digits"`.
        fingerprint: digest of the source's identity and of every option
            that changes the arrays, `validation` and `seed` included.
        cache_path: the cache file the arrays were read from or written to
            (None when the cache could not be written).
        seconds: how long loading took.
    """

    x_train: np.ndarray = dataclasses.field(repr=False)
    y_train: np.ndarray = dataclasses.field(repr=False)
    x_val: np.ndarray = dataclasses.field(repr=False)
    y_val: np.ndarray = dataclasses.field(repr=False)
    x_test: np.ndarray = dataclasses.field(repr=False)
    y_test: np.ndarray = dataclasses.field(repr=False)
    class_names: list
    source: str
    fingerprint: str
    cache_path: str = None
    seconds: float = 0.0

    @property
    def shape(self):
        """The shape of one image, `(H, W, C)`."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self):
        """The number of classes."""
        return len(self.class_names)

    def full_train(self):
        """Returns `(x, y)`: the whole training split, validation included (for retraining)."""
        return np.concatenate([self.x_train, self.x_val]), np.concatenate([self.y_train, self.y_val])


# --- Where the data comes from ----------------------------------------------------------------


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
    path = Path(data.source).expanduser()
    if path.exists():
        return path
    if not _TFDS_NAME.match(data.source):
        raise DataError(f"data: source {data.source}: no such file or folder (tensorflow-datasets names look like 'cifar10')")
    return None


def _local_kind(path):
    """Returns "npz", "archive" or "folder" for a local source, or raises DataError."""
    if path.is_file() and path.suffix.lower() == ".npz":
        return "npz"
    if path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return "archive"
    if path.is_dir():
        return "folder"
    raise DataError(f"{path}: expected an image folder <root>/<split>/<class>/<image>, a .tar.gz or .zip of one, or a .npz")


def _is_image(name):
    return name.lower().endswith(IMAGE_SUFFIXES)


def _hidden(name):
    return name.startswith(".") or name == "__MACOSX"


class _Folder:
    """An image folder on disk."""

    def __init__(self, path):
        self.path = path

    def describe(self, parts=()):
        return str(self.path.joinpath(*parts))

    def has_dir(self, parts):
        return self.path.joinpath(*parts).is_dir()

    def subdirs(self, parts):
        with os.scandir(self.path.joinpath(*parts)) as entries:
            return sorted(e.name for e in entries if e.is_dir() and not _hidden(e.name))

    def files(self, parts):
        """Returns sorted `(name, identity, job)`: identity is size and mtime, job the path to decode."""
        with os.scandir(self.path.joinpath(*parts)) as entries:
            files = [e for e in entries if e.is_file() and not _hidden(e.name)]
        return sorted((e.name, f"{e.stat().st_size}:{e.stat().st_mtime_ns}", e.path) for e in files)


class _Archive:
    """An image folder inside a .tar(.gz) or .zip, read into memory in one pass."""

    def __init__(self, path):
        self.path = path
        self.dirs = collections.defaultdict(set)
        self.blobs = collections.defaultdict(list)
        try:
            for parts, blob in _zip_members(path) if zipfile.is_zipfile(path) else _tar_members(path):
                self._add(parts, blob)
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as error:
            raise DataError(f"{path}: cannot read the archive ({error}); expected a .tar.gz or .zip of an image folder") from None

    def _add(self, parts, blob):
        """Adds a file (`blob` its bytes) or, with `blob` None, a folder."""
        folders = parts if blob is None else parts[:-1]
        for depth in range(len(folders)):
            self.dirs[folders[:depth]].add(folders[depth])
        if blob is not None:
            self.blobs[parts[:-1]].append((parts[-1], "", blob))

    def describe(self, parts=()):
        return f"{self.path}:{'/'.join(parts)}" if parts else str(self.path)

    def has_dir(self, parts):
        return parts[-1] in self.dirs.get(parts[:-1], ())

    def subdirs(self, parts):
        return sorted(name for name in self.dirs.get(parts, ()) if not _hidden(name))

    def files(self, parts):
        return sorted(entry for entry in self.blobs.get(parts, []) if not _hidden(entry[0]))


def _tar_members(path):
    with tarfile.open(path) as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if member.isdir():
                yield parts, None
            elif member.isfile() and parts:
                yield parts, tar.extractfile(member).read() if _is_image(parts[-1]) else b""


def _zip_members(path):
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            parts = PurePosixPath(info.filename).parts
            if info.is_dir():
                yield parts, None
            elif parts:
                yield parts, archive.read(info) if _is_image(parts[-1]) else b""


def _find_root(tree, split):
    """Returns the path parts of `<root>`, the folder holding `<root>/<split>/`: the top or one level down."""
    if tree.has_dir((split,)):
        return ()
    inner = [name for name in tree.subdirs(()) if tree.has_dir((name, split))]
    if len(inner) == 1:
        return (inner[0],)
    if inner:
        raise DataError(f"{tree.describe()}: holds several data sets ({', '.join(inner)}); point at one of them")
    found = tree.subdirs(())
    raise DataError(
        f"{tree.describe()}: no '{split}' folder; expected <root>/{split}/<class>/<image> "
        f"(found folders: {', '.join(found[:12]) or 'none'}{', ...' if len(found) > 12 else ''})"
    )


def _check_classes(wanted, available, where):
    missing = [c for c in wanted if c not in available]
    if missing:
        raise DataError(f"{where}: no class {', '.join(map(repr, missing))}; available: {', '.join(available)}")


def _list_split(tree, root, split, classes):
    """Lists one split folder.

    Returns:
        `(available class names, {class: [(name, identity, job)]}, ignored non-image files)`.
    """
    where = (*root, split)
    if not tree.has_dir(where):
        raise DataError(f"{tree.describe(root)}: no '{split}' folder; expected {tree.describe(where)}/<class>/<image>")
    available = tree.subdirs(where)
    if not available:
        raise DataError(f"{tree.describe(where)}: no class folders; expected {tree.describe(where)}/<class>/<image>")
    _check_classes(classes or available, available, tree.describe(where))
    listing, ignored = {}, []
    for name in classes or available:
        entries = tree.files((*where, name))
        listing[name] = [entry for entry in entries if _is_image(entry[0])]
        ignored += [tree.describe((*where, name, entry[0])) for entry in entries if not _is_image(entry[0])]
        if not listing[name]:
            raise DataError(f"{tree.describe((*where, name))}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return available, listing, ignored


def _tree_listing(tree, data):
    """Checks a folder's layout and lists the images the options select.

    Returns:
        `(class names, {"train": entries, "test": entries}, split folder descriptions)`,
        each entry `(label, relative name, identity, job)`.
    """
    root = _find_root(tree, data.train_split)
    train_available, train, ignored = _list_split(tree, root, data.train_split, data.classes)
    test_available, test, test_ignored = _list_split(tree, root, data.test_split, data.classes)
    if not data.classes and train_available != test_available:
        only_train = sorted(set(train_available) - set(test_available))
        only_test = sorted(set(test_available) - set(train_available))
        raise DataError(
            f"{tree.describe(root)}: class folders differ between {data.train_split} and {data.test_split}: "
            f"only in {data.train_split}: {only_train or 'none'}; only in {data.test_split}: {only_test or 'none'}"
        )
    skipped = ignored + test_ignored
    if skipped:
        warnings.warn(f"{tree.describe(root)}: ignored {len(skipped)} file(s) that are not images, e.g. {skipped[0]}", stacklevel=3)
    entries = {"train": _entries(train, data.per_class), "test": _entries(test, data.test_per_class)}
    wheres = {"train": tree.describe((*root, data.train_split)), "test": tree.describe((*root, data.test_split))}
    return list(train), entries, wheres


def _entries(listing, cap):
    return [
        (label, f"{name}/{file}", identity, job)
        for label, (name, files) in enumerate(listing.items())
        for file, identity, job in files[:cap]
    ]


def _listing_identity(entries):
    digest = hashlib.sha256()
    for split, split_entries in entries.items():
        for _, name, identity, _ in split_entries:
            digest.update(f"{split}/{name}:{identity}\n".encode())
    return digest.hexdigest()


def _file_hash(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- Decoding images ------------------------------------------------------------------------


def _decode_image(job, grayscale, size):
    """Decodes one image (a path or its bytes) to uint8 `(H, W, C)`, C = 1 for gray images."""
    with Image.open(job if isinstance(job, str) else io.BytesIO(job)) as image:
        gray = grayscale or image.mode in GRAY_MODES
        image = image.convert("L" if gray else "RGB")
        if size and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        array = np.asarray(image)
    return array[..., None] if gray else array


def _decode_chunk(task):
    """Decodes `[(index, job)]`; returns `({shape: (indices, stacked images)}, [(index, reason)])`."""
    jobs, grayscale, size = task
    groups, failures = collections.defaultdict(lambda: ([], [])), []
    for index, job in jobs:
        try:
            array = _decode_image(job, grayscale, size)
        except UNREADABLE_ERRORS as error:
            failures.append((index, f"{type(error).__name__}: {error}"))
            continue
        groups[array.shape][0].append(index)
        groups[array.shape][1].append(array)
    return {shape: (np.array(indices), np.stack(arrays)) for shape, (indices, arrays) in groups.items()}, failures


def _workers():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _map(function, tasks):
    """Maps over tasks in parallel when there is more than one task and core.

    Worker processes are forked: a spawned one would import TensorFlow again,
    through the `archsearch` package, before decoding anything. Once JAX has
    started its backends (and their threads), forking can deadlock, so threads
    do the work instead (Pillow releases the GIL while it decodes).
    """
    workers = min(len(tasks), _workers())
    if workers < 2:
        return list(map(function, tasks))
    if _fork_is_safe():
        pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    else:
        pool = concurrent.futures.ThreadPoolExecutor(workers)
    with pool:
        return list(pool.map(function, tasks))


def _fork_is_safe():
    """Whether this process can fork: not where JAX's backends are running, as JAX itself warns."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    xla_bridge = sys.modules.get("jax._src.xla_bridge")
    if xla_bridge is None:
        return True
    initialized = getattr(xla_bridge, "backends_are_initialized", None)
    return initialized is not None and not initialized()


def _decode_images(entries, data, where, size=None):
    """Decodes a split's images in parallel.

    Args:
        entries: `[(label, relative name, identity, job)]`.
        data: the `Data` (its `grayscale` and `image_size`).
        where: the split folder, for messages.
        size: the size to resize to when `data.image_size` is None (default:
            the most common size).

    Returns:
        `(x, y)`, unreadable images skipped.
    """
    jobs = [(index, entry[3]) for index, entry in enumerate(entries)]
    tasks = [(jobs[i : i + DECODE_CHUNK], data.grayscale, data.image_size) for i in range(0, len(jobs), DECODE_CHUNK)]
    blocks, failures = [], []
    for chunk_blocks, chunk_failures in _map(_decode_chunk, tasks):
        blocks += chunk_blocks.values()
        failures += chunk_failures
    _check_unreadable(failures, entries, where)
    x, kept = _assemble(blocks, data.image_size or size, where, warn=data.image_size is None)
    labels = np.array([label for label, *_ in entries], dtype=np.int32)
    return x, labels[kept]


def _check_unreadable(failures, entries, where):
    if not failures:
        return
    names = [f"{where}/{entries[index][1]}" for index, _ in failures]
    if len(failures) > MAX_UNREADABLE_FRACTION * len(entries):
        raise DataError(
            f"{where}: {len(failures)} of {len(entries)} images cannot be read (more than "
            f"{MAX_UNREADABLE_FRACTION:.0%}), e.g. {names[0]} ({failures[0][1]}); remove or replace them"
        )
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    warnings.warn(f"{where}: skipped {len(failures)} unreadable image(s): {', '.join(names[:5])}{more}", stacklevel=4)


def _assemble(blocks, size, where, warn):
    """Puts decoded blocks `[(indices, images)]` back in index order, in one size and channel count.

    Args:
        blocks: decoded images grouped by shape, with their indices.
        size: `(height, width)` to resize to, or None for the most common size.
        where: the split, for the warning about resized images.
        warn: whether to warn about resized images (not when the user chose the size).

    Returns:
        `(x, kept indices in order)`.
    """
    counts = collections.Counter()
    for indices, images in blocks:
        counts[images.shape[1:3]] += len(indices)
    target = tuple(size) if size else counts.most_common(1)[0][0]
    channels = max(images.shape[-1] for _, images in blocks)
    odd = sum(counts.values()) - counts[target]
    if warn and odd:
        warnings.warn(
            f"{where}: resized {odd} of {sum(counts.values())} images to {target[0]}x{target[1]}, the most common "
            "training image size; set image_size=(height, width) to choose",
            stacklevel=5,
        )
    kept = np.sort(np.concatenate([indices for indices, _ in blocks]))
    x = np.empty((len(kept), *target, channels), np.uint8)
    for indices, images in blocks:
        x[np.searchsorted(kept, indices)] = _fit(images, target, channels)
    return x, kept


def _fit(images, size, channels):
    """Resizes uint8 images `(N, H, W, C)` to `size` and repeats a gray channel to `channels`."""
    if images.shape[1:3] != tuple(size):
        images = np.stack([_resize(image, size) for image in images])
    return np.repeat(images, channels, axis=-1) if images.shape[-1] < channels else images


def _resize(image, size):
    """Resizes one uint8 `(H, W, C)` image to `(height, width)`, bilinear."""
    if image.shape[:2] == tuple(size):
        return image
    resized = np.asarray(Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).resize((size[1], size[0]), Image.BILINEAR))
    return resized.reshape(*size, image.shape[-1])


def _read_tree(data, listing):
    """Decodes a folder's listed images; the test split takes the training split's size and channels."""
    names, entries, wheres = listing
    train = _decode_images(entries["train"], data, wheres["train"])
    test = _decode_images(entries["test"], data, wheres["test"], size=train[0].shape[1:3])
    channels = max(train[0].shape[-1], test[0].shape[-1])
    splits = {"train": train, "test": test}
    return {k: (_fit(x, x.shape[1:3], channels), y) for k, (x, y) in splits.items()}, names


# --- Arrays: npz, digits, tfds --------------------------------------------------------------


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as arrays:
            contents = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"{path}: not a readable .npz ({error}); save it with np.savez and plain (not object) arrays") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in contents]
    if missing:
        raise DataError(f"{path}: missing arrays {', '.join(missing)}; expected x_train, y_train, x_test, y_test")
    splits = {split: _npz_split(path, split, contents) for split in ("train", "test")}
    train_shape, test_shape = splits["train"][0].shape[1:], splits["test"][0].shape[1:]
    if train_shape != test_shape:
        raise DataError(f"{path}: x_train images are {train_shape} but x_test images are {test_shape}; expected one (H, W, C) for both splits")
    labels = np.concatenate([splits["train"][1], splits["test"][1]])
    if "class_names" in contents:
        names = [str(n) for n in contents["class_names"].reshape(-1)]
    elif labels.max() >= len(labels):  # not every class up to it can have an image: a stray label, not a class count
        raise DataError(f"{path}: label {labels.max()} with {len(labels)} images and no class_names; expected labels 0 to the number of classes - 1")
    else:
        names = [str(i) for i in range(int(labels.max()) + 1)]
    if labels.min() < 0 or labels.max() >= len(names):
        raise DataError(f"{path}: labels range from {labels.min()} to {labels.max()}; expected 0 to {len(names) - 1} ({len(names)} classes)")
    return splits, names


def _npz_split(path, split, contents):
    """Returns one split's checked `(x, y)`, x as uint8 `(N, H, W, C)`."""
    x, y = contents[f"x_{split}"], contents[f"y_{split}"]
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"{path}: x_{split} has shape {x.shape}; expected (N, H, W), (N, H, W, 1) or (N, H, W, 3), channels last")
    if len(x) == 0:
        raise DataError(f"{path}: x_{split} holds no images")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.number) or x.min() < 0 or x.max() > 255 or not np.array_equal(x, np.round(x)):
            raise DataError(
                f"{path}: x_{split} holds {x.dtype} values from {x.min()} to {x.max()}; "
                "expected uint8 pixels 0..255 (scaled to [0, 1]? multiply by 255 and cast to uint8)"
            )
        x = x.astype(np.uint8)
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1:] == (1,) else y
    if y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{path}: x_{split} has {len(x)} images but y_{split} has shape {y.shape}; expected ({len(x)},) labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y_{split} holds {y.dtype} values; expected integer class labels 0, 1, ...")
    return x, y


def _read_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=DIGITS_TEST_FRACTION, stratify=digits.target, random_state=0
    )
    return {"train": (x_train, y_train), "test": (x_test, y_test)}, [str(i) for i in range(10)]


_LOCAL_COPY_HINT = "pass --data-dir (or set ARCHSEARCH_DATA_DIR) to a local image folder, its .tar.gz, or a .npz with the same classes"


def _import_tfds(data):
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DataError(f"data: source {data.source!r} needs tensorflow-datasets, which cannot be imported ({error}); instead, {_LOCAL_COPY_HINT}") from None
    return tfds


def _tfds_builder(data):
    tfds = _import_tfds(data)
    try:
        return tfds.builder(data.source, data_dir=data.data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"data: source {data.source!r} is neither a file or folder nor a tensorflow-datasets name "
            "(e.g. 'cifar10', 'mnist'); check the spelling or the path"
        ) from None


def _read_tfds(data):
    tfds = _import_tfds(data)
    try:
        datasets, info = tfds.load(
            data.source, split=[data.train_split, data.test_split], data_dir=data.data_dir, as_supervised=True, with_info=True
        )
    except Exception as error:  # tfds fails with many unrelated types: network, checksum, unknown split, import
        reason = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
        raise DataError(
            f"tensorflow-datasets could not load {data.source!r} (splits {data.train_split!r}, {data.test_split!r}): "
            f"{reason}. Without a network, {_LOCAL_COPY_HINT}; for an unknown split, set train_split / test_split, "
            "e.g. 'train[:80%]' and 'train[80%:]'"
        ) from error
    image, label = _tfds_features(info, data)
    fixed = None not in image.shape
    splits = {
        key: _tfds_arrays(tfds, dataset, fixed, data.image_size, f"tfds:{data.source}[{split}]")
        for key, split, dataset in zip(("train", "test"), (data.train_split, data.test_split), datasets)
    }
    return splits, list(label.names)


def _tfds_features(info, data):
    """Returns the image and class label features of a tfds data set."""
    keys = info.supervised_keys
    if not keys or not hasattr(info.features[keys[1]], "names") or len(info.features[keys[0]].shape) != 3:
        raise DataError(f"tensorflow-datasets {data.source!r}: not an image classification data set (supervised keys {keys})")
    return info.features[keys[0]], info.features[keys[1]]


def _tfds_arrays(tfds, dataset, fixed, size, where):
    """Returns `(x, y)` of one tfds split: in batches when its images share a size, else one by one."""
    if fixed:
        batches = list(tfds.as_numpy(dataset.batch(4096)))
        return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])
    blocks, labels = [], []
    for index, (image, label) in enumerate(tfds.as_numpy(dataset)):
        blocks.append((np.array([index]), _resize(image, size)[None] if size else image[None]))
        labels.append(label)
    x, _ = _assemble(blocks, size, where, warn=size is None)
    return x, np.array(labels)


def _array_options(splits, names, data, where):
    """Applies classes, caps, grayscale and image_size to arrays already in memory."""
    if data.classes:
        _check_classes(data.classes, names, where)
        lookup = np.full(len(names), -1, np.int32)
        lookup[[names.index(c) for c in data.classes]] = np.arange(len(data.classes))
        splits = {split: (x[lookup[y] >= 0], lookup[y][lookup[y] >= 0]) for split, (x, y) in splits.items()}
        names = list(data.classes)
    caps = {"train": data.per_class, "test": data.test_per_class}
    result = {}
    for split, (x, y) in splits.items():
        x, y = _capped(x, y, caps[split], len(names))
        if data.grayscale and x.shape[-1] == 3:
            x = _luma(x)
        if data.image_size:
            x = np.stack([_resize(image, data.image_size) for image in x]) if len(x) else x
        result[split] = (x.astype(np.uint8, copy=False), y.astype(np.int32, copy=False))
    return result, names


def _capped(x, y, cap, num_classes):
    """Keeps the first `cap` images of each class, in order."""
    if not cap:
        return x, y
    keep = np.sort(np.concatenate([np.flatnonzero(y == label)[:cap] for label in range(num_classes)]))
    return x[keep], y[keep]


def _luma(x):
    """ITU-R 601 luma of uint8 RGB images, rounded exactly as Pillow's `convert("L")`."""
    rgb = x.astype(np.uint32)
    return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)[..., None]


# --- Loading, caching, splitting ------------------------------------------------------------


@dataclasses.dataclass
class _Plan:
    """A source worked out without decoding: its description, identity and reader."""

    source: str
    identity: str
    read: object  # () -> (splits, class names), every option applied but the validation split


def _plan(data, data_dir):
    local = _locate(data, data_dir)
    if local is None and data.source == "digits":
        return _Plan("sklearn:digits", "sklearn:digits", lambda: _array_options(*_read_digits(), data, "digits"))
    if local is None:
        name = _tfds_builder(data).info.full_name
        return _Plan(f"tfds:{name}", f"tfds:{name}", lambda: _array_options(*_read_tfds(data), data, f"tfds:{name}"))
    kind = _local_kind(local)
    if kind == "npz":
        return _Plan(f"npz:{local}", f"npz:{_file_hash(local)}", lambda: _array_options(*_read_npz(local), data, str(local)))
    if kind == "archive":
        return _Plan(f"archive:{local}", f"archive:{_file_hash(local)}", lambda: _read_archive(local, data))
    tree = _Folder(local)
    listing = _tree_listing(tree, data)
    return _Plan(f"folder:{local}", f"folder:{_listing_identity(listing[1])}", lambda: _read_tree(data, listing))


def _read_archive(path, data):
    tree = _Archive(path)
    return _read_tree(data, _tree_listing(tree, data))


def _cache_key(identity, data):
    """Digest of the source's identity and of the options that change the cached arrays."""
    options = {k: data.to_dict()[k] for k in ("classes", "grayscale", "per_class", "test_per_class", "image_size", "train_split", "test_split")}
    text = json.dumps({"version": _CACHE_VERSION, "identity": identity, "options": options}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_folder(cache_dir=None):
    """Returns archsearch's cache folder, created if need be; `None` if it cannot be.

    Args:
        cache_dir: the folder; by default the environment variable
            `ARCHSEARCH_CACHE_DIR`, else the per-user cache folder.
    """
    path = Path(cache_dir or os.environ.get("ARCHSEARCH_CACHE_DIR") or platformdirs.user_cache_dir("archsearch")).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        warnings.warn(f"cannot create the cache folder {path} ({error}); nothing will be cached", stacklevel=3)
        return None
    return path


def _read_cache(path):
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


def _write_cache(path, splits, names, source):
    """Writes the arrays atomically (a temporary file, then a rename); returns whether it could."""
    try:
        with atomic_file(path, "wb") as file:
            np.savez(
                file, x_train=splits["train"][0], y_train=splits["train"][1], x_test=splits["test"][0],
                y_test=splits["test"][1], class_names=np.array(names, dtype=str), source=np.array(source),
            )
    except OSError as error:
        warnings.warn(f"cannot write the data cache {path} ({error}); data will be decoded on every load", stacklevel=3)
        return False
    return True


def _validation_split(x, y, names, data, source):
    """Carves the stratified, seeded validation split from the training split."""
    counts = np.bincount(y, minlength=len(names))
    empty = [name for name, count in zip(names, counts) if count == 0]
    if empty:
        raise DataError(f"{source}: no training images of class {', '.join(map(repr, empty))}")
    try:
        return train_test_split(x, y, test_size=data.validation, stratify=y, random_state=data.seed)
    except ValueError as error:
        raise DataError(
            f"{source}: cannot carve a stratified validation={data.validation} split from {len(y)} training images "
            f"of {len(names)} classes ({error}); use more images per class (per_class) or another validation fraction"
        ) from None


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

    >>> dataset = load_data(Data("digits", validation=0.2))
    >>> dataset.shape, dataset.num_classes
    ((8, 8, 1), 10)
    """
    start = time.perf_counter()
    plan = _plan(data, data_dir)
    key = _cache_key(plan.identity, data)
    cache = cache_folder(cache_dir)
    cache_path = cache / f"{key}.npz" if cache else None
    cached = _read_cache(cache_path) if cache_path else None
    if cached:
        splits, names = cached
    else:
        splits, names = plan.read()
        if cache_path and not _write_cache(cache_path, splits, names, plan.source):
            cache_path = None
    x_train, x_val, y_train, y_val = _validation_split(*splits["train"], names, data, plan.source)
    fingerprint = hashlib.sha256(f"{key}:{data.validation}:{data.seed}".encode()).hexdigest()[:20]
    return Dataset(
        x_train, y_train, x_val, y_val, *splits["test"], class_names=names, source=plan.source, fingerprint=fingerprint,
        cache_path=str(cache_path) if cache_path else None, seconds=time.perf_counter() - start,
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
        info = _tfds_builder(data).info
        image, label = _tfds_features(info, data)
        shape, names = tuple(image.shape), label.names
    elif _local_kind(local) == "npz":
        splits, names = _read_npz(local)
        shape = splits["train"][0].shape[1:]
    else:
        tree = _Archive(local) if _local_kind(local) == "archive" else _Folder(local)
        names, entries, wheres = _tree_listing(tree, data)
        shape = _listed_shape(entries, wheres)
    if data.classes:
        if local is not None:  # tfds learns some class names only when it downloads
            _check_classes(data.classes, list(names), str(local))
        names = data.classes
    height, width = data.image_size or shape[:2]
    if height is None or width is None:
        raise DataError(f"data: {data.source!r} has images of mixed sizes; set image_size=(height, width)")
    return (height, width, 1 if data.grayscale else shape[2]), len(names)


def _header_chunk(jobs):
    """Reads images' headers (no pixels); returns `(Counter of (height, width), channels: 1, or 3 if any is in color)`."""
    sizes, channels = collections.Counter(), 1
    for job in jobs:
        try:
            with Image.open(job if isinstance(job, str) else io.BytesIO(job)) as image:
                sizes[(image.height, image.width)] += 1
                channels = max(channels, 1 if image.mode in GRAY_MODES else 3)
        except UNREADABLE_ERRORS:
            continue
    return sizes, channels


def _listed_shape(entries, wheres):
    """The image shape `load_data()` gives a folder, from every image's header.

    The most common training size, and 3 channels if any image of either
    split is in color, as `_read_tree()` decides (a sample could miss the one
    color image).
    """
    sizes, channels = collections.Counter(), 1
    for split in ("train", "test"):
        jobs = [entry[3] for entry in entries[split]]
        for chunk_sizes, chunk_channels in _map(_header_chunk, [jobs[i : i + DECODE_CHUNK] for i in range(0, len(jobs), DECODE_CHUNK)]):
            if split == "train":
                sizes.update(chunk_sizes)
            channels = max(channels, chunk_channels)
    if not sizes:
        raise DataError(f"{wheres['train']}: none of the images can be read, e.g. {entries['train'][0][1]}")
    (height, width), _ = sizes.most_common(1)[0]
    return height, width, channels


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
