"""The learning-rate schedules of the `schedule` and `warmup` knobs, over a training's optimizer steps.

`constant` and `cosine`, with or without a warmup, are Keras's own schedules
(`CosineDecay` and its linear warmup; `alpha=1` holds the peak after the
warmup). Keras has no schedule that decays linearly after a warmup, so
`onecycle` is `OneCycle`, the one schedule archsearch adds.

Importing this module (as `archsearch.model.builder` does) registers
`OneCycle`, which loading a compiled training-time `model.keras` needs.
"""

import keras
from keras import ops

#: What `warmup="auto"` means: Page's ResNet-9 (5 of 24 epochs) and airbench (23% of the steps) rise
#: to the peak over about a fifth of the training; the other schedules start at their peak.
AUTO_WARMUP = {"onecycle": 0.2}


def warmup_fraction(point):
    """The fraction of the steps a point's learning rate warms up over, `"auto"` resolved.

    Example:

    >>> warmup_fraction({"schedule": "onecycle", "warmup": "auto"})
    0.2
    >>> warmup_fraction({"schedule": "cosine", "warmup": "auto"})
    0.0
    """
    if point["warmup"] == "auto":
        return AUTO_WARMUP.get(point["schedule"], 0.0)
    return point["warmup"]


@keras.saving.register_keras_serializable(package="archsearch")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """A linear rise from 0 to `peak` over `warmup_steps`, then a linear decay to 0 at `steps`.

    Args:
        peak: the learning rate at the end of the warmup.
        steps: the training's optimizer steps; from there on the rate is 0.
        warmup_steps: the steps of the rise (0: the decay starts at the peak).

    Example:

    >>> schedule = OneCycle(0.4, steps=100, warmup_steps=20)
    >>> [round(float(schedule(step)), 3) for step in (0, 10, 20, 60, 100)]
    [0.0, 0.2, 0.4, 0.2, 0.0]
    """

    def __init__(self, peak, steps, warmup_steps=0):
        self.peak = float(peak)
        self.steps = int(steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        rise = step / max(1, self.warmup_steps)
        fall = (self.steps - step) / max(1, self.steps - self.warmup_steps)
        return self.peak * ops.clip(ops.where(step < self.warmup_steps, rise, fall), 0.0, 1.0)

    def get_config(self):
        return {"peak": self.peak, "steps": self.steps, "warmup_steps": self.warmup_steps}


def learning_rate(point, steps):
    """Returns a point's learning rate: a float for a constant one, else a Keras schedule over `steps`.

    Args:
        point: the architecture's point (`learning_rate`, `schedule`, `warmup`).
        steps: the optimizer steps of the training to come.

    Returns:
        What a Keras optimizer takes as its `learning_rate`.

    Example:

    >>> schedule = learning_rate({"learning_rate": 0.1, "schedule": "cosine", "warmup": 0.1}, 100)
    >>> [round(float(schedule(step)), 3) for step in (0, 5, 10, 100)]
    [0.0, 0.05, 0.1, 0.0]
    """
    peak, schedule, steps = point["learning_rate"], point["schedule"], max(1, steps)
    warmup_steps = round(warmup_fraction(point) * steps)
    if schedule == "onecycle":
        return OneCycle(peak, steps, warmup_steps)
    if not warmup_steps:
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps=steps) if schedule == "cosine" else peak
    return keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=max(1, steps - warmup_steps),
        alpha=1.0 if schedule == "constant" else 0.0,
        warmup_target=peak,
        warmup_steps=warmup_steps,
    )
