"""What each training knob of issue 27 buys, on car versus truck, with one architecture fixed.

The architecture and the training knobs are the committed car-versus-truck
winner's (rank 1 of `--run`'s leaderboard); each row changes only what it
names: label smoothing, a one-cycle schedule, a warmup before the cosine
decay, test-time augmentation (the mean over each image and its mirror), and
all of them together. Every row trains the same epochs, on the training split
less its validation split, once per seed, through archsearch's own training
path (`archsearch.model.training.train()`); each trained model is scored
once on the validation split and once on the test split, through
`archsearch.model.builder.scoring_model()`. A choice of recipe is made on
validation accuracy; the test accuracy is the honest figure.

`tta` changes no training: it scores the models its row shares with the row
it is added to (`current` + `tta`, `all` without it), trained once with the
same seed, so the difference is the augmentation's alone.

Each (row, seed) is appended to `--seeds-out` when it is done, and a rerun
skips what is there (a killed benchmark resumes). The summary, mean and
sample standard deviation over seeds, goes to `--out`.

    python benchmarks/training_recipe.py --data-dir /work/shared/data/cifar10-jpg.tar.gz \\
        --epochs 6 --seeds 3 --out results/bench/training_recipe.csv
"""

import argparse
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from archsearch.data import load_data
from archsearch.model.backend import set_random_seed
from archsearch.model.builder import build_model, scoring_model
from archsearch.model.training import predict_classes, train
from archsearch.pipeline.retrain import evaluate
from archsearch.recipe.architecture import plan
from archsearch.recipe.bundled import space_file
from archsearch.recipe.dimensions import point_of
from archsearch.recipe.space import load_space
from archsearch.records.directory import RunDir

RUN = "results/cifar_car_truck/2026-12-01_12-53-11"
SMOOTHING = 0.2  # airbench's and Page's ResNet-9's
WARMUP = 0.2  # about a fifth of the steps, as `warmup="auto"` gives onecycle

#: Each trained row: the knobs it changes from the winner's, and the rows scored from its models with `tta`.
TRAINED = {
    "current": ({}, "tta"),
    "label_smoothing": ({"label_smoothing": SMOOTHING}, None),
    "onecycle": ({"schedule": "onecycle", "warmup": WARMUP}, None),
    "cosine_warmup": ({"schedule": "cosine", "warmup": WARMUP}, None),
    "smoothing_onecycle": ({"label_smoothing": SMOOTHING, "schedule": "onecycle", "warmup": WARMUP}, "all"),
}
KNOBS = ("label_smoothing", "schedule", "warmup", "tta")


def scores(model, point, dataset):
    """Validation and test accuracy (and test BER) of a trained model, scored with the point's `tta`."""
    model = scoring_model(model, point)
    val = predict_classes(model, dataset.x_val)
    test = evaluate(predict_classes(model, dataset.x_test), dataset.y_test, dataset.num_classes)
    return {
        "val_accuracy": float(np.mean(val == dataset.y_val)),
        "test_accuracy": test.accuracy,
        "test_balanced_error_rate": test.balanced_error_rate,
    }


def run_seed(name, changes, tta_row, point, dataset, seed, epochs):
    """Trains one row's point with one seed; returns its result rows (and the `tta` row scored from it)."""
    point = {**point, **changes, "epochs": epochs}
    set_random_seed(seed)
    keras.backend.clear_session()
    architecture = plan(point, dataset.shape, dataset.num_classes)
    model = build_model(architecture)
    seconds = train(model, architecture.point, dataset.x_train, dataset.y_train, epochs)
    scored = {name: architecture.point}
    if tta_row:
        scored[tta_row] = {**architecture.point, "tta": True}
    return [
        {"row": row, "seed": seed, **{k: p[k] for k in KNOBS}, **scores(model, p, dataset), "train_seconds": seconds}
        for row, p in scored.items()
    ]


def summarize(frame, order):
    """Mean and sample standard deviation over seeds of each row, in `order`, with its change from `current`."""
    grouped = frame.groupby("row", sort=False)
    summary = grouped[["val_accuracy", "test_accuracy", "test_balanced_error_rate", "train_seconds"]].agg(
        ["mean", "std"]
    )
    summary.columns = [f"{column}_{stat}".replace("_mean", "") for column, stat in summary.columns]
    summary = summary.join(grouped[list(KNOBS)].first()).join(grouped.size().rename("seeds"))
    summary = summary.reindex([row for row in order if row in summary.index])
    summary["test_accuracy_change"] = summary["test_accuracy"] - summary.loc["current", "test_accuracy"]
    columns = [*KNOBS, "seeds", "val_accuracy", "val_accuracy_std", "test_accuracy", "test_accuracy_std"]
    columns += ["test_accuracy_change", "test_balanced_error_rate", "test_balanced_error_rate_std", "train_seconds"]
    return summary[columns].reset_index()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the shared CIFAR-10 copy")
    parser.add_argument("--run", default=RUN, help="the committed run whose rank 1 fixes the architecture")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/bench/training_recipe.csv"))
    parser.add_argument("--seeds-out", type=Path, default=None, help="per-seed rows (default: OUT's name + _seeds)")
    args = parser.parse_args()
    seeds_out = args.seeds_out or args.out.with_name(f"{args.out.stem}_seeds.csv")
    args.out.parent.mkdir(parents=True, exist_ok=True)

    space = load_space(space_file("cifar_car_truck"))
    dataset = load_data(space.data, data_dir=args.data_dir)
    leaderboard = RunDir(args.run).read_leaderboard()
    point = point_of(leaderboard[leaderboard["rank"] == 1].iloc[0])
    print(f"{len(dataset.y_train)} training, {len(dataset.y_val)} validation, {len(dataset.y_test)} test images")

    done = pd.read_csv(seeds_out) if seeds_out.exists() else pd.DataFrame(columns=["row", "seed"])
    for seed in range(args.seeds):
        for name, (changes, tta_row) in TRAINED.items():
            if ((done["row"] == name) & (done["seed"] == seed)).any():
                continue
            start = time.perf_counter()
            rows = pd.DataFrame(run_seed(name, changes, tta_row, point, dataset, seed, args.epochs))
            done = pd.concat([done, rows], ignore_index=True) if len(done) else rows
            done.to_csv(seeds_out, index=False)
            for row in rows.itertuples():
                print(f"{row.row:<20} seed {seed}: val {row.val_accuracy:.4f} test {row.test_accuracy:.4f}", end="")
                print(f"  ({time.perf_counter() - start:.0f} s)")
    order = ["current", "label_smoothing", "onecycle", "cosine_warmup", "tta", "smoothing_onecycle", "all"]
    summary = summarize(done, order)
    summary.to_csv(args.out, index=False, float_format="%.6g")
    print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
