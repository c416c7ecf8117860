"""The data layer: folders, arrays, the offline default, options, splits, cache and clear errors."""

import json
import socket
import time

import numpy as np
import pytest
from PIL import Image

from archsearch import data as data_module
from archsearch.cli import main
from archsearch.data import Data, data_summary, load_data, peek
from archsearch.errors import DataError


def make_folder(root, classes=("cat", "dog", "eel"), train=10, test=4, size=(8, 8), suffix=".png"):
    """Writes <root>/{train,test}/<class>/<n><suffix> with a distinct colour per class."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.full((*size, 3), 40 * label, np.uint8) + rng.integers(0, 5, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}{suffix}")
    return root


def test_a_folder_loads_as_uint8_arrays(tmp_path):
    root = make_folder(tmp_path / "pets")
    dataset = load_data(Data(str(root), validation=0.2))
    assert dataset.class_names == ["cat", "dog", "eel"]
    assert dataset.shape == (8, 8, 3) and dataset.x_train.dtype == np.uint8
    assert (len(dataset.x_train), len(dataset.x_val), len(dataset.x_test)) == (24, 6, 12)
    assert set(dataset.y_test) == {0, 1, 2} and dataset.y_test.dtype == np.int32
    # Each class has its own colour, so labels line up with pixels.
    assert all(abs(int(x.mean()) - 40 * y) <= 5 for x, y in zip(dataset.x_test, dataset.y_test))
    assert dataset.source == f"folder:{root}"


def test_data_dir_points_any_space_at_a_local_folder(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pets")
    assert load_data(Data("cifar10"), data_dir=str(root)).class_names == ["cat", "dog", "eel"]
    monkeypatch.setenv("ARCHSEARCH_DATA_DIR", str(tmp_path))  # its parent works too
    assert load_data(Data("cifar10")).num_classes == 3


def test_subsets_are_relabeled_in_the_order_given(tmp_path):
    root = make_folder(tmp_path / "pets")
    dataset = load_data(Data(str(root), classes=["eel", "cat"]))
    assert dataset.class_names == ["eel", "cat"]
    assert np.all(dataset.x_test[dataset.y_test == 0].mean() > dataset.x_test[dataset.y_test == 1].mean())


def test_grayscale_has_one_channel_of_luma(tmp_path):
    root = make_folder(tmp_path / "pets")
    dataset = load_data(Data(str(root), grayscale=True))
    assert dataset.shape == (8, 8, 1)
    first = sorted((root / "test" / "cat").iterdir())[0]
    expected = np.asarray(Image.open(first).convert("L"))
    assert any(np.array_equal(x[..., 0], expected) for x in dataset.x_test)


def test_per_class_caps_training_images_only(tmp_path):
    dataset = load_data(Data(str(make_folder(tmp_path / "pets")), per_class=4, validation=0.25))
    x, y = dataset.full_train()
    assert np.bincount(y).tolist() == [4, 4, 4]
    assert len(dataset.x_test) == 12


def test_validation_is_stratified_and_seeded(tmp_path):
    root = make_folder(tmp_path / "pets", train=20)
    first = load_data(Data(str(root), validation=0.25, seed=1))
    again = load_data(Data(str(root), validation=0.25, seed=1))
    other = load_data(Data(str(root), validation=0.25, seed=2))
    assert np.bincount(first.y_val).tolist() == [5, 5, 5]
    assert np.array_equal(first.x_val, again.x_val) and np.array_equal(first.y_train, again.y_train)
    assert not np.array_equal(first.x_val, other.x_val)
    assert np.array_equal(first.x_test, other.x_test)  # the test split is never touched by the split


def test_images_of_mixed_sizes_are_resized_to_the_most_common(tmp_path):
    root = make_folder(tmp_path / "pets")
    Image.fromarray(np.zeros((12, 9, 3), np.uint8)).save(root / "train" / "cat" / "odd.png")
    dataset = load_data(Data(str(root)))
    assert dataset.shape == (8, 8, 3) and len(dataset.full_train()[0]) == 31
    assert load_data(Data(str(root), image_size=(6, 10))).shape == (6, 10, 3)


def test_a_few_corrupt_images_are_skipped_and_named(tmp_path):
    root = make_folder(tmp_path / "pets", train=110)
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "train" / "dog" / "notes.txt").write_text("ignored")
    with pytest.warns(UserWarning) as caught:
        dataset = load_data(Data(str(root)))
    messages = " ".join(str(w.message) for w in caught)
    assert "broken.jpg" in messages and "notes.txt" in messages
    assert len(dataset.full_train()[0]) == 330


def test_many_corrupt_images_stop_with_the_file_named(tmp_path):
    root = make_folder(tmp_path / "pets")
    for i in range(3):
        (root / "train" / "cat" / f"bad{i}.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match=r"3 of 33 images cannot be read, e\.g\. .*bad0\.png"):
        load_data(Data(str(root)))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: None, None),
        (lambda root: __import__("shutil").rmtree(root / "test"), r"no 'test' folder"),
        (lambda root: [__import__("shutil").rmtree(p) for p in (root / "test").iterdir()], r"test: no class folders"),
        (lambda root: [p.unlink() for p in (root / "train" / "dog").iterdir()], r"train/dog: class folder holds no images"),
        (lambda root: (root / "test" / "cat").rename(root / "test" / "kitten"), r"class folders differ between train and test: only in train: \['cat'\]; only in test: \['kitten'\]"),
    ],
)
def test_bad_folders_name_the_place(tmp_path, damage, message):
    root = make_folder(tmp_path / "pets")
    damage(root)
    if message is None:
        load_data(Data(str(root)))
        return
    with pytest.raises(DataError, match=message):
        load_data(Data(str(root)))


def test_missing_paths_and_unknown_classes(tmp_path):
    with pytest.raises(DataError, match="nowhere: no such file or folder"):
        load_data(Data(str(tmp_path / "nowhere")))
    with pytest.raises(DataError, match="no such file or folder"):
        load_data(Data("cifar10"), data_dir=str(tmp_path / "nowhere"))
    root = make_folder(tmp_path / "pets")
    with pytest.raises(DataError, match="no class 'truck'; available: cat, dog, eel"):
        load_data(Data(str(root), classes=["cat", "truck"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no 'train' folder; expected <root>/train/<class>/<image>"):
        load_data(Data(str(tmp_path / "empty")))


def npz(path, **arrays):
    rng = np.random.default_rng(0)
    base = dict(x_train=rng.integers(0, 256, (20, 6, 6, 3), dtype=np.uint8), y_train=np.arange(20) % 2,
                x_test=rng.integers(0, 256, (6, 6, 6, 3), dtype=np.uint8), y_test=np.arange(6) % 2)
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return str(path)


def test_npz_with_class_names(tmp_path):
    dataset = load_data(Data(npz(tmp_path / "a.npz", class_names=np.array(["no", "yes"])), validation=0.2))
    assert dataset.class_names == ["no", "yes"] and dataset.shape == (6, 6, 3)
    assert load_data(Data(npz(tmp_path / "b.npz", x_train=np.zeros((20, 6, 6), np.uint8)))).shape == (6, 6, 1)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(y_test=None), "missing arrays y_test"),
        (dict(y_train=np.arange(19) % 2), "x_train has 20 images but y_train 19 labels"),
        (dict(y_test=np.array([0, 1, 0, 1, 0, 5]), class_names=np.array(["a", "b"])), "labels range from 0 to 5; expected 0 to 1"),
        (dict(y_train=np.arange(20) * 0.5), "y_train holds float64 values; expected integer class labels"),
        (dict(x_test=np.zeros((6, 6), np.uint8)), r"x_test has shape \(6, 6\)"),
    ],
)
def test_bad_npz_is_named(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message):
        load_data(Data(npz(tmp_path / "bad.npz", **arrays)))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(validation=1.5), "validation"), (dict(validation=0), "validation"), (dict(classes=["a"]), "classes"),
        (dict(classes=["a", "a"]), "classes"), (dict(classes="ab"), "classes"), (dict(per_class=0), "per_class"),
        (dict(image_size=(32,)), "image_size"), (dict(grayscale="yes"), "grayscale"), (dict(seed=1.5), "seed"),
    ],
)
def test_bad_declarations_name_the_field(kwargs, field):
    with pytest.raises(DataError, match=f"data: {field}="):
        Data("digits", **kwargs)


def test_tfds_without_network_says_how_to_point_at_a_local_copy(monkeypatch, tmp_path):
    import tensorflow_datasets as tfds

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to establish a new connection: network is unreachable")

    monkeypatch.setattr(tfds, "builder", offline)
    with pytest.raises(DataError, match=r"could not provide 'cifar10'.*--data-dir .*ARCHSEARCH_DATA_DIR"):
        load_data(Data("cifar10"))


def test_the_offline_default_loads_without_a_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("networking is disabled in this test")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    dataset = load_data(Data("digits", validation=0.2))
    assert dataset.shape == (8, 8, 1) and dataset.num_classes == 10
    assert len(dataset.full_train()[0]) + len(dataset.x_test) == 1797
    assert dataset.x_train.max() == 255


def test_the_cache_is_reused_on_a_second_load(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pets", train=40)
    first = load_data(Data(str(root)), cache_dir=tmp_path / "cache")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(data_module, "_decode_all", no_decoding)
    second = load_data(Data(str(root)), cache_dir=tmp_path / "cache")
    assert second.cache_path == first.cache_path and second.fingerprint == first.fingerprint
    assert np.array_equal(first.x_test, second.x_test)
    # Other options, another entry; a changed file, another fingerprint.
    monkeypatch.undo()
    assert load_data(Data(str(root), grayscale=True), cache_dir=tmp_path / "cache").fingerprint != first.fingerprint
    time.sleep(0.01)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "test" / "cat" / "000.png")
    assert load_data(Data(str(root)), cache_dir=tmp_path / "cache").fingerprint != first.fingerprint


def test_peek_matches_the_loaded_shape(tmp_path):
    root = make_folder(tmp_path / "pets")
    for declaration in (Data(str(root)), Data(str(root), grayscale=True, classes=["cat", "dog"]), Data("digits"),
                        Data(npz(tmp_path / "a.npz"))):
        dataset = load_data(declaration)
        assert peek(declaration) == (dataset.shape, dataset.num_classes)


@pytest.fixture(scope="module")
def cifar(cifar_archive):
    start = time.perf_counter()
    dataset = load_data(Data("cifar10", validation=0.1), data_dir=str(cifar_archive))
    return dataset, time.perf_counter() - start


def test_the_shared_cifar10_archive_loads_whole(cifar):
    dataset, seconds = cifar
    assert dataset.class_names == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert len(dataset.full_train()[0]) == 50_000 and len(dataset.x_test) == 10_000
    assert dataset.shape == (32, 32, 3)
    assert np.bincount(dataset.y_test).tolist() == [1000] * 10
    assert seconds < 120


def test_car_versus_truck_has_the_notes_sizes(cifar, cifar_archive):
    dataset = load_data(Data("cifar10", classes=["automobile", "truck"], grayscale=True), data_dir=str(cifar_archive))
    assert dataset.class_names == ["automobile", "truck"] and dataset.shape == (32, 32, 1)
    assert len(dataset.full_train()[0]) == 10_000 and len(dataset.x_test) == 2_000


def test_a_cached_load_of_cifar10_is_fast(cifar, cifar_archive):
    start = time.perf_counter()
    dataset = load_data(Data("cifar10", validation=0.1), data_dir=str(cifar_archive))
    assert dataset.fingerprint == cifar[0].fingerprint
    assert time.perf_counter() - start < 10


def test_data_command_json(cifar, cifar_archive, capsys):
    from pathlib import Path

    space = Path(__file__).resolve().parents[1] / "search_spaces" / "cifar.py"
    assert main(["data", str(space), "--data-dir", str(cifar_archive), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"source", "classes", "shape", "counts", "per_class", "fingerprint", "cache", "seconds"} <= set(report)
    assert report["counts"] == {"train": 45_000, "validation": 5_000, "test": 10_000}
    assert report["per_class"]["test"]["truck"] == 1000
    assert data_summary(cifar[0])["counts"] == report["counts"]
