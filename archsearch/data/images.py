"""A split's images on disk: a `.npy` file of the cache, read a batch at a time, and written a block at a time.

Decoded data can be larger than memory, so the cache holds each split as a
`.npy` file and `DiskImages` reads only the rows asked for. The file is
memory-mapped for the read alone and unmapped after it: the process keeps
none of its pages (the kernel's page cache keeps what is read often), so
its resident memory does not grow with the data. Writing goes through
`os.pwrite` rather than a writable map for the same reason.
"""

import mmap
import os

import numpy as np


class DiskImages:
    """Images `(N, H, W, C)` in a `.npy` file, or some of its rows, read a batch at a time.

    Indexing with an integer, a slice or an array of row numbers returns a
    NumPy array of those rows, so that it stands where an array of images is
    expected: `len()`, `shape`, `dtype`, `ndim`, and `np.asarray()` (which
    reads the whole split into memory).

    Args:
        path: the `.npy` file.
        rows: the file's rows this holds, in order (default: all of them).

    Example:

    >>> import tempfile, numpy as np
    >>> path = tempfile.mkdtemp() + "/x.npy"
    >>> np.save(path, np.arange(24, dtype="uint8").reshape(6, 2, 2, 1))
    >>> images = DiskImages(path).take([4, 1])
    >>> images.shape, int(images[0][0, 0, 0])
    ((2, 2, 2, 1), 16)
    """

    def __init__(self, path, rows=None):
        self.path = str(path)
        mapped = np.load(self.path, mmap_mode="r")
        self._file_shape, self.dtype, self._offset = mapped.shape, mapped.dtype, mapped.offset
        del mapped
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)

    @property
    def shape(self):
        return (len(self), *self._file_shape[1:])

    @property
    def ndim(self):
        return len(self._file_shape)

    @property
    def nbytes(self):
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __len__(self):
        return self._file_shape[0] if self.rows is None else len(self.rows)

    def __repr__(self):
        return f"DiskImages({self.path!r}, shape={self.shape})"

    def _positions(self, key):
        """The file's row numbers of `key` (an int, a slice, an index array or a mask), as an int or an array.

        Raises:
            IndexError: as NumPy would, before the file is read.
        """
        count = len(self)
        if isinstance(key, slice):
            positions = np.arange(*key.indices(count), dtype=np.int64)
            return positions if self.rows is None else self.rows[positions]
        if isinstance(key, (int, np.integer)):
            index = int(key) + (count if key < 0 else 0)
            if not 0 <= index < count:
                raise IndexError(f"index {int(key)} is out of bounds for {count} images")
            return index if self.rows is None else int(self.rows[index])
        key = np.asarray(key)
        if key.ndim == 0 and np.issubdtype(key.dtype, np.integer):
            return self._positions(int(key))
        if key.dtype == bool:
            if key.shape != (count,):
                raise IndexError(f"a boolean index of shape {key.shape} for {count} images")
            key = np.flatnonzero(key)
        elif key.size == 0:
            key = key.astype(np.int64)
        elif not np.issubdtype(key.dtype, np.integer) or key.ndim != 1:
            raise IndexError(f"images are indexed by integers, slices or a boolean mask, not {key.dtype} {key.shape}")
        key = key.astype(np.int64)
        if key.size and (key.min() < -count or key.max() >= count):
            raise IndexError(f"indices from {key.min()} to {key.max()} are out of bounds for {count} images")
        key = np.where(key < 0, key + count, key)
        return key if self.rows is None else self.rows[key]

    def __getitem__(self, key):
        if key is Ellipsis or (isinstance(key, tuple) and key and key[0] is Ellipsis):
            return self[:][key]
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        positions = self._positions(key)
        with open(self.path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            count = int(np.prod(self._file_shape, dtype=np.int64))
            # The view dies with the call, before the map closes (a map with a live view cannot close).
            images = _copied_rows(
                np.frombuffer(mapped, self.dtype, count, self._offset).reshape(self._file_shape), positions
            )
        if not rest:
            return images
        return images[rest] if isinstance(positions, int) else images[(slice(None), *rest)]

    def __array__(self, dtype=None, copy=None):
        images = self[:]
        return images if dtype is None else images.astype(dtype, copy=False)

    def take(self, indices):
        """The images at `indices` (positions in this one, or a mask), still on disk."""
        return DiskImages(self.path, self._positions(np.asarray(indices)))

    def joined(self, other):
        """These images followed by `other`'s, rows of the same file, still on disk."""
        if other.path != self.path:
            raise ValueError(f"cannot join rows of {self.path} and {other.path}")
        return DiskImages(self.path, np.concatenate([self._positions(slice(None)), other._positions(slice(None))]))


def _copied_rows(mapped, positions):
    """A copy of rows `positions` (an int or an array) of a mapped array, read in file order."""
    if isinstance(positions, int):
        return np.array(mapped[positions])
    if len(positions) and np.all(np.diff(positions) == 1):  # a run of rows: one sequential read
        return np.array(mapped[positions[0] : positions[-1] + 1])
    order = np.argsort(positions, kind="stable")
    images = np.empty((len(positions), *mapped.shape[1:]), mapped.dtype)
    images[order] = mapped[positions[order]]
    return images


def take(images, indices):
    """`images[indices]`, kept on disk for `DiskImages`."""
    return images.take(indices) if isinstance(images, DiskImages) else images[indices]


def concatenate(first, second):
    """The images of `first` then `second`, kept on disk where both are rows of one `DiskImages` file."""
    if isinstance(first, DiskImages) and isinstance(second, DiskImages) and first.path == second.path:
        return first.joined(second)
    return np.concatenate([np.asarray(first), np.asarray(second)])


class ImageWriter:
    """Writes `(N, H, W, C)` uint8 images to a new `.npy` file, a block of rows at a time.

    Args:
        path: the `.npy` file to create.
        shape: the shape of the whole array.

    Example:

    >>> import tempfile, numpy as np
    >>> path = tempfile.mkdtemp() + "/x.npy"
    >>> with ImageWriter(path, (4, 2, 2, 3)) as writer:
    ...     writer.write(2, np.ones((2, 2, 2, 3), "uint8"))
    >>> int(np.load(path).sum())
    24
    """

    def __init__(self, path, shape):
        self.path, self.shape = str(path), tuple(shape)
        header = np.lib.format.open_memmap(self.path, "w+", np.uint8, self.shape)  # writes the header, sizes the file
        self._offset = header.offset
        del header
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64))
        self._fd = os.open(self.path, os.O_WRONLY)

    def write(self, start, images):
        """Writes `images` as rows `start`, `start + 1`, ..."""
        data = np.ascontiguousarray(images, dtype=np.uint8).tobytes()
        offset = self._offset + start * self._row_bytes
        while data:
            written = os.pwrite(self._fd, data, offset)
            data, offset = data[written:], offset + written

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


BLOCK_BYTES = 32 << 20  # about this many bytes of images per block written or copied


def save_images(path, images):
    """Writes images (an array or `DiskImages`) to a new `.npy` file, a block of rows at a time."""
    rows = max(1, BLOCK_BYTES // max(1, int(np.prod(images.shape[1:], dtype=np.int64))))
    with ImageWriter(path, images.shape) as writer:
        for start in range(0, len(images), rows):
            writer.write(start, images[start : start + rows])
