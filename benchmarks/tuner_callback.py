"""Host time per step of Keras Tuner's callback against archsearch's `TunerReports`, on a small model.

Keras Tuner's `TunerCallback` passes `self.model` to the tuner at every
batch's begin and end; on JAX, reading `Callback.model` copies the whole
training state into the model's variables, at every step. archsearch's
`TunerReports` passes no model. This trains the same small ResNet on
scikit-learn's digits (upscaled to 16x16, 4 stages of 2 blocks: many
variables, little compute, so the host's share shows) with each callback,
alternating, and prints milliseconds per step over the epochs after the
first. The tuner is a stand-in whose hooks do nothing: only the callbacks
differ.

    KERAS_BACKEND=jax python benchmarks/tuner_callback.py --repeats 4
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
from sklearn.datasets import load_digits

from archsearch.compat.keras_tuner import TunerCallback, TunerReports
from archsearch.data import Data, load_data
from archsearch.model.builder import build_model
from archsearch.model.training import train
from archsearch.recipe import dimensions
from archsearch.recipe.architecture import plan


class IdleTuner:
    """A tuner whose hooks do nothing."""

    def on_epoch_begin(self, *args, **kwargs):
        pass

    on_epoch_end = on_batch_begin = on_batch_end = on_epoch_begin


class EpochClock(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.marks = [time.perf_counter()]

    def on_epoch_end(self, epoch, logs=None):
        self.marks.append(time.perf_counter())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args(argv)
    digits = load_digits()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "digits.npz"
        x = (digits.images * 16).clip(0, 255).astype(np.uint8)[..., None]
        np.savez(path, x_train=x[:1500], y_train=digits.target[:1500], x_test=x[1500:], y_test=digits.target[1500:])
        dataset = load_data(Data(str(path), validation=0.1))
    point = {
        **dimensions.defaults(),
        "family": "resnet",
        "width": 8,
        "resolution": 16,
        "stages": 4,
        "blocks_per_stage": 2,
        "batch_size": 32,
        "epochs": args.epochs,
    }
    arms = [("keras_tuner_callback", TunerCallback), ("archsearch_tuner_reports", TunerReports)]
    steps = len(dataset.x_train) // point["batch_size"]
    for repeat in range(args.repeats):
        for name, callback in arms if repeat % 2 == 0 else arms[::-1]:
            keras.utils.set_random_seed(0)
            keras.backend.clear_session()
            model = build_model(plan(point, dataset.shape, dataset.num_classes))
            clock = EpochClock()
            train(
                model,
                point,
                dataset.x_train,
                dataset.y_train,
                args.epochs,
                callbacks=[clock, callback(IdleTuner(), None)],
            )
            seconds = np.diff(clock.marks)[1:].mean()
            print(
                f"{name} repeat {repeat}: {1000 * seconds / steps:.2f} ms/step ({keras.backend.backend()})", flush=True
            )


if __name__ == "__main__":
    sys.exit(main())
