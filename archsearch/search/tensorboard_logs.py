"""`archsearch run --tensorboard`: logs for TensorBoard's HParams dashboard, one run per trial.

Keras Tuner does the work: given a `keras.callbacks.TensorBoard` callback, it
gives each trial its own log directory (`<run>/tensorboard/<trial id>/execution0`)
and records the trial's hyperparameters there with TensorBoard's own
`hparams_api.KerasCallback`, on the TensorFlow backend only. The trial's
validation scores, computed after training, are added with `tf.summary`, so
the dashboard has `val_accuracy` as its metric.
"""

import os

import keras

from archsearch.errors import ArchsearchError


def tensorboard_callback(log_dir):
    """Returns the TensorBoard callback to pass to the search, logging under `log_dir` (`<run>/tensorboard`).

    Raises:
        ArchsearchError: on a backend other than TensorFlow, where Keras
            Tuner writes no hyperparameters.
    """
    if keras.backend.backend() != "tensorflow":
        raise ArchsearchError(
            f"--tensorboard needs the TensorFlow backend (Keras Tuner records hyperparameters only there); "
            f"this is {keras.backend.backend()}: set KERAS_BACKEND=tensorflow"
        )
    return keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False)


def write_scores(callbacks, scores, step):
    """Adds a trial's scores to the log directory of its TensorBoard callback, if it has one.

    Args:
        callbacks: the trial's callbacks, as Keras Tuner configured them.
        scores: metric name to value, e.g. `{"val_accuracy": 0.98}`.
        step: the epoch the scores belong to.
    """
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.TensorBoard):
            import tensorflow as tf  # only here: TensorBoard logs are TensorFlow's format

            with tf.summary.create_file_writer(os.path.join(callback.log_dir, "validation")).as_default():
                for name, value in scores.items():
                    tf.summary.scalar(name, value, step=step)
