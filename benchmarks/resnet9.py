"""Training speed of a ResNet-9-like recipe point: archsearch (Keras) against bare Keras and a PyTorch peer.

The reference point is the recipe's nearest thing to the DAWNBench ResNet-9:
four stages of 64/128/256/512 maps, one residual block each, max-pool
halvings, batch norm, global-average-pool head. In one run this script times:

- `archsearch`: one search trial's training path (`SpaceHyperModel.fit`:
  the tool's callbacks, validation scoring) on the current Keras backend;
- `keras`: a bare `model.fit` of the same model (the tool's overhead is the
  ratio of the two throughputs);
- `pytorch`: the same architecture written directly in PyTorch with
  channels_last, bfloat16 autocast and torch.compile (`--no-peer` skips it).

Throughput is images per second over the epochs after the first (which holds
compilation); compile seconds are the first step's time less a typical step's.

    python benchmarks/resnet9.py --data-dir /path/to/cifar10 --limit 2000 --epochs 3   # CPU, small
    KERAS_BACKEND=jax python benchmarks/resnet9.py --data-dir ... --epochs 10 --mixed-precision  # GPU
"""

import argparse
import csv
import math
import os
import platform
import sys
import time

import keras
import keras_tuner
import numpy as np

from archsearch import dimensions
from archsearch.architecture import plan
from archsearch.builder import build_model, compile_model
from archsearch.data import Data, load_data
from archsearch.search import SpaceHyperModel
from archsearch.space import Recipe, Search, Space, Train

RESNET9 = dict(
    family="resnet", width=64, growth=2.0, max_width=512, stages=4, blocks_per_stage=1, downsample="maxpool",
    batch_norm=True, head="gap", resolution=32, optimizer="sgd", learning_rate=0.05, weight_decay=5e-4,
    schedule="cosine", augment=True,
)


class EpochClock(keras.callbacks.Callback):
    """Records the end time of every epoch and of the first training steps."""

    def __init__(self):
        super().__init__()
        self.marks, self.steps = [], []

    def on_train_begin(self, logs=None):
        self.marks, self.steps = [time.perf_counter()], [time.perf_counter()]

    def on_train_batch_end(self, batch, logs=None):
        if len(self.steps) <= 20:
            self.steps.append(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        self.marks.append(time.perf_counter())


def summarize(name, clock, images, epochs, batch_size, accuracy, extra, flops_per_image):
    epoch_seconds = np.diff(clock.marks)
    steady = epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds
    steps = np.diff(clock.steps)
    return {
        "system": name, **extra, "images": images, "epochs": epochs, "batch_size": batch_size,
        "compile_seconds": round(float(steps[0] - np.median(steps[1:])), 3) if len(steps) > 1 else None,
        "seconds_per_epoch": round(float(np.mean(steady)), 3),
        "images_per_second": round(images / float(np.mean(steady)), 1),
        # Training costs about 3x the forward FLOPs (forward, and two products backward).
        "achieved_tflops": round(3 * flops_per_image * images / float(np.mean(steady)) / 1e12, 3),
        "test_accuracy": round(accuracy, 4),
    }


def bench_keras(dataset, point, epochs, tool):
    """Trains the point with archsearch's trial path (`tool=True`) or a bare `model.fit`."""
    keras.utils.set_random_seed(0)
    keras.backend.clear_session()
    clock = EpochClock()
    if tool:
        space = Space(
            name="bench",
            recipe=Recipe(**{k: point[k] for k in dimensions.RECIPE if k in point}),
            train=Train(**{k: point[k] for k in dimensions.TRAIN if k in point}),
            search=Search(max_trials=1),
        )
        hypermodel = SpaceHyperModel(space, dataset)
        hp = keras_tuner.HyperParameters()
        model = hypermodel.build(hp)
        hypermodel.fit(hp, model, dataset.x_train, dataset.y_train, (dataset.x_val, dataset.y_val), callbacks=[clock], epochs=epochs)
    else:
        model = build_model(plan(point, dataset.shape, dataset.num_classes))
        compile_model(model, point, math.ceil(len(dataset.x_train) / point["batch_size"]) * epochs)
        model.fit(dataset.x_train, dataset.y_train, batch_size=point["batch_size"], epochs=epochs, callbacks=[clock], verbose=0)
    accuracy = float(np.mean(np.argmax(model.predict(dataset.x_test, batch_size=512, verbose=0), 1) == dataset.y_test))
    return clock, accuracy


def bench_pytorch(dataset, point, epochs):
    """The same architecture in PyTorch: channels_last, bfloat16 autocast, torch.compile."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def conv_bn(cin, cout, k=3):
        return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout, momentum=0.1)]

    class Block(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.main = nn.Sequential(*conv_bn(cin, cout), nn.ReLU(), *conv_bn(cout, cout))
            self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1)) if cin != cout else nn.Identity()

        def forward(self, x):
            return torch.relu(self.main(x) + self.shortcut(x))

    channels = dataset.shape[-1]
    layers, cin = [], channels
    for width in (64, 128, 256, 512):
        layers += [Block(cin, width), nn.MaxPool2d(2)]
        cin = width
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, dataset.num_classes))
    model = model.to(device, memory_format=torch.channels_last)
    steps_per_epoch = math.ceil(len(dataset.x_train) / point["batch_size"])
    optimizer = torch.optim.SGD(model.parameters(), lr=point["learning_rate"], momentum=0.9, nesterov=True, weight_decay=point["weight_decay"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps_per_epoch * epochs)
    step = torch.compile(model)
    to_input = lambda x: torch.from_numpy(x).to(device).permute(0, 3, 1, 2).float().div(255).contiguous(memory_format=torch.channels_last)
    x_train, y_train = dataset.x_train, torch.from_numpy(dataset.y_train.astype(np.int64)).to(device)
    clock = EpochClock()
    clock.on_train_begin()
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(x_train))
        model.train()
        for i in range(steps_per_epoch):
            batch = order[i * point["batch_size"] : (i + 1) * point["batch_size"]]
            images = to_input(x_train[batch])
            if point["augment"]:
                images = torch.where(torch.rand(len(batch), 1, 1, 1, device=device) < 0.5, images.flip(3), images)
            with torch.autocast(device, dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(step(images), y_train[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            clock.on_train_batch_end(i)
        if device == "cuda":
            torch.cuda.synchronize()
        clock.on_epoch_end(epoch)
    model.eval()
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16):
        predicted = torch.cat([step(to_input(dataset.x_test[i : i + 512])).argmax(1).cpu() for i in range(0, len(dataset.x_test), 512)])
    return clock, float((predicted.numpy() == dataset.y_test).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="CIFAR-10 image folder (default: the space's source)")
    parser.add_argument("--limit", type=int, help="training images per class, for a small CPU run")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--mixed-precision", action="store_true", help="Keras mixed_bfloat16 policy")
    parser.add_argument("--no-peer", action="store_true", help="skip the PyTorch peer")
    parser.add_argument("--out", default="results/bench/resnet9.csv")
    args = parser.parse_args(argv)

    if args.mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    dataset = load_data(Data("cifar10", validation=0.1, per_class=args.limit), data_dir=args.data_dir)
    point = {**RESNET9, "batch_size": args.batch_size, "epochs": args.epochs}
    extra = dict(backend=keras.backend.backend(), precision=keras.mixed_precision.dtype_policy().name, machine=platform.machine(), cpus=os.cpu_count())
    flops = plan(point, dataset.shape, dataset.num_classes).flops
    rows = []
    for name, tool in (("archsearch", True), ("keras", False)):
        clock, accuracy = bench_keras(dataset, point, args.epochs, tool)
        rows.append(summarize(name, clock, len(dataset.x_train), args.epochs, args.batch_size, accuracy, extra, flops))
    if not args.no_peer:
        clock, accuracy = bench_pytorch(dataset, point, args.epochs)
        rows.append(summarize("pytorch", clock, len(dataset.x_train), args.epochs, args.batch_size, accuracy, {**extra, "backend": "torch", "precision": "bf16 autocast"}, flops))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(row)
    speed = {row["system"]: row["images_per_second"] for row in rows}
    print(f"overhead ratio archsearch / bare keras: {speed['archsearch'] / speed['keras']:.3f}")
    if "pytorch" in speed:
        print(f"ratio archsearch / pytorch: {speed['archsearch'] / speed['pytorch']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
