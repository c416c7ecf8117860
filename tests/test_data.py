"""The data layer: folders and archives, arrays, tfds, the offline default, options, splits, cache, errors."""

import dataclasses
import io
import json
import shutil
import socket
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from archsearch.cli.main import main
from archsearch.data import Data, data_summary, decode, load, load_data, peek
from archsearch.data.tfds import unreachable_host
from archsearch.errors import DataError

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_folder(root, classes=("cat", "dog", "eel"), train=10, test=4, size=(8, 8), suffix=".png", mode="RGB"):
    """Writes <root>/{train,test}/<class>/<n><suffix>, a distinct brightness per class."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.full((*size, 3), 40 * label, np.uint8) + rng.integers(0, 5, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).convert(mode).save(folder / f"{i:03d}{suffix}")
    return root


def npz(path, **arrays):
    """Writes a small two-class .npz; keyword arrays replace (or, as None, drop) the defaults."""
    rng = np.random.default_rng(0)
    base = dict(
        x_train=rng.integers(0, 256, (20, 6, 6, 3), dtype=np.uint8),
        y_train=np.arange(20) % 2,
        x_test=rng.integers(0, 256, (6, 6, 6, 3), dtype=np.uint8),
        y_test=np.arange(6) % 2,
    )
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return str(path)


# --- Image folders ----------------------------------------------------------------------------


def test_a_folder_loads_as_uint8_arrays(tmp_path):
    root = make_folder(tmp_path / "pets")
    dataset = load_data(Data(str(root), validation=0.2))
    assert dataset.class_names == ["cat", "dog", "eel"] and dataset.num_classes == 3
    assert dataset.shape == (8, 8, 3) and dataset.x_train.dtype == np.uint8 and dataset.y_train.dtype == np.int32
    assert (len(dataset.x_train), len(dataset.x_val), len(dataset.x_test)) == (24, 6, 12)
    # Each class has its own brightness, so labels line up with pixels in every split.
    for x, y in ((dataset.x_train, dataset.y_train), (dataset.x_val, dataset.y_val), (dataset.x_test, dataset.y_test)):
        assert all(abs(image.mean() - 2 - 40 * label) < 1 for image, label in zip(x, y))
    assert dataset.source == f"folder:{root}" and len(dataset.fingerprint) == 20


def test_archives_of_a_folder_load_like_the_folder(tmp_path):
    root = make_folder(tmp_path / "pets")
    with tarfile.open(tmp_path / "pets.tar.gz", "w:gz") as tar:
        tar.add(root, arcname="pets")
    with zipfile.ZipFile(tmp_path / "pets.zip", "w") as archive:
        for path in sorted(root.rglob("*.png")):
            archive.write(path, path.relative_to(root).as_posix())  # train/ and test/ at the top
    folder = load_data(Data(str(root)))
    for name in ("pets.tar.gz", "pets.zip"):
        dataset = load_data(Data(str(tmp_path / name)))
        assert dataset.source == f"archive:{tmp_path / name}"
        assert dataset.class_names == folder.class_names
        assert np.array_equal(dataset.x_test, folder.x_test) and np.array_equal(dataset.x_val, folder.x_val)
    assert peek(Data(str(tmp_path / "pets.zip"))) == ((8, 8, 3), 3)


def test_data_dir_points_any_space_at_a_local_folder(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "sets" / "pets")
    assert load_data(Data("cifar10"), data_dir=str(root)).class_names == ["cat", "dog", "eel"]
    monkeypatch.setenv("ARCHSEARCH_DATA_DIR", str(tmp_path / "sets"))  # the folder holding exactly one data set
    assert load_data(Data("cifar10")).source == f"folder:{tmp_path / 'sets'}"
    make_folder(tmp_path / "sets" / "more")
    with pytest.raises(DataError, match=r"sets: holds several data sets \(more, pets\); point at one of them"):
        load_data(Data("cifar10"))
    with pytest.raises(DataError, match="pets/train: no class 'automobile', 'truck'; available: cat, dog, eel"):
        load_data(Data("cifar10", classes=["automobile", "truck"]), data_dir=str(root))


def test_subsets_are_relabeled_in_the_order_given(tmp_path):
    root = make_folder(tmp_path / "pets")
    dataset = load_data(Data(str(root), classes=["eel", "cat"]))
    assert dataset.class_names == ["eel", "cat"] and set(dataset.y_test) == {0, 1}
    assert dataset.x_test[dataset.y_test == 0].mean() > 70 > dataset.x_test[dataset.y_test == 1].mean()


def test_grayscale_is_pillows_luma_in_one_channel(tmp_path):
    root = make_folder(tmp_path / "pets")
    dataset = load_data(Data(str(root), grayscale=True))
    assert dataset.shape == (8, 8, 1)
    first = sorted((root / "test" / "cat").iterdir())[0]
    assert np.array_equal(dataset.x_test[0, ..., 0], np.asarray(Image.open(first).convert("L")))
    # Arrays are converted with exactly the same rounding as Pillow.
    pixels = np.random.default_rng(1).integers(0, 256, (20, 6, 6, 3), dtype=np.uint8)
    arrays = load_data(Data(npz(tmp_path / "a.npz", x_test=pixels[:6]), grayscale=True))
    assert np.array_equal(
        arrays.x_test[..., 0], np.stack([np.asarray(Image.fromarray(p).convert("L")) for p in pixels[:6]])
    )


def test_gray_images_load_with_one_channel_unless_rgb_ones_share_the_split(tmp_path):
    root = make_folder(tmp_path / "scans", mode="L")
    assert load_data(Data(str(root))).shape == (8, 8, 1)
    assert peek(Data(str(root))) == ((8, 8, 1), 3)
    Image.fromarray(np.full((8, 8, 3), (255, 0, 0), np.uint8)).save(root / "test" / "cat" / "red.png")
    dataset = load_data(Data(str(root)))
    assert dataset.shape == (8, 8, 3)
    assert (dataset.x_train[..., 0] == dataset.x_train[..., 2]).all()  # gray images repeat their channel


def test_per_class_caps_training_images_and_test_per_class_the_test_split(tmp_path):
    root = make_folder(tmp_path / "pets")
    dataset = load_data(Data(str(root), per_class=4, validation=0.25))
    assert np.bincount(dataset.full_train()[1]).tolist() == [4, 4, 4] and len(dataset.x_test) == 12
    capped = load_data(Data(str(root), per_class=4, test_per_class=2, validation=0.25))
    assert np.bincount(capped.y_test).tolist() == [2, 2, 2]
    arrays = load_data(Data(npz(tmp_path / "a.npz"), per_class=3, test_per_class=1, validation=0.5))
    assert np.bincount(arrays.full_train()[1]).tolist() == [3, 3] and np.bincount(arrays.y_test).tolist() == [1, 1]


def test_validation_is_stratified_seeded_and_leaves_test_alone(tmp_path):
    root = make_folder(tmp_path / "pets", train=20)
    first = load_data(Data(str(root), validation=0.25, seed=1))
    again = load_data(Data(str(root), validation=0.25, seed=1))
    other = load_data(Data(str(root), validation=0.25, seed=2))
    assert np.bincount(first.y_val).tolist() == [5, 5, 5] and np.bincount(first.y_train).tolist() == [15, 15, 15]
    assert np.array_equal(first.x_val, again.x_val) and np.array_equal(first.y_train, again.y_train)
    assert first.fingerprint == again.fingerprint != other.fingerprint
    assert not np.array_equal(first.x_val, other.x_val)
    assert np.array_equal(first.x_test, other.x_test) and np.array_equal(first.y_test, other.y_test)
    x, y = first.full_train()
    assert len(x) == 60 and sorted(map(bytes, x)) == sorted(map(bytes, other.full_train()[0]))


def test_too_few_images_for_a_stratified_split_is_a_clear_error(tmp_path):
    with pytest.raises(
        DataError, match=r"cannot carve a stratified validation=0.1 split from 3 training images of 3 classes"
    ):
        load_data(Data(str(make_folder(tmp_path / "pets")), per_class=1))


def test_images_of_mixed_sizes_are_resized_to_the_most_common(tmp_path):
    root = make_folder(tmp_path / "pets")
    Image.fromarray(np.zeros((12, 9, 3), np.uint8)).save(root / "train" / "cat" / "odd.png")
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(root / "test" / "cat" / "odd.png")
    with pytest.warns(UserWarning) as caught:
        dataset = load_data(Data(str(root)))
    messages = [str(w.message) for w in caught]
    assert f"{root / 'train'}: resized 1 of 31 images to 8x8, the most common training image size" in messages[0]
    assert f"{root / 'test'}: resized 1 of 13 images to 8x8" in messages[1]
    assert dataset.shape == (8, 8, 3) and len(dataset.full_train()[0]) == 31 and len(dataset.x_test) == 13
    assert load_data(Data(str(root), image_size=(6, 10))).shape == (6, 10, 3)


def _wide_photo(height=20, width=40):
    """A gray photo twice as wide as high: black left and right quarters, a white middle half."""
    pixels = np.zeros((height, width), np.uint8)
    pixels[:, width // 4 : 3 * width // 4] = 255
    return pixels


def test_crop_to_aspect_ratio_resizes_the_centred_window_instead_of_stretching(tmp_path):
    root = make_folder(tmp_path / "pets", size=(10, 10), mode="L")
    Image.fromarray(_wide_photo()).save(root / "train" / "cat" / "wide.png")
    x = np.stack([_wide_photo()[None, ..., None]] * 3)[:, 0]  # the same photo in a .npz
    arrays = npz(
        tmp_path / "wide.npz",
        x_train=np.concatenate([x] * 4),
        y_train=np.arange(12) % 2,
        x_test=x,
        y_test=np.arange(3) % 2,
    )
    for source in (str(root), arrays):
        squashed = load_data(Data(source, image_size=(10, 10), validation=0.25)).full_train()
        cropped = load_data(Data(source, image_size=(10, 10), crop_to_aspect_ratio=True, validation=0.25)).full_train()
        wide = [
            i for i, image in enumerate(squashed[0]) if image.max() == 255 and image[:, 0].max() < 40
        ]  # the photo, stretched
        assert len(wide) == (1 if source == str(root) else 12), source  # its black quarters stay at the edges
        # The centred square: white (its edges blend with the black beyond).
        assert all(cropped[0][i].min() > 200 for i in wide), source
    # The exported model crops an image of another size the same way (see test_export).
    assert decode.crop_box(20, 40, (10, 10)) == (10, 0, 30, 20)
    assert decode.crop_box(31, 23, (10, 14)) == (0, 7, 23, 23)  # Keras: rounded down, centred


def test_a_few_unreadable_images_are_skipped_and_named(tmp_path):
    root = make_folder(tmp_path / "pets", train=110)
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "train" / "dog" / "notes.txt").write_text("ignored")
    with pytest.warns(UserWarning) as caught:
        dataset = load_data(Data(str(root)))
    messages = " ".join(str(w.message) for w in caught)
    assert "skipped 1 unreadable image(s): " + str(root / "train" / "dog" / "broken.jpg") in messages
    assert "ignored 1 file(s) that are not images, e.g. " + str(root / "train" / "dog" / "notes.txt") in messages
    assert len(dataset.full_train()[0]) == 330


def test_many_unreadable_images_stop_with_one_named(tmp_path):
    root = make_folder(tmp_path / "pets")
    for i in range(3):
        (root / "train" / "cat" / f"bad{i}.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(
        DataError, match=r"3 of 33 images cannot be read \(more than 1%\), e\.g\. .*train/cat/bad0\.png"
    ):
        load_data(Data(str(root)))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: shutil.rmtree(root / "test"), r"pets: no 'test' folder; expected .*pets/test/<class>/<image>"),
        (lambda root: [shutil.rmtree(p) for p in (root / "test").iterdir()], r"test: no class folders"),
        (
            lambda root: [p.unlink() for p in (root / "train" / "dog").iterdir()],
            r"train/dog: class folder holds no images",
        ),
        (
            lambda root: (root / "test" / "cat").rename(root / "test" / "kitten"),
            r"class folders differ between train and test: only in train: \['cat'\]; only in test: \['kitten'\]",
        ),
    ],
    ids=["no test split", "empty split", "empty class", "classes differ"],
)
def test_bad_folders_name_the_place(tmp_path, damage, message):
    root = make_folder(tmp_path / "pets")
    damage(root)
    with pytest.raises(DataError, match=message):
        load_data(Data(str(root)))


def test_missing_paths_unknown_names_and_unknown_classes(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="nowhere: no such file or folder \\(tensorflow-datasets names look like"):
        load_data(Data(str(tmp_path / "nowhere")))
    with pytest.raises(DataError, match="--data-dir .*nowhere: no such file or folder"):
        load_data(Data("cifar10"), data_dir=str(tmp_path / "nowhere"))
    monkeypatch.setenv("ARCHSEARCH_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="ARCHSEARCH_DATA_DIR .*nowhere: no such file or folder"):
        load_data(Data("cifar10"))
    monkeypatch.delenv("ARCHSEARCH_DATA_DIR")
    with pytest.raises(DataError, match="'cifar_ten' is neither a file or folder nor a tensorflow-datasets name"):
        load_data(Data("cifar_ten"))
    root = make_folder(tmp_path / "pets")
    with pytest.raises(DataError, match="no class 'truck'; available: cat, dog, eel"):
        load_data(Data(str(root), classes=["cat", "truck"]))
    with pytest.raises(
        DataError, match=r"no 'train' folder; expected <root>/train/<class>/<image> \(found folders: cat, dog, eel\)"
    ):
        load_data(Data(str(root / "train")))
    (tmp_path / "notes.txt").write_text("not data")
    with pytest.raises(DataError, match="notes.txt: expected an image folder"):
        load_data(Data(str(tmp_path / "notes.txt")))
    (tmp_path / "bad.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(DataError, match="bad.tar.gz: cannot read the archive"):
        load_data(Data(str(tmp_path / "bad.tar.gz")))


# --- Arrays: npz, digits, tfds ------------------------------------------------------------


def test_npz_with_and_without_class_names(tmp_path):
    dataset = load_data(Data(npz(tmp_path / "a.npz", class_names=np.array(["no", "yes"])), validation=0.2))
    assert dataset.class_names == ["no", "yes"] and dataset.shape == (6, 6, 3) and dataset.source.startswith("npz:")
    plain = load_data(
        Data(npz(tmp_path / "b.npz", x_train=np.zeros((20, 6, 6), np.uint8), x_test=np.zeros((6, 6, 6), np.uint8)))
    )
    assert plain.shape == (6, 6, 1) and plain.class_names == ["0", "1"]
    columns = load_data(
        Data(npz(tmp_path / "c.npz", y_train=(np.arange(20) % 2)[:, None], x_train=np.ones((20, 6, 6, 3)) * 7))
    )
    assert (
        len(columns.full_train()[1]) == 20
        and columns.x_train.dtype == np.uint8
        and np.asarray(columns.x_train).max() == 7
    )
    resized = load_data(Data(npz(tmp_path / "a.npz"), image_size=(12, 4)))
    assert resized.shape == (12, 4, 3) and resized.x_test.shape == (6, 12, 4, 3)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(y_test=None), "missing arrays y_test; expected x_train, y_train, x_test, y_test"),
        (dict(y_train=np.arange(19) % 2), r"x_train has 20 images but y_train has shape \(19,\)"),
        (
            dict(y_test=np.array([0, 1, 0, 1, 0, 5]), class_names=np.array(["a", "b"])),
            "labels range from 0 to 5; expected 0 to 1",
        ),
        (dict(y_test=np.array([0, 1, 0, 1, 0, -1])), "labels range from -1 to 1"),
        (dict(y_test=np.array([0, 1, 0, 1, 0, 2**40])), "label 1099511627776 with 26 images and no class_names"),
        (dict(y_train=np.arange(20) * 0.5), "y_train holds float64 values; expected integer class labels"),
        (dict(x_test=np.zeros((6, 6), np.uint8)), r"x_test has shape \(6, 6\); expected .* channels last"),
        (dict(x_test=np.zeros((6, 3, 6, 6), np.uint8)), r"x_test has shape \(6, 3, 6, 6\)"),
        (
            dict(x_train=np.full((20, 6, 6, 3), 0.5)),
            r"x_train holds float64 values from 0.5 to 0.5; expected uint8 .* multiply by 255",
        ),
        (dict(class_names=np.array(["a", None], dtype=object)), "not a readable .npz"),
        (
            dict(x_test=np.zeros((6, 9, 9, 1), np.uint8)),
            r"bad.npz: x_train images are \(6, 6, 3\) but x_test images are \(9, 9, 1\)",
        ),
    ],
)
def test_bad_npz_is_named(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message):
        load_data(Data(npz(tmp_path / "bad.npz", **arrays)))


def test_the_offline_default_loads_without_a_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("networking is disabled in this test")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    dataset = load_data(Data("digits", validation=0.2), cache_dir=None)
    assert dataset.shape == (8, 8, 1) and dataset.num_classes == 10 and dataset.source == "sklearn:digits"
    assert len(dataset.full_train()[0]) == 1437 and len(dataset.x_test) == 360  # 80/20, stratified
    assert np.asarray(dataset.x_train).max() == 255 and np.asarray(dataset.x_train).min() == 0
    pair = load_data(Data("digits", classes=["3", "8"], grayscale=True, image_size=(16, 16)))
    assert pair.shape == (16, 16, 1) and pair.class_names == ["3", "8"]


def test_tfds_without_a_network_fails_at_once_naming_the_host_and_downloads_nothing(monkeypatch, tmp_path, offline):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds, "load", lambda *args, **kwargs: pytest.fail("tfds began a download offline"))
    start = time.perf_counter()
    with pytest.raises(
        DataError,
        match=r"^data: tensorflow-datasets must download 'cifar10' but cannot reach www\.cs\.toronto\.edu "
        r"\(Name or service not known\): connect to a network, or pass --data-dir \(or set ARCHSEARCH_DATA_DIR\)",
    ):
        load_data(Data("cifar10", data_dir=str(tmp_path / "tfds")), cache_dir=tmp_path / "cache")
    assert time.perf_counter() - start < 5
    assert not any(p for p in (tmp_path / "tfds").rglob("*") if p.name.startswith("incomplete.") or ".tmp." in p.name)


def test_a_download_host_that_never_answers_counts_as_offline_after_the_timeout(monkeypatch, no_proxies):
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: time.sleep(30))
    start = time.perf_counter()
    assert unreachable_host(["https://a.example/x.tar.gz", "http://b.example/y"], timeout=0.2) == (
        "a.example (no answer within 0.2 s)"
    )
    assert time.perf_counter() - start < 1  # both hosts tried at once, neither waited for past the timeout


def test_tfds_failing_during_a_download_says_how_to_point_at_a_local_copy(monkeypatch, tmp_path, capsys):
    import tensorflow_datasets as tfds

    def broken(*args, **kwargs):
        print("Downloading and preparing dataset 162.17 MiB ...")  # tfds's own banner, kept off the terminal
        raise ConnectionError("Failed to establish a new connection: [Errno 101] Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: io.BytesIO())  # the host answers
    monkeypatch.setattr(tfds, "load", broken)
    with pytest.raises(
        DataError,
        match=r"could not load 'cifar10' .*ConnectionError: .*Network is unreachable. "
        r"Without a network, pass --data-dir \(or set ARCHSEARCH_DATA_DIR\)",
    ):
        load_data(Data("cifar10", data_dir=str(tmp_path / "tfds")), cache_dir=tmp_path / "cache")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("data: downloading 'cifar10' (162 MiB)")


def test_tfds_missing_says_how_to_point_at_a_local_copy(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as on a machine without TensorFlow
    with pytest.raises(DataError, match=r"'mnist' needs tensorflow-datasets, which cannot be imported .*--data-dir"):
        load_data(Data("mnist"))


def test_tfds_data_sets_become_arrays(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    # The mock's data sets are never prepared: their download hosts are checked first, and answer here.
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: io.BytesIO())
    with tfds.testing.mock_data(num_examples=40):
        digits = load_data(Data("mnist", per_class=3, image_size=(16, 16), validation=0.5), cache_dir=tmp_path)
        photos = load_data(
            Data(
                "cats_vs_dogs",
                train_split="train[:50%]",
                test_split="train[50%:]",
                image_size=(20, 24),
                classes=["dog", "cat"],
                validation=0.25,
            ),
            cache_dir=tmp_path,
        )
        assert peek(Data("mnist")) == ((28, 28, 1), 10)
    assert digits.source == "tfds:mnist/3.0.1" and digits.shape == (16, 16, 1) and digits.num_classes == 10
    assert (
        np.bincount(digits.full_train()[1]).max() <= 3 and len(digits.x_test) == 40 and digits.x_train.dtype == np.uint8
    )
    assert photos.shape == (20, 24, 3) and photos.class_names == ["dog", "cat"]
    assert len(photos.full_train()[0]) == len(photos.x_test) == 40  # the mock ignores split slices


# --- Declarations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(validation=1.5), "validation"),
        (dict(validation=0), "validation"),
        (dict(validation=True), "validation"),
        (dict(classes=["a"]), "classes"),
        (dict(classes=["a", "a"]), "classes"),
        (dict(classes="ab"), "classes"),
        (dict(classes=["a", ""]), "classes"),
        (dict(per_class=0), "per_class"),
        (dict(per_class=2.5), "per_class"),
        (dict(test_per_class=-1), "test_per_class"),
        (dict(image_size=(32,)), "image_size"),
        (dict(image_size=(32, 0)), "image_size"),
        (dict(grayscale="yes"), "grayscale"),
        (dict(crop_to_aspect_ratio=1), "crop_to_aspect_ratio"),
        (dict(seed=1.5), "seed"),
        (dict(train_split=""), "train_split"),
        (dict(test_split="train"), "test_split"),
        (dict(source=""), "source"),
    ],
)
def test_bad_declarations_name_the_field(kwargs, field):
    with pytest.raises(DataError, match=f"data: {field}="):
        Data(**{"source": "digits", **kwargs})


def test_declarations_round_trip_through_json():
    data = Data(
        "cifar10",
        classes=("automobile", "truck"),
        grayscale=True,
        image_size=[24, 24],
        crop_to_aspect_ratio=True,
        per_class=np.int64(50),
    )
    assert Data(**json.loads(json.dumps(data.to_dict()))) == data
    assert data.to_dict()["classes"] == ["automobile", "truck"] and data.image_size == (24, 24)
    with pytest.raises(TypeError):
        Data("cifar10", 0.2)  # options are keyword-only


# --- Cache ----------------------------------------------------------------------------------


def test_the_cache_is_reused_on_a_second_load(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pets", train=40)
    first = load_data(Data(str(root)), cache_dir=tmp_path / "cache")
    assert Path(first.cache_path).parent == tmp_path / "cache" and not list((tmp_path / "cache").glob(".*.tmp"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    with monkeypatch.context() as patched:
        patched.setattr(decode, "_decode_images", no_decoding)
        second = load_data(Data(str(root)), cache_dir=tmp_path / "cache")
        other_split = load_data(Data(str(root), validation=0.5, seed=3), cache_dir=tmp_path / "cache")
    assert second.cache_path == first.cache_path and second.fingerprint == first.fingerprint
    assert np.array_equal(first.x_test, second.x_test) and np.array_equal(first.x_val, second.x_val)
    assert other_split.cache_path == first.cache_path and other_split.fingerprint != first.fingerprint
    # Other options, another entry; a changed file, another fingerprint.
    gray = load_data(Data(str(root), grayscale=True), cache_dir=tmp_path / "cache")
    assert gray.cache_path != first.cache_path
    time.sleep(0.01)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "test" / "cat" / "000.png")
    changed = load_data(Data(str(root)), cache_dir=tmp_path / "cache")
    assert changed.fingerprint != first.fingerprint and not np.array_equal(changed.x_test, first.x_test)


def test_a_damaged_or_unwritable_cache_only_costs_a_decode(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pets")
    first = load_data(Data(str(root)), cache_dir=tmp_path / "cache")
    (Path(first.cache_path) / "x_test.npy").write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="ignoring the unreadable cache entry"):
        again = load_data(Data(str(root)), cache_dir=tmp_path / "cache")
    assert np.array_equal(again.x_test, first.x_test)
    assert load_data(Data(str(root)), cache_dir=tmp_path / "cache").cache_path == first.cache_path  # rewritten
    (tmp_path / "file").write_text("")
    with pytest.warns(UserWarning, match="cannot create the cache folder"):
        uncached = load_data(Data(str(root)), cache_dir=tmp_path / "file" / "cache")
    assert uncached.cache_path is None and np.array_equal(uncached.x_test, first.x_test)
    assert Path(uncached.x_test.path).parent.name.startswith("archsearch-data-")  # decoded to a temporary folder


def test_an_earlier_versions_npz_entry_is_converted_not_decoded_again(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pets")
    first = load_data(Data(str(root)), cache_dir=tmp_path / "cache")
    entry = Path(first.cache_path)
    arrays = {f"{kind}_{split}": np.load(entry / f"{kind}_{split}.npy") for kind in "xy" for split in ("train", "test")}
    shutil.rmtree(entry)
    np.savez(
        entry.with_name(f"{entry.name}.npz"),
        **arrays,
        class_names=np.array(first.class_names),
        source=np.array(first.source),
    )
    monkeypatch.setattr(decode, "_decode_images", lambda *args: pytest.fail("decoded again"))
    again = load_data(Data(str(root)), cache_dir=tmp_path / "cache")
    assert again.cache_path == first.cache_path and again.fingerprint == first.fingerprint
    assert not entry.with_name(f"{entry.name}.npz").exists() and (entry / "meta.json").is_file()
    for split in ("x_train", "y_train", "x_val", "x_test", "y_test"):
        assert np.array_equal(np.asarray(getattr(again, split)), np.asarray(getattr(first, split)))


def test_images_read_from_disk_train_and_predict_as_images_in_memory(tmp_path):
    import keras

    from archsearch.data.images import DiskImages
    from archsearch.model.builder import build_model
    from archsearch.model.training import predict_probabilities, train
    from archsearch.recipe.architecture import plan

    root = make_folder(tmp_path / "pets", train=30, test=5)
    streamed = load_data(Data(str(root)), cache_dir=tmp_path / "cache")
    in_memory = dataclasses.replace(
        streamed, **{name: np.asarray(getattr(streamed, name)) for name in ("x_train", "x_val", "x_test")}
    )
    assert isinstance(streamed.x_train, DiskImages) and isinstance(streamed.full_train()[0], DiskImages)
    architecture = plan({"width": 4, "stages": 1, "batch_size": 8, "augment": True}, streamed.shape, 3)
    results = []
    for dataset in (streamed, in_memory):
        keras.utils.set_random_seed(0)
        model = build_model(architecture)
        train(model, architecture.point, *dataset.full_train(), epochs=2)
        results.append((model.get_weights(), predict_probabilities(model, dataset.x_test, batch_size=4)))
    assert all(np.array_equal(a, b) for a, b in zip(results[0][0], results[1][0]))  # the same training, to the bit
    assert np.array_equal(results[0][1], results[1][1])
    maps = Path("/proc/self/maps")
    if maps.exists():  # each read unmaps the file: the process keeps none of its pages
        assert "x_test.npy" not in maps.read_text()


def test_disk_images_index_as_arrays_do(tmp_path):
    from archsearch.data.images import DiskImages, concatenate, save_images

    images = np.random.default_rng(0).integers(0, 256, (40, 3, 5, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    rows = np.random.default_rng(1).permutation(40)[:25]
    on_disk, expected = DiskImages(tmp_path / "x.npy").take(rows), images[rows]
    assert on_disk.shape == expected.shape and on_disk.dtype == np.uint8 and len(on_disk) == 25
    assert on_disk.nbytes == expected.nbytes and np.array_equal(np.asarray(on_disk), expected)
    for key in (
        3,
        -1,
        slice(2, 9),
        slice(None, None, -3),
        [7, 2, 2, 0],
        np.arange(25) % 2 == 0,
        (4, 1),
        (slice(1, 5), 0),
    ):
        assert np.array_equal(on_disk[key], expected[key]), key
    assert np.array_equal(on_disk[..., 0], expected[..., 0])
    assert np.array_equal(on_disk.take([5, 1])[1], expected[1])
    joined = concatenate(on_disk.take(np.arange(10)), on_disk.take(np.arange(10, 25)))
    assert isinstance(joined, DiskImages) and np.array_equal(np.asarray(joined), expected)
    for wrong in (25, [25], [3, 25], [-26], np.ones(3, bool), [0.5]):  # checked before the file is read, as NumPy does
        with pytest.raises(IndexError):
            on_disk[wrong]
    assert on_disk[[]].shape == (0, 3, 5, 3) and np.array_equal(on_disk[np.array(4)], expected[4])
    assert np.array_equal(np.asarray(on_disk.take(np.arange(25) < 5)), expected[:5])
    save_images(tmp_path / "copy.npy", on_disk)
    assert np.array_equal(np.load(tmp_path / "copy.npy"), expected)


def test_an_image_whose_header_reads_but_pixels_do_not_decides_neither_size_nor_channels(tmp_path):
    root = make_folder(tmp_path / "gray", train=40, mode="L")
    color = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(color, "PNG")
    truncated = color.getvalue()[: len(color.getvalue()) // 2]  # a color header of another size, half its pixels
    (root / "train" / "cat" / "zzz.png").write_bytes(truncated)
    with pytest.warns(UserWarning, match="skipped 1 unreadable image"):
        dataset = load_data(Data(str(root)), cache_dir=tmp_path / "cache")
    assert dataset.shape == (8, 8, 1) and len(dataset.full_train()[1]) == 120


def test_a_killed_loads_staging_folder_is_removed_by_the_next_load(tmp_path):
    root = make_folder(tmp_path / "pets")
    first = load_data(Data(str(root)), cache_dir=tmp_path / "cache")
    entry = Path(first.cache_path)
    shutil.rmtree(entry)
    stale = entry.with_name(f".{entry.name}.999999999.abc.tmp")  # no process has that id
    stale.mkdir()
    load_data(Data(str(root)), cache_dir=tmp_path / "cache")
    assert not stale.exists() and (entry / "meta.json").is_file()


def test_npz_fingerprints_follow_their_bytes(tmp_path):
    path = npz(tmp_path / "a.npz")
    first = load_data(Data(path))
    shutil.copy(path, tmp_path / "copy.npz")
    assert load_data(Data(str(tmp_path / "copy.npz"))).fingerprint == first.fingerprint
    npz(tmp_path / "a.npz", y_test=np.array([1, 1, 0, 0, 1, 0]))
    assert load_data(Data(path)).fingerprint != first.fingerprint


# --- peek, summary --------------------------------------------------------------------------


def test_peek_matches_the_loaded_shape(tmp_path):
    root = make_folder(tmp_path / "pets")
    for declaration in (
        Data(str(root)),
        Data(str(root), grayscale=True, classes=["cat", "dog"]),
        Data("digits"),
        Data(npz(tmp_path / "a.npz")),
        Data(str(root), image_size=(5, 7)),
    ):
        dataset = load_data(declaration)
        assert peek(declaration) == (dataset.shape, dataset.num_classes)


def test_peek_agrees_with_the_load_when_one_color_image_or_odd_sizes_lie_outside_any_sample(tmp_path):
    root = make_folder(tmp_path / "gray", classes=("a", "b"), train=30, test=3, mode="L")
    color = np.full((8, 8, 3), (200, 0, 0), np.uint8)  # the one color image
    Image.fromarray(color).save(root / "test" / "b" / "001.png")
    for i in range(1, 30, 2):  # every other training image of class a has another size: still fewer than 8x8
        Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "train" / "a" / f"{i:03d}.png")
    dataset = load_data(Data(str(root)), cache_dir=tmp_path / "cache")
    assert dataset.shape == (8, 8, 3)
    assert peek(Data(str(root))) == (dataset.shape, dataset.num_classes)


def test_summary_counts_every_split_per_class(tmp_path):
    summary = data_summary(load_data(Data(str(make_folder(tmp_path / "pets", train=20)), validation=0.25)))
    assert json.loads(json.dumps(summary)) == summary
    assert summary["classes"] == ["cat", "dog", "eel"] and summary["shape"] == [8, 8, 3]
    assert summary["counts"] == {"train": 45, "validation": 15, "test": 12}
    assert summary["per_class"]["validation"] == {"cat": 5, "dog": 5, "eel": 5}
    assert (Path(summary["cache"]) / "x_train.npy").is_file() and summary["seconds"] >= 0


# --- The real CIFAR-10 ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cifar(data_cifar_archive):
    return load_data(Data("cifar10", validation=0.1), data_dir=str(data_cifar_archive))


def test_the_shared_cifar10_archive_loads_whole(cifar, data_cifar_archive):
    dataset = cifar
    assert dataset.class_names == CIFAR_CLASSES and dataset.source == f"archive:{data_cifar_archive}"
    assert len(dataset.full_train()[0]) == 50_000 and len(dataset.x_test) == 10_000
    assert (len(dataset.x_train), len(dataset.x_val)) == (45_000, 5_000)
    assert dataset.shape == (32, 32, 3) and dataset.x_train.dtype == np.uint8
    assert np.bincount(dataset.y_test).tolist() == [1000] * 10 and np.bincount(dataset.y_val).tolist() == [500] * 10


def test_a_cached_load_of_cifar10_does_not_decode(cifar, data_cifar_archive, monkeypatch):
    monkeypatch.setattr(load, "Archive", None)  # reading the archive would fail
    dataset = load_data(Data("cifar10", validation=0.1), data_dir=str(data_cifar_archive))
    assert dataset.fingerprint == cifar.fingerprint and np.array_equal(dataset.x_val, cifar.x_val)


def test_car_versus_truck_has_the_notes_sizes(data_cifar_car_truck_folder):
    dataset = load_data(
        Data("cifar10", classes=["automobile", "truck"], grayscale=True), data_dir=str(data_cifar_car_truck_folder)
    )
    assert dataset.class_names == ["automobile", "truck"] and dataset.shape == (32, 32, 1)
    assert len(dataset.full_train()[0]) == 10_000 and len(dataset.x_test) == 2_000
    assert np.bincount(dataset.y_test).tolist() == [1000, 1000]


def test_data_command_json(cifar, data_cifar_archive, capsys):
    space = Path(__file__).resolve().parents[1] / "archsearch" / "spaces" / "cifar.py"
    assert main(["data", str(space), "--data-dir", str(data_cifar_archive), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == {"train": 45_000, "validation": 5_000, "test": 10_000}
    assert report["per_class"]["test"]["truck"] == 1000
    assert report == {**data_summary(cifar), "seconds": report["seconds"], "cache": report["cache"]}


def test_decoding_does_not_fork_once_jax_backends_run(tmp_path, monkeypatch):
    import concurrent.futures
    import sys
    import types

    root = make_folder(tmp_path / "pets", train=12, test=4)
    expected = load_data(Data(str(root)), cache_dir=tmp_path / "first")

    def no_fork(*args, **kwargs):
        raise AssertionError("forked while JAX's backends were running")

    running_jax = types.SimpleNamespace(backends_are_initialized=lambda: True)
    monkeypatch.setitem(sys.modules, "jax._src.xla_bridge", running_jax)
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_fork)
    monkeypatch.setattr(decode, "DECODE_CHUNK", 5)  # several tasks
    monkeypatch.setattr(decode, "_workers", lambda: 4)
    again = load_data(Data(str(root)), cache_dir=tmp_path / "second")  # decodes again
    assert np.array_equal(again.x_train, expected.x_train) and np.array_equal(again.y_test, expected.y_test)
