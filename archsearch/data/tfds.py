"""tensorflow-datasets sources: the only part of the data layer that imports TensorFlow, when it reads one."""

import re

import numpy as np

from archsearch.data.decode import assemble, resize
from archsearch.errors import DataError

TFDS_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[\w.-]+)?(:[\d.*]+)?$")
_LOCAL_COPY_HINT = (
    "pass --data-dir (or set ARCHSEARCH_DATA_DIR) to a local image folder, its .tar.gz, or a .npz with the same classes"
)


def _import_tfds(data):
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DataError(
            f"data: source {data.source!r} needs tensorflow-datasets, which cannot be imported ({error}); "
            f"instead, {_LOCAL_COPY_HINT}"
        ) from None
    return tfds


def tfds_builder(data):
    """Returns the tfds builder of `data.source` (metadata only: nothing is downloaded)."""
    tfds = _import_tfds(data)
    try:
        return tfds.builder(data.source, data_dir=data.data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"data: source {data.source!r} is neither a file or folder nor a tensorflow-datasets name "
            "(e.g. 'cifar10', 'mnist'); check the spelling or the path"
        ) from None


def read_tfds(data):
    """Returns `(splits, class names)` of a tfds source, downloading it if tfds has not yet."""
    tfds = _import_tfds(data)
    try:
        datasets, info = tfds.load(
            data.source,
            split=[data.train_split, data.test_split],
            data_dir=data.data_dir,
            as_supervised=True,
            with_info=True,
        )
    except Exception as error:  # tfds fails with many unrelated types: network, checksum, unknown split, import
        reason = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
        raise DataError(
            f"tensorflow-datasets could not load {data.source!r} (splits {data.train_split!r}, {data.test_split!r}): "
            f"{reason}. Without a network, {_LOCAL_COPY_HINT}; for an unknown split, set train_split / test_split, "
            "e.g. 'train[:80%]' and 'train[80%:]'"
        ) from error
    image, label = tfds_features(info, data)
    fixed = None not in image.shape
    splits = {
        key: _tfds_arrays(tfds, dataset, fixed, data, f"tfds:{data.source}[{split}]")
        for key, split, dataset in zip(("train", "test"), (data.train_split, data.test_split), datasets)
    }
    return splits, list(label.names)


def tfds_features(info, data):
    """Returns the image and class label features of a tfds data set."""
    keys = info.supervised_keys
    if not keys or not hasattr(info.features[keys[1]], "names") or len(info.features[keys[0]].shape) != 3:
        raise DataError(
            f"tensorflow-datasets {data.source!r}: not an image classification data set (supervised keys {keys})"
        )
    return info.features[keys[0]], info.features[keys[1]]


def _tfds_arrays(tfds, dataset, fixed, data, where):
    """Returns `(x, y)` of one tfds split, resized as `data` asks.

    Batched when its images share a size, else one by one.
    """
    size = data.image_size
    if fixed:
        batches = list(tfds.as_numpy(dataset.batch(4096)))  # resized afterwards, with the other array sources
        return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])
    blocks, labels = [], []
    for index, (image, label) in enumerate(tfds.as_numpy(dataset)):
        blocks.append(
            (np.array([index]), resize(image, size, data.crop_to_aspect_ratio)[None] if size else image[None])
        )
        labels.append(label)
    x, _ = assemble(blocks, size, where, warn=size is None, crop=data.crop_to_aspect_ratio)
    return x, np.array(labels)
