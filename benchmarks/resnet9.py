"""Training speed of a ResNet-9-like recipe point: archsearch (Keras) against bare Keras and a PyTorch peer.

The reference point is the recipe's nearest thing to the DAWNBench ResNet-9:
four stages of 64/128/256/512 maps, one residual block each, max-pool
halvings, batch norm, global-average-pool head, random shift and flip.
In one process this script trains it, `--repeats` times each, with:

- `archsearch`: a one-trial search, as `archsearch run` trains a trial (the
  tuner, its callbacks and progress lines, the tool's batches, then scoring
  on the validation split) on the current Keras backend;
- `keras`: a bare `model.fit` of the same model on the same number of images
  (the tool's overhead is the ratio of the two throughputs);
- `pytorch`: the same architecture written directly in PyTorch with
  channels_last, bfloat16 autocast and torch.compile, the same augmentation
  (done on the device), optimizer, schedule and batch norm settings, and full
  batches only; its parameter count is checked against archsearch's
  (`--no-peer` skips it).

The order of the systems rotates from one repeat to the next, so that none
always runs first; the summary gives medians over repeats, and the
archsearch / keras ratio of each repeat (a paired comparison).

Throughput is images per second over the epochs after the first (which holds
compilation); compile seconds are the first step's time less a typical
step's; `train_seconds` is the whole training, compilation included;
`seconds_to_target` is that less the compile seconds, when the test accuracy
reached `--target` (airbench's convention: a fixed schedule, one test
evaluation at its end, compilation and warm-up not counted).
Achieved TFLOP/s counts 3x the planned forward FLOPs per training image.

    python benchmarks/resnet9.py --data-dir /path/to/cifar10 --limit 100 --epochs 3 --repeats 3   # CPU, small
    KERAS_BACKEND=jax python benchmarks/resnet9.py --data-dir ... --epochs 20 --batch-size 512 --mixed-precision  # GPU
"""

import argparse
import math
import os
import platform
import sys
import tempfile
import threading
import time

import keras
import numpy as np
import pandas as pd

from archsearch.data import Data, load_data
from archsearch.model import builder
from archsearch.model.backend import device_description
from archsearch.model.builder import build_model, compile_model
from archsearch.output.progress import EpochProgress
from archsearch.recipe import dimensions
from archsearch.recipe.architecture import plan
from archsearch.recipe.space import Recipe, Search, Space, Train
from archsearch.search.tuners import make_tuner

from search_summary import peak_tflops_of

RESNET9 = dict(
    family="resnet",
    width=64,
    growth=2.0,
    max_width=512,
    stages=4,
    blocks_per_stage=1,
    downsample="maxpool",
    batch_norm=True,
    head="gap",
    resolution=32,
    optimizer="sgd",
    learning_rate=0.05,
    weight_decay=5e-4,
    schedule="cosine",
    augment=True,
)


class SharedCallback(keras.callbacks.Callback):
    """Keras Tuner deep-copies a trial's callbacks: this one stays itself, so the benchmark reads what it recorded."""

    def __deepcopy__(self, memo):
        return self


class EpochClock(SharedCallback):
    """Records the end time of every epoch and of the first training steps (waiting for them), and the trained model.

    `async_safe`: Keras waits for the steps on threads of its own (on JAX), as
    for archsearch's own callbacks, so the clock does not slow the training it times.
    """

    STEPS = 10
    async_safe = True

    def __init__(self):
        super().__init__()
        self.marks, self.steps = [], []

    def on_train_begin(self, logs=None):
        self.marks, self.steps = [time.perf_counter()], [time.perf_counter()]

    def on_train_batch_end(self, batch, logs=None):
        if len(self.steps) <= self.STEPS:
            if logs and "loss" in logs:
                float(logs["loss"])  # wait for the step
            self.steps.append(time.perf_counter())
            self.steps.sort()  # the threads may record their ends out of order

    def on_epoch_end(self, epoch, logs=None):
        self.marks.append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.trained = self.model


class StepTrace(SharedCallback):
    """Writes a JAX profiler trace (XLA ops, host activity) of 20 steps of the second epoch into `directory`.

    From step 20 on, or from its middle where the epoch is shorter (a small CPU rehearsal).
    """

    STEPS = 20
    async_safe = True  # stops the trace on Keras's callback thread: the traced steps queue as they would untraced

    def __init__(self, directory):
        super().__init__()
        self.directory, self.epoch, self.tracing, self.traced = directory, 0, False, False
        self.lock = threading.Lock()  # batch ends come on several threads

    def on_train_begin(self, logs=None):
        self.first = min(self.STEPS, (self.params.get("steps") or 0) // 2)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        # Batches go by steps_per_execution.
        if self.epoch == 1 and batch >= self.first and not (self.tracing or self.traced):
            import jax

            jax.profiler.start_trace(self.directory)
            self.tracing = True

    def on_train_batch_end(self, batch, logs=None):
        with self.lock:
            if self.tracing and batch >= self.first + self.STEPS - 1:
                self._stop(logs)

    def on_epoch_end(self, epoch, logs=None):
        with self.lock:
            if self.tracing:  # an epoch that ended first
                self._stop(logs)

    def _stop(self, logs):
        import jax

        float(logs["loss"])  # the traced steps have finished
        jax.profiler.stop_trace()
        self.tracing, self.traced = False, True


def accuracy_of(probabilities, labels):
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


class WaitEveryStep(SharedCallback):
    """A batch end that does nothing and is not `async_safe`: Keras then waits on the host for every step.

    As archsearch's callbacks did before 2026-11-25.
    """

    def on_train_batch_end(self, batch, logs=None):
        pass


def bench_keras(dataset, point, tool, trace=None, wait_every_step=False):
    """Trains the point with archsearch's trial path (`tool=True`) or a bare `model.fit`.

    Returns:
        (clock, test accuracy, parameter count)
    """
    keras.utils.set_random_seed(0)
    keras.backend.clear_session()
    clock = EpochClock()
    callbacks = [clock] + ([StepTrace(trace)] if trace else []) + ([WaitEveryStep()] if wait_every_step else [])
    if tool:  # a one-trial search: the tuner's callbacks and the progress lines, as in `archsearch run`
        space = Space(
            name="bench",
            recipe=Recipe(**{k: point[k] for k in dimensions.RECIPE if k in point}),
            train=Train(**{k: point[k] for k in dimensions.applicable() if k in dimensions.TRAIN and k in point}),
            search=Search(max_trials=1),
        )
        with tempfile.TemporaryDirectory() as directory:
            tuner = make_tuner(
                space,
                dataset,
                directory,
                overwrite=True,
                trial_callbacks=lambda trial_id: [EpochProgress(f"archsearch trial {trial_id}"), *callbacks],
            )
            tuner.search(dataset.x_train, dataset.y_train, validation_data=(dataset.x_val, dataset.y_val), verbose=0)
        model = clock.trained
    else:
        model = build_model(plan(point, dataset.shape, dataset.num_classes))
        steps = len(dataset.x_train) // point["batch_size"]
        compile_model(model, point, steps * point["epochs"])
        images = steps * point["batch_size"]  # as many as the tool trains on, all in full batches
        model.fit(
            dataset.x_train[:images],
            dataset.y_train[:images],
            batch_size=point["batch_size"],
            epochs=point["epochs"],
            callbacks=callbacks,
            verbose=0,
        )
    accuracy = accuracy_of(model.predict(dataset.x_test, batch_size=512, verbose=0), dataset.y_test)
    return clock, accuracy, model.count_params()


def bench_pytorch(dataset, point):
    """The same architecture and training in PyTorch: channels_last, bfloat16 autocast, torch.compile.

    Returns:
        (clock, test accuracy, parameter count with batch norm's moving statistics, as Keras counts)
    """
    import torch
    from torch import nn

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def conv_bn(cin, cout, k=3):
        # Keras's batch norm: momentum 0.9 (PyTorch's 0.1), epsilon 1e-3.
        return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout, eps=1e-3, momentum=0.1)]

    class Block(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.main = nn.Sequential(*conv_bn(cin, cout), nn.ReLU(), *conv_bn(cout, cout))
            self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1)) if cin != cout else nn.Identity()

        def forward(self, x):
            return torch.relu(self.main(x) + self.shortcut(x))

    layers, cin = [], dataset.shape[-1]
    for width in (64, 128, 256, 512):
        layers += [Block(cin, width), nn.MaxPool2d(2)]
        cin = width
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, dataset.num_classes))
    for module in model.modules():  # Keras's initializers: He normal (truncated) convs, Glorot uniform head
        if isinstance(module, nn.Conv2d):
            std = math.sqrt(2 / (module.in_channels * module.kernel_size[0] ** 2)) / 0.87962566103423978
            nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    params = sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for n, b in model.named_buffers() if "running" in n
    )
    model = model.to(device, memory_format=torch.channels_last)
    batch_size, epochs = point["batch_size"], point["epochs"]
    steps_per_epoch = len(dataset.x_train) // batch_size  # full batches, as archsearch trains
    # Keras's SGD: Nesterov momentum 0.9, weight decay decoupled (w -= lr * wd * w), cosine to 0.
    parameters = list(model.parameters())
    optimizer = torch.optim.SGD(parameters, lr=point["learning_rate"], momentum=0.9, nesterov=True)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps_per_epoch * epochs)
    compiled = torch.compile(model)
    pad = max(1, round(point["resolution"] / 8))

    def to_input(images):
        x = torch.from_numpy(images).to(device, non_blocking=True).permute(0, 3, 1, 2).float().div(255)
        return x.contiguous(memory_format=torch.channels_last)

    def augment(x):
        """Per-image random shift by up to `pad` pixels (zero fill) and horizontal flip, on the device."""
        n, c, h, w = x.shape
        padded = nn.functional.pad(x, (pad, pad, pad, pad))
        offsets = torch.randint(0, 2 * pad + 1, (n, 2), device=x.device)
        rows = (offsets[:, :1] + torch.arange(h, device=x.device))[:, None, :, None].expand(n, c, h, w + 2 * pad)
        cols = (offsets[:, 1:] + torch.arange(w, device=x.device))[:, None, None, :].expand(n, c, h, w)
        x = padded.gather(2, rows).gather(3, cols)
        return torch.where(torch.rand(n, 1, 1, 1, device=x.device) < 0.5, x.flip(3), x).contiguous(
            memory_format=torch.channels_last
        )

    y_train = torch.from_numpy(dataset.y_train.astype(np.int64)).to(device)
    clock = EpochClock()
    clock.on_train_begin()
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(dataset.x_train))
        model.train()
        for i in range(steps_per_epoch):
            batch = order[i * batch_size : (i + 1) * batch_size]
            images = to_input(dataset.x_train[batch])
            if point["augment"]:
                images = augment(images)
            with torch.autocast(device, dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(compiled(images), y_train[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                torch._foreach_mul_(parameters, 1 - schedule.get_last_lr()[0] * point["weight_decay"])
            optimizer.step()
            schedule.step()
            if len(clock.steps) <= clock.STEPS:
                loss.item()  # wait for the step
                clock.steps.append(time.perf_counter())
        if device == "cuda":
            torch.cuda.synchronize()
        clock.on_epoch_end(epoch)
    model.eval()
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16):
        logits = [
            compiled(to_input(dataset.x_test[i : i + 512])).float().cpu().numpy()
            for i in range(0, len(dataset.x_test), 512)
        ]
    return clock, accuracy_of(np.concatenate(logits), dataset.y_test), params


def summarize(system, repeat, clock, accuracy, params, point, images, flops_per_image, target, peak):
    """One CSV row of a training run."""
    epoch_seconds = np.diff(clock.marks)
    steady = float(np.mean(epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds))
    steps = np.diff(clock.steps)
    tflops = 3 * flops_per_image * images / steady / 1e12
    train_seconds = float(clock.marks[-1] - clock.marks[0])
    compile_seconds = float(steps[0] - np.median(steps[1:])) if len(steps) > 1 else None
    return {
        "system": system,
        "repeat": repeat,
        "params": params,
        "images": images,
        "epochs": point["epochs"],
        "batch_size": point["batch_size"],
        "compile_seconds": None if compile_seconds is None else round(compile_seconds, 3),
        "seconds_per_epoch": round(steady, 3),
        "images_per_second": round(images / steady, 1),
        "achieved_tflops": float(f"{tflops:.3g}"),
        "fraction_of_bf16_peak": round(tflops / peak, 4) if peak else None,
        "train_seconds": round(train_seconds, 2),
        "test_accuracy": round(accuracy, 4),
        "seconds_to_target": round(train_seconds - (compile_seconds or 0.0), 2) if accuracy >= target else None,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="CIFAR-10 image folder or archive (default: the space's source)")
    parser.add_argument("--limit", type=int, help="training images per class, for a small CPU run")
    parser.add_argument("--test-limit", type=int, help="test images per class (default: all)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each system, in rotating order")
    parser.add_argument("--mixed-precision", action="store_true", help="Keras mixed_bfloat16 policy")
    parser.add_argument("--no-peer", action="store_true", help="skip the PyTorch peer")
    parser.add_argument("--target", type=float, default=0.94, help="test accuracy for seconds_to_target")
    parser.add_argument(
        "--peak-tflops", type=float, help="the device's bf16 peak (default: search_summary.BF16_PEAK_TFLOPS)"
    )
    parser.add_argument(
        "--trace",
        help="JAX only: write a profiler trace of 20 steps of the archsearch path's second epoch (first repeat) here",
    )
    parser.add_argument(
        "--steps-per-execution",
        type=int,
        default=builder.STEPS_PER_EXECUTION,
        help="Keras's steps_per_execution for both Keras paths (default: archsearch's)",
    )
    parser.add_argument(
        "--wait-every-step",
        action="store_true",
        help="make Keras wait on the host for every step, as before 2026-11-25",
    )
    parser.add_argument("--out", default="results/bench/resnet9.csv")
    args = parser.parse_args(argv)
    builder.STEPS_PER_EXECUTION = args.steps_per_execution

    if args.mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    dataset = load_data(
        Data("cifar10", validation=0.1, per_class=args.limit, test_per_class=args.test_limit), data_dir=args.data_dir
    )
    if len(dataset.x_train) < args.batch_size:
        parser.error(
            f"{len(dataset.x_train)} training images make no full batch of {args.batch_size}: "
            "raise --limit or lower --batch-size"
        )
    point = {**dimensions.defaults(), **RESNET9, "batch_size": args.batch_size, "epochs": args.epochs}
    architecture = plan(point, dataset.shape, dataset.num_classes)
    peak = args.peak_tflops or peak_tflops_of(device_description())
    context = dict(
        backend=keras.backend.backend(),
        precision=keras.mixed_precision.dtype_policy().name,
        device=device_description(),
        machine=platform.machine(),
        cpus=os.cpu_count(),
        steps_per_execution=args.steps_per_execution,
        wait_every_step=args.wait_every_step,
    )
    systems = ["archsearch", "keras"] + ([] if args.no_peer else ["pytorch"])
    rows = []
    for repeat in range(args.repeats):
        for system in systems[repeat % len(systems) :] + systems[: repeat % len(systems)]:
            if system == "pytorch":
                clock, accuracy, params = bench_pytorch(dataset, point)
                extra = {**context, "backend": "torch", "precision": "bf16 autocast"}
            else:
                trace = args.trace if system == "archsearch" and repeat == 0 else None
                clock, accuracy, params = bench_keras(
                    dataset, point, tool=system == "archsearch", trace=trace, wait_every_step=args.wait_every_step
                )
                extra = context
            if params != architecture.params:
                raise AssertionError(
                    f"{system} has {params} parameters, the plan {architecture.params}: not the same model"
                )
            images = len(dataset.x_train) // args.batch_size * args.batch_size  # per epoch, in every system
            row = summarize(
                system, repeat, clock, accuracy, params, point, images, architecture.flops, args.target, peak
            )
            rows.append({**row, **extra})
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    frame.to_csv(args.out, index=False)

    medians = frame.groupby("system")[
        ["images_per_second", "compile_seconds", "train_seconds", "test_accuracy"]
    ].median()
    print(medians.to_string())
    speed = frame.pivot(index="repeat", columns="system", values="images_per_second")
    paired = (speed["archsearch"] / speed["keras"]).round(3).tolist()
    print(f"overhead ratio archsearch / bare keras: median {np.median(paired):.3f} (per repeat {paired})")
    if "pytorch" in speed:
        ratios = (speed["archsearch"] / speed["pytorch"]).round(3).tolist()
        print(f"ratio archsearch / pytorch: median {np.median(ratios):.3f} (per repeat {ratios})")


if __name__ == "__main__":
    sys.exit(main())
