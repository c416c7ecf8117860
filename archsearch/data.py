"""Data in: tensorflow-datasets, image folders, .npz arrays and the offline default.

Every source becomes plain uint8 NumPy arrays `(N, H, W, C)` with int32
labels, so feeding is the same under every Keras backend (no `tf.data`).
Decoded data is cached, keyed by a fingerprint of the source and of the
options that change the arrays; the validation split is carved afterwards,
stratified and seeded, from the training split only.

Corrupt images in a folder are skipped with a warning that names them, as
long as they are under 1% of a split; more than that is an error, since it
usually means the folder is not what the space thinks it is. Files that are
not images by their extension are ignored (and counted in the warning).
"""

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import platformdirs
from PIL import Image, UnidentifiedImageError
from sklearn.model_selection import train_test_split

from archsearch.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
MAX_CORRUPT_FRACTION = 0.01
DIGITS_TEST_FRACTION = 0.2
_CACHE_VERSION = 1  # bump when the cached arrays' meaning changes


@dataclasses.dataclass(frozen=True)
class Data:
    """The data of a space, as declared in a space file.

    Args:
        source: `"digits"` (scikit-learn's bundled 8x8 handwritten digits,
            the offline default), a tensorflow-datasets name (`"cifar10"`,
            `"mnist"`, ...), an image folder `<root>/<split>/<class>/<image>`,
            or a `.npz` with `x_train`, `y_train`, `x_test`, `y_test` (and
            optionally `class_names`).
        validation: fraction of the training split held out for validation
            (stratified, seeded).
        classes: keep only these classes, relabeled 0, 1, ... in this order.
        grayscale: convert to one channel (ITU-R 601 luma, as Pillow's "L").
        per_class: keep at most this many training images per class (the
            first ones, in file order), for quick runs; test is never capped.
        image_size: `(height, width)` every image is resized to; without it,
            a folder's images of other sizes are resized to the most common one.
        data_dir: tensorflow-datasets' own `data_dir`.
        train_split: name of the training split (tfds split or folder name).
        test_split: name of the test split.
        seed: seed of the validation split.

    Example:

    ```python
    Data("cifar10", classes=["automobile", "truck"], grayscale=True, validation=0.1)
    ```
    """

    source: str = "digits"
    validation: float = 0.1
    classes: tuple = None
    grayscale: bool = False
    per_class: int = None
    image_size: tuple = None
    data_dir: str = None
    train_split: str = "train"
    test_split: str = "test"
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.source, (str, os.PathLike)) or not str(self.source):
            raise DataError(f"data: source={self.source!r}: expected a tfds name, 'digits', a folder or a .npz path")
        object.__setattr__(self, "source", str(self.source))
        if isinstance(self.validation, bool) or not isinstance(self.validation, (int, float)) or not 0 < self.validation < 1:
            raise DataError(f"data: validation={self.validation!r}: expected a fraction between 0 and 1, e.g. 0.1")
        if self.classes is not None:
            if isinstance(self.classes, str) or not all(isinstance(c, str) for c in self.classes) or len(self.classes) < 2:
                raise DataError(f"data: classes={self.classes!r}: expected a list of at least two class names")
            if len(set(self.classes)) != len(self.classes):
                raise DataError(f"data: classes={self.classes!r}: a class is named twice")
            object.__setattr__(self, "classes", tuple(self.classes))
        if not isinstance(self.grayscale, bool):
            raise DataError(f"data: grayscale={self.grayscale!r}: expected True or False")
        if self.per_class is not None and (type(self.per_class) is not int or self.per_class < 1):
            raise DataError(f"data: per_class={self.per_class!r}: expected an int >= 1")
        if self.image_size is not None:
            if len(tuple(self.image_size)) != 2 or not all(type(s) is int and s > 0 for s in self.image_size):
                raise DataError(f"data: image_size={self.image_size!r}: expected (height, width) in pixels")
            object.__setattr__(self, "image_size", tuple(self.image_size))
        if type(self.seed) is not int:
            raise DataError(f"data: seed={self.seed!r}: expected an int")

    def to_dict(self):
        """Returns the declaration as JSON-ready data (`Data(**data.to_dict())` rebuilds it)."""
        values = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


@dataclasses.dataclass
class Dataset:
    """Loaded data: uint8 images `(N, H, W, C)` and int32 labels, per split.

    Args:
        x_train, y_train: the training split less the validation split.
        x_val, y_val: the validation split, carved from training.
        x_test, y_test: the test split, used once, for the final evaluation.
        class_names: the names of labels 0, 1, ...
        source: where it came from, e.g. `"folder:/data/cifar10"`.
        fingerprint: digest of the source's identity and the options.
        cache_path: the cache file the arrays were read from or written to.
        seconds: how long loading took.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
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
        return len(self.class_names)

    def full_train(self):
        """Returns `(x, y)`: the whole training split, validation included (for retraining)."""
        return np.concatenate([self.x_train, self.x_val]), np.concatenate([self.y_train, self.y_val])


# --- Where the data comes from --------------------------------------------------------------


def _local_path(data, data_dir):
    """Returns the local file or folder to read, or None for 'digits' and tfds names."""
    local = data_dir or os.environ.get("ARCHSEARCH_DATA_DIR")
    if local:
        path = Path(local).expanduser()
        if not path.exists():
            raise DataError(f"--data-dir {path}: no such file or folder")
        return path
    if data.source == "digits":
        return None
    path = Path(data.source).expanduser()
    looks_like_path = os.sep in data.source or data.source.endswith((".npz", ".tar.gz", ".tgz")) or path.exists()
    if looks_like_path and not path.exists():
        raise DataError(f"data: source {data.source}: no such file or folder")
    return path if looks_like_path else None


def _unpack(archive, cache_dir):
    """Unpacks a .tar.gz once into the cache and returns the folder."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir / "unpacked" / key
    if not (target / ".complete").exists():
        staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".unpack-"))
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError) as error:
            raise DataError(f"{archive}: cannot unpack: {error}") from None
        (staging / ".complete").touch()
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return target


def _folder_root(path, data):
    """Finds `<root>` holding `<root>/<train_split>/`, looking one level down too."""
    if (path / data.train_split).is_dir():
        return path
    inner = [p for p in path.iterdir() if p.is_dir() and (p / data.train_split).is_dir()]
    if len(inner) == 1:
        return inner[0]
    found = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    raise DataError(
        f"{path}: no '{data.train_split}' folder; expected <root>/{data.train_split}/<class>/<image> "
        f"(found folders: {', '.join(found) or 'none'})"
    )


# --- Image folders ---------------------------------------------------------------------------


def _list_split(root, split, classes):
    """Returns (class names, [(file, label)], ignored non-image files) of one split folder."""
    folder = root / split
    if not folder.is_dir():
        raise DataError(f"{root}: no '{split}' folder; expected {root}/{split}/<class>/<image>")
    available = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not available:
        raise DataError(f"{folder}: no class folders; expected {folder}/<class>/<image>")
    names = list(classes) if classes else available
    _check_classes(names, available, str(folder))
    files, ignored = [], []
    for label, name in enumerate(names):
        entries = sorted(p for p in (folder / name).iterdir() if p.is_file() and not p.name.startswith("."))
        images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
        ignored += [p for p in entries if p.suffix.lower() not in IMAGE_SUFFIXES]
        if not images:
            raise DataError(f"{folder / name}: class folder holds no images (.jpg, .png, ...)")
        files += [(p, label) for p in images]
    return names, available, files, ignored


def _check_classes(wanted, available, where):
    missing = [c for c in wanted if c not in available]
    if missing:
        raise DataError(f"{where}: no class {', '.join(map(repr, missing))}; available: {', '.join(available)}")


def _decode(job):
    """Decodes one image file; returns (array, None) or (None, reason)."""
    path, mode = job
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode)), None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        return None, f"{path.name}: {error}"


def _decode_all(files, grayscale, image_size, where):
    """Decodes files in parallel; resizes odd sizes; skips a few corrupt files with a warning."""
    mode = "L" if grayscale else "RGB"
    with concurrent.futures.ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        decoded = list(pool.map(_decode, [(path, mode) for path, _ in files], chunksize=512))
    bad = [(path, reason) for (path, _), (_, reason) in zip(files, decoded) if reason]
    if len(bad) > MAX_CORRUPT_FRACTION * len(files):
        raise DataError(
            f"{where}: {len(bad)} of {len(files)} images cannot be read, e.g. {bad[0][0]} ({bad[0][1]}); "
            "remove or replace them"
        )
    if bad:
        warnings.warn(f"{where}: skipped {len(bad)} unreadable image(s): {', '.join(str(p) for p, _ in bad[:5])}", stacklevel=2)
    kept = [(array, label) for (array, _), (_, label) in zip(decoded, files) if array is not None]
    size = image_size or collections.Counter(a.shape[:2] for a, _ in kept).most_common(1)[0][0]
    images = np.stack([_resized(a, size) for a, _ in kept])
    if grayscale:
        images = images[..., None]
    return images, np.array([label for _, label in kept], dtype=np.int32)


def _resized(array, size):
    if array.shape[:2] == tuple(size):
        return array
    return np.asarray(Image.fromarray(array).resize((size[1], size[0]), Image.BILINEAR))


def _folder_identity(files):
    digest = hashlib.sha256()
    for path, label in files:
        stat = path.stat()
        digest.update(f"{path}:{label}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


# --- Arrays: npz, digits, tfds ---------------------------------------------------------------


def _read_npz(path):
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable .npz: {error}") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays.files]
    if missing:
        raise DataError(f"{path}: missing arrays {', '.join(missing)}; expected x_train, y_train, x_test, y_test")
    splits = {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise DataError(f"{path}: x_{split} has shape {x.shape}; expected (N, H, W), (N, H, W, 1) or (N, H, W, 3)")
        if len(x) != len(y):
            raise DataError(f"{path}: x_{split} has {len(x)} images but y_{split} {len(y)} labels")
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{path}: y_{split} holds {y.dtype} values; expected integer class labels")
        splits[split] = (x, y.reshape(-1))
    labels = np.concatenate([splits["train"][1], splits["test"][1]])
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays.files else [str(i) for i in range(int(labels.max()) + 1)]
    if labels.min() < 0 or labels.max() >= len(names):
        raise DataError(f"{path}: labels range from {labels.min()} to {labels.max()}; expected 0 to {len(names) - 1} ({len(names)} classes)")
    return splits, names


def _read_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=DIGITS_TEST_FRACTION, stratify=digits.target, random_state=0
    )
    return {"train": (x_train, y_train), "test": (x_test, y_test)}, [str(i) for i in range(10)]


def _read_tfds(data):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(data.source, data_dir=data.data_dir)
        builder.download_and_prepare()
    except Exception as error:  # tfds raises many kinds: no network, unknown name, ...
        raise DataError(
            f"tensorflow-datasets could not provide '{data.source}': {str(error).splitlines()[0][:200]}. "
            "Without a network, pass --data-dir (or set ARCHSEARCH_DATA_DIR) to a local image folder or .npz "
            "with the same classes"
        ) from None
    names = builder.info.features["label"].names
    splits = {}
    for key, split in (("train", data.train_split), ("test", data.test_split)):
        images, labels = [], []
        for image, label in tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True)):
            images.append(_resized(image[..., 0] if image.shape[-1] == 1 else image, data.image_size or image.shape[:2]))
            labels.append(label)
        x = np.stack(images)
        splits[key] = (x[..., None] if x.ndim == 3 else x, np.array(labels))
    return splits, names


def _array_options(splits, names, data, where):
    """Applies classes, grayscale and image_size to arrays already in memory."""
    if data.classes:
        _check_classes(data.classes, names, where)
        order = {names.index(c): i for i, c in enumerate(data.classes)}
        for split, (x, y) in splits.items():
            keep = np.isin(y, list(order))
            splits[split] = (x[keep], np.vectorize(order.get, otypes=[np.int32])(y[keep]) if keep.any() else y[keep])
        names = list(data.classes)
    for split, (x, y) in splits.items():
        if data.grayscale and x.shape[-1] == 3:
            x = np.round(x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)[..., None]
        if data.image_size and x.shape[1:3] != data.image_size:
            squeeze = x.shape[-1] == 1
            x = np.stack([_resized(i[..., 0] if squeeze else i, data.image_size) for i in x])
            x = x[..., None] if squeeze else x
        splits[split] = (x.astype(np.uint8), y.astype(np.int32))
    return splits, names


# --- Loading, caching, splitting -------------------------------------------------------------


def _cache_dir(cache_dir):
    path = Path(cache_dir or os.environ.get("ARCHSEARCH_CACHE_DIR") or platformdirs.user_cache_dir("archsearch"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _options_key(data):
    """The options that change the cached arrays (not validation or seed: the split comes after)."""
    return {k: data.to_dict()[k] for k in ("classes", "grayscale", "per_class", "image_size", "train_split", "test_split")}


def _fingerprint(identity, data):
    text = json.dumps({"v": _CACHE_VERSION, "identity": identity, "options": _options_key(data)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plan(data, data_dir, cache_dir):
    """Works out the source, its fingerprint and a reader, without decoding anything.

    Returns:
        `(source description, fingerprint, read)`, `read()` returning
        `(splits, class names)` with every option applied but the split.
    """
    local = _local_path(data, data_dir)
    if local is None and data.source == "digits":
        return "sklearn:digits", _fingerprint("sklearn:digits", data), lambda: _array_options(*_read_digits(), data, "digits")
    if local is None:
        identity = f"tfds:{data.source}:{data.data_dir}"
        return f"tfds:{data.source}", _fingerprint(identity, data), lambda: _array_options(*_read_tfds(data), data, data.source)
    if local.is_file() and local.suffix == ".npz":
        identity = f"npz:{hashlib.sha256(local.read_bytes()).hexdigest()}"
        return f"npz:{local}", _fingerprint(identity, data), lambda: _array_options(*_read_npz(local), data, str(local))
    if local.is_file() and local.name.endswith((".tar.gz", ".tgz", ".tar")):
        local = _unpack(local, cache_dir)
    if not local.is_dir():
        raise DataError(f"{local}: expected an image folder <root>/<split>/<class>/<image>, a .npz or a .tar.gz of a folder")
    root = _folder_root(local, data)
    names, train_available, train_files, ignored = _list_split(root, data.train_split, data.classes)
    _, test_available, test_files, test_ignored = _list_split(root, data.test_split, data.classes)
    if not data.classes and train_available != test_available:
        only_train = sorted(set(train_available) - set(test_available))
        only_test = sorted(set(test_available) - set(train_available))
        raise DataError(f"{root}: class folders differ between {data.train_split} and {data.test_split}: "
                        f"only in {data.train_split}: {only_train or 'none'}; only in {data.test_split}: {only_test or 'none'}")
    if ignored or test_ignored:
        skipped = ignored + test_ignored
        warnings.warn(f"{root}: ignored {len(skipped)} file(s) that are not images, e.g. {skipped[0]}", stacklevel=2)
    train_files = _cap(train_files, data.per_class)
    identity = _folder_identity(train_files + test_files)

    def read():
        train = _decode_all(train_files, data.grayscale, data.image_size, str(root / data.train_split))
        size = data.image_size or train[0].shape[1:3]
        test = _decode_all(test_files, data.grayscale, size, str(root / data.test_split))
        return {"train": train, "test": test}, names

    return f"folder:{root}", _fingerprint(identity, data), read


def _cap(files, per_class):
    if not per_class:
        return files
    seen = collections.Counter()
    kept = []
    for path, label in files:
        if seen[label] < per_class:
            kept.append((path, label))
            seen[label] += 1
    return kept


def _save_cache(path, splits, names):
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, x_train=splits["train"][0], y_train=splits["train"][1],
                     x_test=splits["test"][0], y_test=splits["test"][1], class_names=np.array(names))
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def load_data(data, *, data_dir=None, cache_dir=None):
    """Loads a space's data as NumPy arrays, from the cache when it can.

    Args:
        data: the space's `Data` declaration.
        data_dir: a local image folder, `.tar.gz` of one, or `.npz` to read
            instead of the declared source (default: the environment variable
            `ARCHSEARCH_DATA_DIR`); class names are matched by name.
        cache_dir: where decoded arrays are cached (default:
            `ARCHSEARCH_CACHE_DIR`, else the per-user cache directory).

    Returns:
        A `Dataset`, its validation split carved from training.

    Raises:
        DataError: naming the path, class or file at fault and what to do.

    Example:

    >>> dataset = load_data(Data("digits"))
    >>> dataset.shape, dataset.num_classes
    ((8, 8, 1), 10)
    """
    start = time.perf_counter()
    cache = _cache_dir(cache_dir)
    source, fingerprint, read = _plan(data, data_dir, cache)
    cache_path = cache / f"{fingerprint}.npz"
    if cache_path.exists():
        with np.load(cache_path) as arrays:
            splits = {s: (arrays[f"x_{s}"], arrays[f"y_{s}"]) for s in ("train", "test")}
            names = [str(n) for n in arrays["class_names"]]
    else:
        splits, names = read()
        if data.per_class and not source.startswith("folder:"):  # a folder is capped before decoding
            x, y = splits["train"]
            keep = np.concatenate([np.flatnonzero(y == label)[: data.per_class] for label in range(len(names))])
            splits["train"] = (x[np.sort(keep)], y[np.sort(keep)])
        _save_cache(cache_path, splits, names)
    x, y = splits["train"]
    counts = np.bincount(y, minlength=len(names))
    if (counts == 0).any():
        raise DataError(f"{source}: no training images of class {names[int(np.argmin(counts))]!r}")
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=data.validation, stratify=y, random_state=data.seed)
    x_test, y_test = splits["test"]
    return Dataset(
        x_train, y_train, x_val, y_val, x_test, y_test, names, source, fingerprint, str(cache_path),
        time.perf_counter() - start,
    )


def peek(data, *, data_dir=None):
    """Returns `(image shape, number of classes)` without decoding the data.

    Reads a cached copy if there is one, else a folder's listing and a few
    image headers, a .npz's array shapes, or tensorflow-datasets' metadata.

    Args:
        data: the space's `Data` declaration.
        data_dir: as for `load_data()`.
    """
    channels = 1 if data.grayscale else None
    local = _local_path(data, data_dir)
    if local is None and data.source == "digits":
        shape, names = (8, 8, 1), [str(i) for i in range(10)]
    elif local is None:
        import tensorflow_datasets as tfds

        try:
            info = tfds.builder(data.source, data_dir=data.data_dir).info
        except Exception as error:  # an unknown name, mostly
            raise DataError(f"tensorflow-datasets does not know '{data.source}': {str(error).splitlines()[0][:200]}") from None
        shape, names = tuple(info.features["image"].shape), info.features["label"].names
    elif local.suffix == ".npz":
        splits, names = _read_npz(local)
        shape = splits["train"][0].shape[1:]
    else:
        if local.is_file():
            local = _unpack(local, _cache_dir(None))
        root = _folder_root(local, data)
        names, _, files, _ = _list_split(root, data.train_split, data.classes)
        sizes = collections.Counter()
        for path, _ in files[:: max(1, len(files) // 20)][:20]:
            with Image.open(path) as image:
                sizes[(image.height, image.width, 1 if image.mode in ("L", "1", "I;16") else 3)] += 1
        shape = sizes.most_common(1)[0][0]
    if data.classes:
        if local is not None:  # tfds learns some class names only when it downloads
            _check_classes(data.classes, list(names), str(local))
        names = data.classes
    height, width = data.image_size or shape[:2]
    if height is None or width is None:
        raise DataError(f"data: '{data.source}' has images of mixed sizes; set image_size=(height, width)")
    return (height, width, channels or shape[2]), len(names)


def data_summary(dataset):
    """Returns what `archsearch data` reports: source, classes, shape, counts, fingerprint, cache, seconds."""
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
