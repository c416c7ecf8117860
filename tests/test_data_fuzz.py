"""Fuzzing the data loader: every generated folder, archive or .npz loads cleanly or fails with one line naming it.

CI runs a few hundred examples; a long run sets the count, e.g.

    ARCHSEARCH_FUZZ_EXAMPLES=3000 python -m pytest tests/test_data_fuzz.py --hypothesis-show-statistics
"""

import io
import os
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from archsearch.data import Data, load_data
from archsearch.errors import DataError

EXAMPLES = int(os.environ.get("ARCHSEARCH_FUZZ_EXAMPLES", 100))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
MODES = ["L", "RGB", "RGBA", "P", "I;16"]
NAME_CHARS = st.sampled_from(list("abcxyz019 _-éü猫ñ"))


def encode(mode, size, fmt, seed):
    """Bytes of an image file of `mode` and `size` (width, height)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (size[1], size[0]), dtype=np.uint16))
    elif mode == "P":
        image = image.convert("P", palette=Image.ADAPTIVE, colors=8)
    else:
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


_HUGE = {}


def huge():
    """One 4000 x 4000 gray PNG, made once."""
    if "png" not in _HUGE:
        out = io.BytesIO()
        Image.new("L", (4000, 4000), 7).save(out, "PNG")
        _HUGE["png"] = out.getvalue()
    return _HUGE["png"]


@st.composite
def files(draw, damaged):
    """`(name, bytes)` of one file in a class folder: an image, or with `damaged`, maybe a broken one or no image."""
    stem = draw(st.text(NAME_CHARS, min_size=1, max_size=6)).strip() or "x"
    kinds = ["image"] * 4 + (["truncated", "garbage", "empty", "text"] if damaged else ["text"])
    kind = draw(st.sampled_from(kinds))
    if kind == "text":
        return f"{stem}.txt", b"not an image"
    if kind in ("garbage", "empty"):
        return f"{stem}.jpg", b"" if kind == "empty" else draw(st.binary(min_size=1, max_size=64))
    mode = draw(st.sampled_from(MODES))
    fmt = "JPEG" if mode in ("L", "RGB") and draw(st.booleans()) else "PNG"
    size = draw(st.sampled_from([(8, 8)] * 4 + [(1, 1), (7, 9), (16, 5), (3, 12)]))
    blob = encode(mode, size, fmt, draw(st.integers(0, 99)))
    if kind == "truncated":
        blob = blob[: draw(st.integers(0, len(blob) - 1))]
    return f"{stem}.{'jpg' if fmt == 'JPEG' else 'png'}", blob


@st.composite
def trees(draw):
    """`{split: {class: [(name, bytes)]}}`, sometimes damaged: broken files, empty classes and splits, other classes."""
    damaged = draw(st.booleans())
    classes = draw(
        st.lists(
            st.text(NAME_CHARS, min_size=1, max_size=5).map(str.strip).filter(bool), min_size=1, max_size=3, unique=True
        )
    )
    splits = (
        draw(st.sampled_from([("train", "test")] * 6 + [("train",), ("train", "test", "extra")]))
        if damaged
        else ("train", "test")
    )
    tree = {}
    for split in splits:
        names = classes[:-1] or classes if damaged and not draw(st.integers(0, 5)) else classes
        count = st.lists(files(damaged), min_size=0 if damaged else 4, max_size=8)
        tree[split] = {c: [(f"{i} {name}", blob) for i, (name, blob) in enumerate(draw(count))] for c in names}
    if draw(st.integers(0, 9)) == 0:  # at most one huge image: many would be a large data set, not a bad one
        tree["train"][classes[0]].append(("huge.png", huge()))
    return tree


def write_folder(root, tree, symlinks):
    for split, classes in tree.items():
        for name, entries in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for file, blob in entries:
                (folder / file).write_bytes(blob)
            if symlinks and entries:  # one link to an image beside it, one dangling
                (folder / "link.png").symlink_to(folder / entries[0][0])
                (folder / "gone.png").symlink_to(folder / "nowhere.png")
    return root


def write_archive(path, tree):
    members = [
        (f"data/{split}/{name}/{file}", blob)
        for split, classes in tree.items()
        for name, entries in classes.items()
        for file, blob in entries
    ]
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as archive:
            for name, blob in members:
                archive.writestr(name, blob)
    else:
        with tarfile.open(path, "w:gz") as archive:
            for name, blob in members:
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                archive.addfile(info, io.BytesIO(blob))
    return path


GOOD_X, GOOD_Y = np.zeros((8, 6, 6, 3), np.uint8), np.arange(8) % 2
ARRAYS = st.sampled_from(
    [
        np.zeros((8, 6, 6), np.uint8),
        np.zeros((8, 9, 9, 1), np.uint8),
        np.zeros((0, 6, 6, 3), np.uint8),
        np.full((8, 6, 6, 3), 0.5),
        np.full((8, 6, 6, 3), 255.0),
        np.full((8, 6, 6, 3), np.nan),
        np.full((8, 6, 6, 3), 300, np.int16),
        np.zeros((8, 6, 6, 2), np.uint8),
        np.zeros((8, 6), np.uint8),
        np.zeros((8, 6, 6, 3), bool),
        np.array(["a"] * 8),
        np.zeros((8, 6, 6, 3), np.float16),
    ]
)
LABELS = st.sampled_from(
    [
        np.arange(8) % 4,
        np.array([0, 1, 0, 1, 0, 1, 0, 5]),
        np.array([-1, 0, 1, 0, 1, 0, 1, 0]),
        GOOD_Y[:, None],
        GOOD_Y[:7],
        GOOD_Y.astype(float),
        np.array([0, 1, 0, 1, 0, 1, 0, 2**40]),
        np.array([], np.int64),
        GOOD_Y.astype(np.uint8),
        np.array([0] * 8),
    ]
)


@st.composite
def npz_files(draw):
    """`(arrays, corrupt)`: a .npz's arrays (some missing, some wrong) and whether its bytes are cut short."""
    arrays = {"x_train": GOOD_X, "y_train": GOOD_Y, "x_test": GOOD_X, "y_test": GOOD_Y}
    for key in draw(st.lists(st.sampled_from(sorted(arrays)), max_size=2)):
        arrays[key] = draw(ARRAYS if key.startswith("x") else LABELS)
    if draw(st.integers(0, 9)) == 0:
        del arrays[draw(st.sampled_from(sorted(arrays)))]
    if draw(st.booleans()):
        arrays["class_names"] = draw(
            st.sampled_from([np.array(["a", "b"]), np.array(["a"]), np.array(["a", "b", "c", "d", "e", "f"])])
        )
    return arrays, draw(st.integers(0, 9)) == 0


def check(source, data):
    """Loads `data` and checks that it ends cleanly or in one DataError line naming `source`."""
    with tempfile.TemporaryDirectory() as cache, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset = load_data(data, cache_dir=cache)
        except DataError as error:
            message = str(error)
            assert "\n" not in message, message
            assert str(source) in message, message
            event("DataError")
            return
    event("loaded")
    for x, y in ((dataset.x_train, dataset.y_train), (dataset.x_val, dataset.y_val), (dataset.x_test, dataset.y_test)):
        assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[1:] == dataset.shape and len(x) == len(y)
        assert y.min() >= 0 and y.max() < dataset.num_classes
    assert dataset.shape[-1] in (1, 3)


@FUZZ
@given(
    tree=trees(),
    container=st.sampled_from(["folder", "folder", "folder+links", ".tar.gz", ".zip"]),
    size=st.sampled_from([None, None, (5, 7)]),
)
def test_generated_image_folders_and_archives_load_or_fail_with_one_line(tree, container, size):
    with tempfile.TemporaryDirectory() as tmp:
        if container.startswith("folder"):
            source = write_folder(Path(tmp) / "my data", tree, symlinks=container == "folder+links")
        else:
            source = write_archive(Path(tmp) / f"my data{container}", tree)
        event(container)
        check(source, Data(str(source), image_size=size, validation=0.25))


@FUZZ
@given(npz=npz_files())
def test_generated_npz_files_load_or_fail_with_one_line(npz):
    arrays, corrupt = npz
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "my arrays.npz"
        np.savez(path, **arrays)
        if corrupt:
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        check(path, Data(str(path), validation=0.25))


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_loads(tmp_path, mode):
    tree = {
        split: {c: [(f"{i}.png", encode(mode, (8, 8), "PNG", i)) for i in range(4)] for c in ("a", "b")}
        for split in ("train", "test")
    }
    dataset = load_data(
        Data(str(write_folder(tmp_path / "modes", tree, symlinks=False)), validation=0.5), cache_dir=tmp_path / "cache"
    )
    assert dataset.shape == (8, 8, 1 if mode in ("L", "I;16") else 3)
