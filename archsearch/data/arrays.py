"""Sources already held as arrays: a `.npz`, and scikit-learn's digits; the options applied to arrays in memory."""

import zipfile

import numpy as np
from sklearn.model_selection import train_test_split

from archsearch.data.declaration import check_classes
from archsearch.data.decode import resize
from archsearch.errors import DataError

DIGITS_TEST_FRACTION = 0.2


def read_npz(path):
    """Returns `(splits, class names)` of a checked `.npz`; every option but the validation split still to apply."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            contents = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(
            f"{path}: not a readable .npz ({error}); save it with np.savez and plain (not object) arrays"
        ) from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in contents]
    if missing:
        raise DataError(f"{path}: missing arrays {', '.join(missing)}; expected x_train, y_train, x_test, y_test")
    splits = {split: _npz_split(path, split, contents) for split in ("train", "test")}
    train_shape, test_shape = splits["train"][0].shape[1:], splits["test"][0].shape[1:]
    if train_shape != test_shape:
        raise DataError(
            f"{path}: x_train images are {train_shape} but x_test images are {test_shape}; "
            "expected one (H, W, C) for both splits"
        )
    labels = np.concatenate([splits["train"][1], splits["test"][1]])
    if "class_names" in contents:
        names = [str(n) for n in contents["class_names"].reshape(-1)]
    elif labels.max() >= len(labels):  # not every class up to it can have an image: a stray label, not a class count
        raise DataError(
            f"{path}: label {labels.max()} with {len(labels)} images and no class_names; "
            "expected labels 0 to the number of classes - 1"
        )
    else:
        names = [str(i) for i in range(int(labels.max()) + 1)]
    if labels.min() < 0 or labels.max() >= len(names):
        raise DataError(
            f"{path}: labels range from {labels.min()} to {labels.max()}; "
            f"expected 0 to {len(names) - 1} ({len(names)} classes)"
        )
    return splits, names


def _npz_split(path, split, contents):
    """Returns one split's checked `(x, y)`, x as uint8 `(N, H, W, C)`."""
    x, y = contents[f"x_{split}"], contents[f"y_{split}"]
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(
            f"{path}: x_{split} has shape {x.shape}; expected (N, H, W), (N, H, W, 1) or (N, H, W, 3), channels last"
        )
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
        raise DataError(
            f"{path}: x_{split} has {len(x)} images but y_{split} has shape {y.shape}; expected ({len(x)},) labels"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y_{split} holds {y.dtype} values; expected integer class labels 0, 1, ...")
    return x, y


def read_digits():
    """Returns `(splits, class names)` of scikit-learn's digits: a fixed, stratified 80/20 train/test split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=DIGITS_TEST_FRACTION, stratify=digits.target, random_state=0
    )
    return {"train": (x_train, y_train), "test": (x_test, y_test)}, [str(i) for i in range(10)]


def array_options(splits, names, data, where):
    """Applies classes, caps, grayscale and image_size to arrays already in memory."""
    if data.classes:
        check_classes(data.classes, names, where)
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
            x = np.stack([resize(image, data.image_size, data.crop_to_aspect_ratio) for image in x]) if len(x) else x
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


def checked_arrays(x_train, y_train, x_test, y_test, class_names=None):
    """Checks arrays given to `Data.from_arrays()`; returns `(splits, class names)` as a `.npz` would hold them.

    Args:
        x_train, x_test: uint8 images, `(N, H, W)` or `(N, H, W, C)` with C 1 or 3.
        y_train, y_test: integer labels, `(N,)` or `(N, 1)`.
        class_names: the names of labels 0, 1, ... (default: "0", "1", ...).

    Returns:
        `({"train": (x, y), "test": (x, y)}, names)`: x uint8 `(N, H, W, C)`, y int64 `(N,)`.

    Raises:
        DataError: naming the argument at fault and what was expected.
    """
    where = "Data.from_arrays"
    splits = {}
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype != np.uint8:
            raise DataError(
                f"{where}: x_{split} has dtype {x.dtype}; expected uint8 pixels 0..255 "
                "(scaled to [0, 1]? pass (x * 255).round().astype('uint8'))"
            )
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3) or len(x) == 0:
            raise DataError(
                f"{where}: x_{split} has shape {x.shape}; expected (N, H, W), (N, H, W, 1) or (N, H, W, 3) "
                "with N >= 1, channels last"
            )
        y = y.reshape(-1) if y.ndim == 2 and y.shape[1:] == (1,) else y
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{where}: y_{split} has dtype {y.dtype}; expected integer class labels 0, 1, ...")
        if y.shape != (len(x),):
            raise DataError(
                f"{where}: y_{split} has shape {y.shape} for {len(x)} images in x_{split}; expected ({len(x)},)"
            )
        splits[split] = (x, y.astype(np.int64))
    if splits["train"][0].shape[1:] != splits["test"][0].shape[1:]:
        raise DataError(
            f"{where}: x_train images are {splits['train'][0].shape[1:]} but x_test images are "
            f"{splits['test'][0].shape[1:]}; expected one (H, W, C) for both"
        )
    labels = np.concatenate([splits["train"][1], splits["test"][1]])
    if class_names is None:
        names = [str(i) for i in range(int(labels.max()) + 1)]
    elif isinstance(class_names, str) or not all(isinstance(n, str) and n for n in class_names):
        raise DataError(f"{where}: class_names={class_names!r}: expected a list of names, one per label 0, 1, ...")
    else:
        names = list(class_names)
    for split, (_, y) in splits.items():
        if y.min() < 0 or y.max() >= len(names):
            raise DataError(
                f"{where}: y_{split} holds labels {y.min()} to {y.max()}; "
                f"expected 0 to {len(names) - 1}, one per class name ({len(names)} classes)"
            )
    return splits, names
