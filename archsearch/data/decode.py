"""Decoding images with Pillow, in parallel, into one uint8 `.npy` file per split, a block at a time.

Unreadable images are skipped with a warning while they are at most 1% of
their split. Images of other sizes are resized (bilinear) to `image_size`,
or, without it, to the most common size, stretched or, with
`crop_to_aspect_ratio`, from their centred window of its aspect ratio; a folder of gray images keeps one
channel unless any image is in color.
"""

import collections
import concurrent.futures
import io
import multiprocessing
import os
import warnings

import numpy as np
from PIL import Image

from archsearch.compat.jax import backends_may_be_running
from archsearch.data.images import BLOCK_BYTES, DiskImages, ImageWriter, save_images
from archsearch.errors import DataError

SPLITS = ("train", "test")

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
MAX_UNREADABLE_FRACTION = 0.01
DECODE_CHUNK = 1000  # images per task of the decoding pool
UNREADABLE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def _decode_image(job, grayscale, size, crop):
    """Decodes one image (a path or its bytes) to uint8 `(H, W, C)`, C = 1 for gray images."""
    with Image.open(job if isinstance(job, str) else io.BytesIO(job)) as image:
        gray = grayscale or image.mode in GRAY_MODES
        image = image.convert("L" if gray else "RGB")
        if size:
            image = _resized(image, size, crop)
        array = np.asarray(image)
    return array[..., None] if gray else array


def _resized(image, size, crop):
    """A Pillow image resized to `(height, width)`, bilinear; with `crop`, from its centred window of that shape."""
    if crop:  # cut first, then resize: Pillow's `box=` would blend in pixels beyond the window, as Keras does not
        image = image.crop(crop_box(image.height, image.width, size))
    if image.size == (size[1], size[0]):
        return image
    return image.resize((size[1], size[0]), Image.BILINEAR)


def crop_box(height, width, size):
    """The largest centred window of an image with the aspect ratio of `size`, as Pillow's `(left, top, right, bottom)`.

    Written out rather than taken from Pillow's `ImageOps.fit` (which crops at
    fractional pixels) so that it is exactly the window of Keras's
    `Resizing(crop_to_aspect_ratio=True)`, which the exported model applies to
    images of other sizes: the same rounding down, in the same order.
    """
    target_height, target_width = size
    crop_height = max(min(height, int(width * target_height / target_width)), 1)
    crop_width = max(min(width, int(height * target_width / target_height)), 1)
    top, left = int((height - crop_height) / 2), int((width - crop_width) / 2)
    return left, top, left + crop_width, top + crop_height


def _decode_block(task):
    """Decodes `[job]` into one block of images of the target shape.

    Returns:
        `(block, [(position in the block, reason)])`: a failed image's row is left zero.
    """
    jobs, grayscale, size, crop, target, channels = task
    block, failures = np.zeros((len(jobs), *target, channels), np.uint8), []
    for position, job in enumerate(jobs):
        try:
            image = _decode_image(job, grayscale, size, crop)
        except UNREADABLE_ERRORS as error:
            failures.append((position, f"{type(error).__name__}: {error}"))
            continue
        block[position] = resize(image, target, crop)  # broadcast: a gray image fills every channel
    return block, failures


def _workers():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _map(function, tasks):
    """Yields the results of tasks, in order, from forked worker processes when there is more than one task and core.

    One executor: on 2 free cores, CIFAR-10's 60,000 JPEGs decode in about
    3.5 s in two forked workers and 5.6 s in this process alone; two threads
    took 1.0 to 1.3 times as long as this process alone in 29 of 30 paired
    tries (they hold the GIL for most of each small image; figures in
    results/bench/README.md). A
    fork server's or a spawned worker imports the data package again (about
    1 s) and needs the caller's script to guard its main code, so workers are
    forked. Once JAX has started its backends (and their threads), forking
    can deadlock, so the tasks then run in this process.
    """
    workers = min(len(tasks), _workers())
    if workers < 2 or not _fork_is_safe():
        yield from map(function, tasks)
        return
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        pending = collections.deque()  # a few tasks ahead, not all: finished blocks wait here to be written
        for task in tasks:
            pending.append(pool.submit(function, task))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _fork_is_safe():
    """Whether this process can fork: not where JAX's backends are running, as JAX itself warns."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    return not backends_may_be_running()  # read from what JAX has imported, if anything: it imports no JAX


def _decode_images(entries, data, target, channels, path):
    """Decodes a split's images in parallel into the `.npy` at `path`, a block at a time, never all in memory.

    Args:
        entries: `[(label, relative name, identity, job)]`.
        data: the `Data` (its `grayscale`, `image_size`, `crop_to_aspect_ratio`).
        target: `(height, width)` of every image.
        channels: 1 or 3, for every image.
        path: the `.npy` file to write, a row per entry (an unreadable image's left zero).

    Returns:
        The unreadable images, `[(index, reason)]`.
    """
    per_block = max(1, min(DECODE_CHUNK, BLOCK_BYTES // (target[0] * target[1] * channels)))
    starts = range(0, len(entries), per_block)
    tasks = [
        ([entry[3] for entry in entries[i : i + per_block]], data.grayscale, data.image_size, data.crop_to_aspect_ratio)
        + (tuple(target), channels)
        for i in starts
    ]
    failures = []
    with ImageWriter(path, (len(entries), *target, channels)) as writer:
        for start, (block, block_failures) in zip(starts, _map(_decode_block, tasks)):
            writer.write(start, block)
            failures += [(start + position, reason) for position, reason in block_failures]
    return failures


def _without_unreadable(path, entries, failures):
    """Leaves the unreadable images' rows out of the `.npy` at `path`; returns the labels of the rows kept."""
    kept = np.setdiff1d(np.arange(len(entries)), [index for index, _ in failures])
    if failures:
        written = path.with_name(f"unread-{path.name}")
        os.rename(path, written)
        save_images(path, DiskImages(written).take(kept))
        os.remove(written)
    return np.array([label for label, *_ in entries], dtype=np.int32)[kept]


def _check_unreadable(failures, entries, where, warn=True):
    """Raises `DataError` where more than 1% of a split cannot be read; else, with `warn`, names the images skipped."""
    if not failures:
        return
    names = [f"{where}/{entries[index][1]}" for index, _ in failures]
    if len(failures) > MAX_UNREADABLE_FRACTION * len(entries):
        raise DataError(
            f"{where}: {len(failures)} of {len(entries)} images cannot be read (more than "
            f"{MAX_UNREADABLE_FRACTION:.0%}), e.g. {names[0]} ({failures[0][1]}); remove or replace them"
        )
    if not warn:
        return
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    warnings.warn(f"{where}: skipped {len(failures)} unreadable image(s): {', '.join(names[:5])}{more}", stacklevel=4)


def assemble(blocks, size, where, warn, crop=False):
    """Puts decoded blocks `[(indices, images)]` back in index order, in one size and channel count.

    Args:
        blocks: decoded images grouped by shape, with their indices.
        size: `(height, width)` to resize to, or None for the most common size.
        where: the split, for the warning about resized images.
        warn: whether to warn about resized images (not when the user chose the size).
        crop: resize from each image's centred window of the target's aspect ratio.

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
        x[np.searchsorted(kept, indices)] = _fit(images, target, channels, crop)
    return x, kept


def _fit(images, size, channels, crop=False):
    """Resizes uint8 images `(N, H, W, C)` to `size` and repeats a gray channel to `channels`."""
    if images.shape[1:3] != tuple(size):
        images = np.stack([resize(image, size, crop) for image in images])
    return np.repeat(images, channels, axis=-1) if images.shape[-1] < channels else images


def resize(image, size, crop=False):
    """Resizes a uint8 `(H, W, C)` image to `(height, width)`, bilinear.

    With `crop`, it is resized from its centred window of that aspect ratio.
    """
    if image.shape[:2] == tuple(size):
        return image
    resized = np.asarray(_resized(Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image), size, crop))
    return resized.reshape(*size, image.shape[-1])


def write_tree(data, listing, folder):
    """Decodes a folder's listed images into a cache entry's files, a block at a time.

    Every image takes one size and channel count, read from the headers
    first: `image_size`, else the most common training size; 3 channels if
    any image of either split is in color (and not `grayscale`). Images
    whose header reads but whose pixels do not are left out of both, and
    should that change them, the folder is decoded once more.

    Args:
        data: the `Data`.
        listing: `(class names, entries per split, split folders)` from `tree_listing()`.
        folder: where to write `x_<split>.npy` and `y_<split>.npy`.

    Returns:
        The class names.
    """
    names, entries, wheres = listing
    headers = _headers(entries, wheres)
    failed = {split: () for split in SPLITS}
    while True:
        target, channels, sizes = _decided(headers, failed, data)
        failures = {}
        for split in SPLITS:
            failures[split] = _decode_images(entries[split], data, target, channels, folder / f"x_{split}.npy")
            _check_unreadable(failures[split], entries[split], wheres[split], warn=False)
        if _decided(headers, failures, data)[:2] == (target, channels):
            break
        failed = failures  # the decoded images alone decide
    for split in SPLITS:
        _check_unreadable(failures[split], entries[split], wheres[split])
        odd = sum(sizes[split].values()) - sizes[split][target]
        if data.image_size is None and odd:
            warnings.warn(
                f"{wheres[split]}: resized {odd} of {sum(sizes[split].values())} images to {target[0]}x{target[1]}, "
                "the most common training image size; set image_size=(height, width) to choose",
                stacklevel=3,
            )
        labels = _without_unreadable(folder / f"x_{split}.npy", entries[split], failures[split])
        np.save(folder / f"y_{split}.npy", labels)
    return names


def _decided(headers, failed, data):
    """The size and channels of every image, from the headers of the images not in `failed`.

    Returns:
        `(target (height, width), channels, {split: Counter of (height, width)})`.
    """
    left_out = {split: {index for index, *_ in failed[split]} for split in SPLITS}
    sizes, channels = {}, 1
    for split in SPLITS:
        read = [header for index, header in enumerate(headers[split]) if header and index not in left_out[split]]
        sizes[split] = collections.Counter((height, width) for height, width, _ in read)
        channels = max([channels, *(c for *_, c in read)])
    target = tuple(data.image_size) if data.image_size else sizes["train"].most_common(1)[0][0]
    return target, 1 if data.grayscale else channels, sizes


def _header_chunk(jobs):
    """Reads images' headers, not their pixels: `(height, width, channels)` of each, None where unreadable.

    Channels is 1 for a gray image, else 3.
    """
    headers = []
    for job in jobs:
        try:
            with Image.open(job if isinstance(job, str) else io.BytesIO(job)) as image:
                headers.append((image.height, image.width, 1 if image.mode in GRAY_MODES else 3))
        except UNREADABLE_ERRORS:
            headers.append(None)
    return headers


def _headers(entries, wheres):
    """Every image's header, per split: `{split: [(height, width, channels) or None]}`."""
    headers = {}
    for split in SPLITS:
        jobs = [entry[3] for entry in entries[split]]
        chunks = [jobs[i : i + DECODE_CHUNK] for i in range(0, len(jobs), DECODE_CHUNK)]
        headers[split] = [header for chunk in _map(_header_chunk, chunks) for header in chunk]
    if not any(headers["train"]):
        raise DataError(f"{wheres['train']}: none of the images can be read, e.g. {entries['train'][0][1]}")
    return headers


def listed_shape(entries, wheres):
    """The image shape `load_data()` gives a folder, from every image's header, as `write_tree()` decides."""
    headers = _headers(entries, wheres)
    sizes = collections.Counter((height, width) for height, width, _ in filter(None, headers["train"]))
    channels = max(c for split in SPLITS for *_, c in filter(None, headers[split]))
    (height, width), _ = sizes.most_common(1)[0]
    return height, width, channels
