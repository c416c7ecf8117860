"""What a space declares about its data (`Data`), and what loading gives back (`Dataset`)."""

import dataclasses
import numbers
import os

import numpy as np

from archsearch.data.cache import store_arrays
from archsearch.data.images import concatenate
from archsearch.errors import DataError


@dataclasses.dataclass(frozen=True)
class Data:
    """The data of a space, as declared in a space file.

    Args:
        source: `"digits"` (scikit-learn's bundled 8x8 handwritten digits,
            1,797 images, the offline default), a tensorflow-datasets name
            (`"cifar10"`, `"mnist"`, `"cats_vs_dogs"`, ...), an image folder
            `<root>/<split>/<class>/<image>` or a `.tar.gz` / `.zip` of one,
            or a `.npz` with `x_train`, `y_train`, `x_test`, `y_test` (and
            optionally `class_names`); `Data.from_arrays()` declares
            arrays in memory as `"arrays:<digest>"`. An existing path wins
            over a tensorflow-datasets name.
        validation: fraction of the training split held out for validation
            (stratified, seeded), in (0, 1).
        classes: keep only these classes, relabeled 0, 1, ... in this order.
        grayscale: convert to one channel (ITU-R 601 luma, as Pillow's "L").
        per_class: keep at most this many training images per class (the
            first ones in source order), before the validation split.
        test_per_class: the same cap for the test split (default: none).
        image_size: `(height, width)` every image is resized to; without it,
            images of other sizes are resized to the most common size.
        crop_to_aspect_ratio: resize without distortion: each image is first
            cut to its largest centred window of the target's aspect ratio,
            as Keras's `image_dataset_from_directory` does (default: the
            whole image is stretched to the target size).
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
    crop_to_aspect_ratio: bool = False
    data_dir: str = None
    train_split: str = "train"
    test_split: str = "test"
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.source, (str, os.PathLike)) or not str(self.source):
            raise DataError(f"data: source={self.source!r}: expected 'digits', a tfds name, a folder or a .npz path")
        self._set("source", str(self.source))
        if (
            isinstance(self.validation, bool)
            or not isinstance(self.validation, numbers.Real)
            or not 0 < self.validation < 1
        ):
            raise DataError(f"data: validation={self.validation!r}: expected a fraction between 0 and 1, e.g. 0.1")
        if self.classes is not None:
            self._set("classes", _checked_classes(self.classes))
        for field in ("grayscale", "crop_to_aspect_ratio"):
            if not isinstance(getattr(self, field), bool):
                raise DataError(f"data: {field}={getattr(self, field)!r}: expected True or False")
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
            raise DataError(
                f"data: test_split={self.test_split!r}: the same as train_split; the test split must be held out"
            )
        if not _is_int(self.seed):
            raise DataError(f"data: seed={self.seed!r}: expected an int")
        self._set("seed", int(self.seed))
        self._set("validation", float(self.validation))

    @classmethod
    def from_arrays(cls, x_train, y_train, x_test, y_test, *, class_names=None, **options):
        """Declares data held in NumPy arrays, e.g. in a notebook.

        The arrays are written once to archsearch's data cache as a `.npz`
        named by the sha256 of their content, and the declaration names
        that digest (`source="arrays:<digest>"`). So a space on them has a
        fingerprint that changes when their content does and only then, a
        run on them resumes, and its export check reloads them from the
        cache, as for a `.npz` file.

        Args:
            x_train, x_test: uint8 images, `(N, H, W)` (gray) or
                `(N, H, W, C)` with C 1 or 3, channels last.
            y_train, y_test: integer labels 0, 1, ..., `(N,)` or `(N, 1)`.
            class_names: the names of labels 0, 1, ... (default: "0", "1", ...).
            **options: the other fields of `Data` (`validation`, `classes`,
                `grayscale`, `per_class`, `image_size`, ...).

        Returns:
            A `Data`.

        Raises:
            DataError: naming the argument whose dtype, shape or labels are wrong.

        Example:

        >>> import numpy as np
        >>> x = np.zeros((40, 8, 8), np.uint8)
        >>> y = np.arange(40) % 2
        >>> data = Data.from_arrays(x, y, x[:10], y[:10], class_names=["even", "odd"], validation=0.25)
        >>> data.source.startswith("arrays:"), data.validation
        (True, 0.25)
        """
        from archsearch.data.arrays import checked_arrays  # here: that module imports this one

        if "source" in options:
            raise DataError("Data.from_arrays: source=...: the arrays are the source; pass the other options only")
        return cls(store_arrays(*checked_arrays(x_train, y_train, x_test, y_test, class_names)), **options)

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
    if (
        isinstance(size, (str, bytes))
        or not hasattr(size, "__len__")
        or len(size) != 2
        or not all(_is_int(s) and s > 0 for s in size)
    ):
        raise DataError(f"data: image_size={size!r}: expected (height, width) in pixels, e.g. (32, 32)")
    return tuple(int(s) for s in size)


def check_classes(wanted, available, where):
    """Raises `DataError` naming the classes of `wanted` that `available` lacks."""
    missing = [c for c in wanted if c not in available]
    if missing:
        raise DataError(f"{where}: no class {', '.join(map(repr, missing))}; available: {', '.join(available)}")


@dataclasses.dataclass
class Dataset:
    """Loaded data: uint8 images `(N, H, W, C)` and int32 labels, per split.

    The images are `archsearch.data.images.DiskImages` where the cache holds
    them (read from disk a batch at a time, so the data can be larger than
    memory), NumPy arrays where there is no cache; both index and slice as
    arrays do, and `np.asarray()` reads either into memory.

    Args:
        x_train, y_train: the training split less the validation split.
        x_val, y_val: the validation split, carved from training.
        x_test, y_test: the test split, for the final evaluation only.
        class_names: the names of labels 0, 1, ...
        source: where it came from, e.g. `"folder:/data/cifar10"`,
            `"archive:/data/cifar10.tar.gz"`, `"npz:/data/a.npz"`,
            `"tfds:cifar10/3.0.2"`, `"sklearn:digits"` or `"arrays:<digest>"`.
        fingerprint: digest of the source's identity and of every option
            that changes the arrays, `validation` and `seed` included.
        cache_path: the cache entry (a folder) the images are read from
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
        return concatenate(self.x_train, self.x_val), np.concatenate([self.y_train, self.y_val])
