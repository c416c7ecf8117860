"""Data in: image folders (or archives of one), .npz arrays, tensorflow-datasets, and the offline default.

Every source becomes uint8 images `(N, H, W, C)`, channels last, with int32
labels, so feeding is the same under every Keras backend (no `tf.data` in
what is returned). The images stay in the cache's `.npy` files and are read
a batch at a time (`archsearch.data.images.DiskImages`), so the data can be
larger than memory. TensorFlow and tensorflow-datasets are imported only for
tensorflow-datasets sources.

Policies:

- Decoded arrays are cached as a folder of `.npy` files, written in a
  staging folder and renamed once complete (an image folder's a block at a
  time, never whole in memory), and keyed by the source's identity (a folder: its files' relative paths, sizes
  and modification times; a `.npz` or archive: a hash of its bytes; a
  tensorflow-datasets name: its full versioned name; arrays given to
  `Data.from_arrays()`, stored once as a `.npz` in the cache under the sha256
  of their content, that file's hash) and by the options that
  change the arrays (`classes`, `grayscale`, `per_class`, `test_per_class`,
  `image_size`, `crop_to_aspect_ratio`, the split names). The validation split is carved afterwards,
  so changing `validation` or `seed` reuses the cache.
- Unreadable images in a folder are skipped with a warning that names them,
  as long as they are at most 1% of their split; more than that is an error,
  since it usually means the folder is not what the space thinks it is.
  Files that are not images by their extension are ignored, with a warning.
- Images of other sizes are resized (bilinear) to `image_size`, or, without
  it, to the most common size of the training split, with a warning. They
  are stretched, or with `crop_to_aspect_ratio=True` resized from their
  largest centred window of the target's aspect ratio (Keras's option).
- A folder of gray images loads with one channel, unless any of its images
  is in color; `grayscale=True` converts everything to one channel of ITU-R
  601 luma, exactly as Pillow's `convert("L")`.
- `per_class` keeps the first images of each class in source order (file
  name order in a folder), before the validation split; `test_per_class` does
  the same to the test split, which nothing else touches.

Modules, in the order a load passes through them: `declaration` (`Data`,
`Dataset`), `load` (which source, the cache or a decode, the validation
split), `cache` with `images` (the images on disk), then one reader per kind
of source: `folders` (folders and archives) with `decode` (Pillow, in
parallel), `arrays` (`.npz`, digits) and `tfds`.
"""

from archsearch.data.cache import cache_folder
from archsearch.data.declaration import Data, Dataset
from archsearch.data.load import data_summary, load_data, peek

__all__ = ["Data", "Dataset", "cache_folder", "data_summary", "load_data", "peek"]
