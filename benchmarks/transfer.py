"""What starting from a trained network buys on scarce data (notes 003): car versus truck from 25 to 400 images.

The source is an archsearch run on CIFAR-10's 8 other classes, trained on
their training split only (`benchmarks/transfer_source.py`; `--source` reuses
a finished one). The target is car versus truck, in color, with its first
25, 100 or 400 training images per class, tested on all its 2,000 test
images. Each method trains the source's architecture the same epochs: from
random weights (`scratch`), or from the source's trained base with a new
head, `frozen` (the head alone), `fine_tune` (every layer from the start) or
`two_phase` (the head for half the epochs, then every layer at a tenth of
the learning rate, recompiled).

The protocol is archsearch's own. Each method's learning rate is chosen
among `LEARNING_RATES` on a validation split (a fifth of the training
images, trained on the rest, seed 0), since a head on frozen features and a
network from random weights need not want the same one; then the chosen
point is retrained on all the training images once per seed and tested once
(`archsearch.pipeline.retrain.retrain()`). At 25 images per class the
validation split is 10 images: a choice that noisy is what scarce data gives.
One more row, `linear_probe`, checks the features themselves: the base's
feature maps, averaged over positions, fed to scikit-learn's logistic
regression on all the training images (deterministic: one seed).

Each selection and each (size, method, seed) is appended to `--seeds-out`
when it is done, and a rerun skips what is there (a killed benchmark
resumes). The summary, mean and sample standard deviation over seeds, goes
to `--out`.

    python benchmarks/transfer.py --data-dir /work/shared/data/cifar10-jpg.tar.gz \\
        --epochs 30 --seeds 2 --out results/bench/transfer.csv
"""

import argparse
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from archsearch import api
from archsearch.data import Data, load_data
from archsearch.model.backend import set_random_seed
from archsearch.model.builder import build_model, scoring_model
from archsearch.model.training import predict_classes, predict_probabilities, train
from archsearch.model.transfer import base_network
from archsearch.pipeline.retrain import retrain
from archsearch.pipeline.transfer import resolve_transfer
from archsearch.recipe import dimensions
from archsearch.recipe.architecture import plan
from archsearch.recipe.space import Space, load_space
from archsearch.recipe.transfer import Transfer
from archsearch.records.directory import COMPLETE, RunDir, resolve_run

SIZES = (25, 100, 400)
METHODS = ("scratch", "frozen", "fine_tune", "two_phase", "linear_probe")
LEARNING_RATES = (1e-3, 3e-3, 1e-2)  # each method chooses one on validation
VALIDATION = 0.2
TARGET = ["automobile", "truck"]
SOURCE_SPACE = Path(__file__).with_name("transfer_source.py")
SOURCE_RUN = "results/bench/transfer_source"
COLUMNS = [
    "images_per_class",
    "method",
    "test_accuracy",
    "test_accuracy_std",
    "seeds",
    "train_seconds",
    "learning_rate",
    "val_accuracy",
]


def source_run(source, data_dir, log=print):
    """The source run: `source` if given, else `SOURCE_RUN` where its weights are there, else run afresh there.

    The repository holds `SOURCE_RUN`'s records (run.json and its tables) but
    never weights, so on a fresh clone the source is trained again (about
    20 minutes on two CPU cores).
    """
    if source:
        return resolve_run(source, log)
    run_dir = RunDir(SOURCE_RUN)
    if run_dir.status() == COMPLETE:
        trial_id = run_dir.read_leaderboard().query("rank == 1").iloc[0]["trial_id"]
        if run_dir.retrained_model(trial_id).is_file():
            return run_dir
    api.run(load_space(SOURCE_SPACE), data_dir=data_dir, results=SOURCE_RUN, overwrite=True)
    return run_dir


def target_point(source_point, method, epochs, learning_rate):
    """The point a method trains: the source's architecture and training knobs, with the method's own."""
    point = {**source_point, "epochs": epochs, "batch_size": 16, "learning_rate": learning_rate}
    if method != "scratch":
        point.update(transfer=method, head_fraction=0.5, fine_tune_learning_rate=learning_rate / 10)
    return point


def validation_accuracy(point, dataset, base):
    """Trains a point on the training split less its validation split (seed 0); returns its validation accuracy.

    `base` is the transferred base the point starts from, `None` for scratch.
    """
    set_random_seed(0)
    keras.backend.clear_session()
    architecture = plan(point, dataset.shape, dataset.num_classes, base)
    model = build_model(architecture)
    train(model, architecture.point, dataset.x_train, dataset.y_train, point["epochs"])
    return float(np.mean(predict_classes(scoring_model(model, architecture.point), dataset.x_val) == dataset.y_val))


def linear_probe(dataset, base):
    """Logistic regression on the base's features averaged over positions; returns its result row."""
    start = time.perf_counter()
    network = base_network(base)
    x, y = dataset.full_train()

    def features(images):
        return predict_probabilities(network, images).mean(axis=(1, 2))

    probe = LogisticRegression(max_iter=5000).fit(features(x), y)
    accuracy = float(np.mean(probe.predict(features(dataset.x_test)) == dataset.y_test))
    return {"test_accuracy": accuracy, "train_seconds": time.perf_counter() - start}


def summarize(seeds):
    """Mean and sample standard deviation over seeds of each (size, method), with its chosen learning rate."""
    tested = seeds[seeds["stage"] == "test"]
    tested = tested.assign(order=tested["method"].map(METHODS.index)).sort_values(["images_per_class", "order"])
    table = (
        tested.groupby(["images_per_class", "method"], sort=False)
        .agg(
            test_accuracy=("test_accuracy", "mean"),
            test_accuracy_std=("test_accuracy", "std"),
            seeds=("seed", "count"),
            train_seconds=("train_seconds", "mean"),
            learning_rate=("learning_rate", "first"),
        )
        .reset_index()
    )
    selected = seeds[seeds["stage"] == "select"].set_index(["images_per_class", "method", "learning_rate"])
    table["val_accuracy"] = [
        selected["val_accuracy"].get((row.images_per_class, row.method, row.learning_rate), np.nan)
        for row in table.itertuples()
    ]
    return table[COLUMNS].round({"test_accuracy": 4, "test_accuracy_std": 4, "train_seconds": 1, "val_accuracy": 3})


class Record:
    """The per-seed rows: appended and written as they come, read back to resume."""

    def __init__(self, path):
        self.path = Path(path)
        self.rows = pd.read_csv(self.path).to_dict("records") if self.path.exists() else []

    def find(self, **keys):
        return next((row for row in self.rows if all(row.get(k) == v for k, v in keys.items())), None)

    def add(self, row):
        print(row, flush=True)
        self.rows.append(row)
        pd.DataFrame(self.rows).to_csv(self.path, index=False)


def choose_learning_rate(record, size, method, source_point, epochs, dataset, base, learning_rates):
    """The method's learning rate of `learning_rates` with the best validation accuracy (ties: the first)."""
    if len(learning_rates) == 1:
        return learning_rates[0]
    scores = []
    for learning_rate in learning_rates:
        keys = dict(images_per_class=size, method=method, stage="select", learning_rate=learning_rate)
        row = record.find(**keys)
        if row is None:
            point = target_point(source_point, method, epochs, learning_rate)
            row = {**keys, "seed": 0, "val_accuracy": validation_accuracy(point, dataset, base)}
            record.add(row)
        scores.append(row["val_accuracy"])
    return learning_rates[int(np.argmax(scores))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the CIFAR-10 image folder or archive")
    parser.add_argument("--source", help="a finished run of benchmarks/transfer_source.py (default: run it)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument(
        "--learning-rates",
        type=float,
        nargs="+",
        default=LEARNING_RATES,
        help="the learning rates each method chooses from on validation (one: no choice, no validation training)",
    )
    parser.add_argument("--out", default="results/bench/transfer.csv")
    parser.add_argument("--seeds-out", default=None, help="per-seed rows (default: beside --out, _seeds.csv)")
    args = parser.parse_args()
    record = Record(args.seeds_out or Path(args.out).with_name(Path(args.out).stem + "_seeds.csv"))

    run_dir = source_run(args.source, args.data_dir)
    source_point = dimensions.point_of(run_dir.read_leaderboard().query("rank == 1").iloc[0])
    for size in args.sizes:
        data = Data(args.data_dir, classes=TARGET, per_class=size, validation=VALIDATION)
        dataset = load_data(data)
        base, _ = resolve_transfer(
            Space(name="car_truck_transfer", data=data, transfer=Transfer(str(run_dir))), dataset
        )
        for method in METHODS:
            if method == "linear_probe":
                if record.find(images_per_class=size, method=method, stage="test") is None:
                    probe = linear_probe(dataset, base)
                    record.add({"images_per_class": size, "method": method, "stage": "test", "seed": 0, **probe})
                continue
            start = None if method == "scratch" else base  # scratch: the source's architecture, random weights
            learning_rate = choose_learning_rate(
                record, size, method, source_point, args.epochs, dataset, start, tuple(args.learning_rates)
            )
            point = target_point(source_point, method, args.epochs, learning_rate)
            for seed in range(args.seeds):
                keys = dict(images_per_class=size, method=method, stage="test", seed=seed, learning_rate=learning_rate)
                if record.find(**keys) is None:
                    _, evaluation = retrain(point, dataset, seed, args.epochs, base=start)
                    scores = {"test_accuracy": evaluation.accuracy, "train_seconds": evaluation.seconds}
                    record.add({**keys, **scores})
    table = summarize(pd.DataFrame(record.rows))
    table.to_csv(args.out, index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
