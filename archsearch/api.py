"""archsearch from Python: `run()` a space as `archsearch run` does, `load_run()` a finished one, read its `Run`.

The command line and these functions share everything below them: the same
run directories, resume, lock, progress lines and files. Errors are
archsearch's own exceptions (`archsearch.errors`) with the messages the
command line prints; nothing here exits the process.

Example:

```python
import archsearch

run = archsearch.run("digits", max_trials=2, epochs=1, top_k=1, retrain_epochs=1, seeds=1)
run.leaderboard  # a pandas DataFrame
archsearch.load_run("results/digits").best_model()  # the latest complete run's exported Keras model
```
"""

import base64
import html.parser
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from archsearch.errors import ArchsearchError, SpaceError
from archsearch.output.native_logs import filter_native_logs
from archsearch.records.directory import RunDir, resolve_run
from archsearch.records.tables import typed

PNG_URI = "data:image/png;base64,"  # how report.html holds its figures (`archsearch.output.report`)


def run(
    space,
    *,
    results=None,
    resume=False,
    overwrite=False,
    data_dir=None,
    tensorboard=False,
    mixed_precision=False,
    tuner=None,
    max_trials=None,
    epochs=None,
    top_k=None,
    retrain_epochs=None,
    seeds=None,
    seed=None,
    log=print,
):
    """Runs a space as `archsearch run` does: search, retrain, test, write results, export; returns its `Run`.

    Args:
        space: a `Space`, a space file's path (`"my_space.py"`)
            or a bundled space's name.
        results: use exactly this run directory (`--results`; default: a
            new one, `results/<space name>/<run id>`).
        resume: continue a run (`--resume`): `True` continues `results`,
            else the space's most recent unfinished run; a path continues
            that run.
        overwrite: start the run that `results` names over (`--overwrite`).
        data_dir: a local image folder, archive or `.npz` to read instead
            of the space's source (`--data-dir`).
        tensorboard: also write TensorBoard logs to `<run>/tensorboard`.
        mixed_precision: compute in bfloat16, keep weights in float32.
        tuner, max_trials, epochs, top_k, retrain_epochs, seeds, seed: the
            command line's overrides of the space's values; `None` keeps
            the space's. Several workers (`--workers`, `--chief`) are the
            command line's only.
        log: where the run's lines go (default: `print`): its data, each
            trial and retraining, the leaderboard and the headline. Each
            training's epoch lines go to standard output
            (`archsearch.output.progress`).

    Returns:
        The finished run's `Run`.

    Raises:
        ArchsearchError: (or a subclass: `SpaceError`, `DataError`, ...)
            with the one-line message the command line prints.

    Example:

    ```python
    run = archsearch.run("digits", max_trials=2, epochs=1, top_k=1, retrain_epochs=1, seeds=1)
    print(run.leaderboard[["rank", "trial_id", "test_accuracy"]])
    ```
    """
    _quiet_tensorflow()
    from archsearch.model.backend import configure_backend
    from archsearch.pipeline.runner import apply_overrides
    from archsearch.pipeline.runner import run as run_space
    from archsearch.recipe.space import Space, load_space

    if isinstance(space, (str, Path)):
        space = load_space(space)
    elif not isinstance(space, Space):
        raise SpaceError(f"space={space!r}: expected a Space, a space file's path or a bundled space's name")
    configure_backend(mixed_precision=mixed_precision)
    space = apply_overrides(
        space,
        tuner=tuner,
        max_trials=max_trials,
        epochs=epochs,
        top_k=top_k,
        retrain_epochs=retrain_epochs,
        seeds=seeds,
        seed=seed,
    )
    leaderboard = run_space(
        space, results, data_dir=data_dir, resume=resume, overwrite=overwrite, tensorboard=tensorboard, log=log
    )
    return Run(leaderboard.attrs["run"])


def load_run(path, *, log=None):
    """Returns the `Run` of a finished run, as `archsearch leaderboard PATH` finds it.

    Args:
        path: a run directory, or a space's folder such as `results/digits`
            (its most recent complete run).
        log: called with a line naming the run chosen for a space's folder.

    Returns:
        A `Run`.

    Raises:
        ArchsearchError: if `path` is neither a run nor holds a complete one.

    Example:

    >>> run = load_run("results/digits")
    >>> run.status
    'complete'
    >>> int(run.leaderboard.loc[0, "rank"])
    1
    """
    return Run(resolve_run(path, log=log).path)


class Run:
    """A run directory, read: its tables as pandas DataFrames, its exported model, its report.

    The tables are read from the run's CSVs when asked for, so a `Run` of a
    run still going shows what it has written so far.

    Args:
        path: the run directory, e.g. `results/digits/2026-12-01_18-44-11`.

    Raises:
        ArchsearchError: if `path` holds no run (no `run.json`).

    Example:

    >>> run = load_run("results/digits")
    >>> run.path.parent.name
    'digits'
    >>> {"rank", "trial_id", "test_accuracy"} <= set(run.leaderboard.columns)
    True
    >>> "val_accuracy" in run.trials.columns
    True
    """

    def __init__(self, path):
        self._dir = RunDir(path)
        if not self._dir.is_run():
            raise ArchsearchError(f"{self._dir}: not a run directory (no run.json)")

    @property
    def path(self):
        """The run directory, a `pathlib.Path`."""
        return self._dir.path

    @property
    def meta(self):
        """`run.json`: the space, the data, the status, times, versions, the export check (a dict)."""
        return self._dir.read_run()

    @property
    def status(self):
        """How far the run got: `searching`, ..., `complete` (`run.json`'s `status`)."""
        return self._dir.status()

    @property
    def leaderboard(self):
        """`leaderboard.csv`: one row per retrained architecture, reference and baseline, best first.

        Raises:
            ArchsearchError: if the run has no leaderboard yet.
        """
        return self._dir.read_leaderboard()

    @property
    def trials(self):
        """`trials.csv`: one row per search trial, its point, status, costs and validation accuracy.

        In the nullable dtypes `leaderboard` has (`Int64`, `Float64`, `boolean`, `string`), each column's own.
        """
        if not self._dir.trials_csv.is_file():
            raise ArchsearchError(f"{self._dir.trials_csv}: no trials here yet")
        return typed(self._dir.read_trials().convert_dtypes())

    @property
    def history(self):
        """`history.csv`: the loss and accuracy of every epoch of every training (empty if none)."""
        _quiet_tensorflow()
        from archsearch.records.history import read_history  # here: its module imports Keras

        return read_history(self._dir)

    @property
    def report_path(self):
        """`report.html`, the run's page (a `pathlib.Path`; written when the run completes)."""
        return self._dir.report_html

    def best_model(self):
        """Loads the exported winner, `best/model.keras`: uint8 images of any size in, class probabilities out.

        Returns:
            A `keras.Model`.

        Raises:
            ArchsearchError: if the run has no export.
        """
        _quiet_tensorflow()
        import keras

        from archsearch.output.export import MODEL_KERAS
        from archsearch.output.predict import export_folder

        return keras.saving.load_model(export_folder(self._dir) / MODEL_KERAS)

    def predict(self, images, *, batch_size=256):
        """Classifies images with the exported winner, as `archsearch predict` does.

        Args:
            images: uint8 images as the data source stores them, an array
                `(N, H, W)` or `(N, H, W, C)` (any size: the model resizes);
                or image files, folders or archives (a path or a list of
                them).
            batch_size: images per prediction call.

        Returns:
            A DataFrame with one row per image: `class_name`, `class_id`,
            then `probability_<class>` for every class; for files, indexed
            by `path` (unreadable files are reported through `print` and
            left out).

        Raises:
            ArchsearchError: if the run has no export, or the images do not fit it.

        Example:

        ```python
        run.predict(x_test[:5])
        ```
        """
        _quiet_tensorflow()
        if isinstance(images, (str, Path)) or (isinstance(images, (list, tuple)) and _all_paths(images)):
            return self._predict_files([images] if isinstance(images, (str, Path)) else list(images), batch_size)
        return self._predict_arrays(np.asarray(images), batch_size)

    def _predict_arrays(self, images, batch_size):
        import keras

        from archsearch.files import read_json
        from archsearch.output.export import MODEL_JSON, MODEL_KERAS
        from archsearch.output.predict import export_folder

        folder = export_folder(self._dir)
        contract = read_json(folder / MODEL_JSON)
        names, channels = contract["class_names"], contract["input"]["channels"]
        if images.ndim == 3 and channels == 1:
            images = images[..., None]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != channels:
            raise ArchsearchError(
                f"predict: images of dtype {images.dtype} and shape {images.shape}; this model takes uint8 "
                f"[N, height, width, {channels}] ({contract['input']['color']}), as the data source stores them"
            )
        model = keras.saving.load_model(folder / MODEL_KERAS)
        probabilities = np.asarray(model.predict(images, batch_size=batch_size, verbose=0))
        class_ids = probabilities.argmax(axis=1)
        return pd.DataFrame(
            {
                "class_name": [names[i] for i in class_ids],
                "class_id": class_ids,
                **{f"probability_{name}": probabilities[:, i] for i, name in enumerate(names)},
            }
        )

    def _predict_files(self, paths, batch_size):
        from archsearch.output.predict import predict

        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "predictions.csv"
            predict(self._dir, paths, out, batch_size=batch_size, log=print)
            return pd.read_csv(out, index_col="path")

    def figures(self):
        """The figures of `report.html`, in the page's order; each shows itself in a notebook.

        Returns:
            A list of `ReportFigure`s (`.title`, `.png`).

        Raises:
            ArchsearchError: if the run has no report yet.
        """
        if not self.report_path.is_file():
            raise ArchsearchError(f"{self.report_path}: no report here yet; the run writes it when it completes")
        images = _Images()
        images.feed(self.report_path.read_text())
        return [
            ReportFigure(attributes.get("alt") or "", base64.b64decode(attributes["src"].removeprefix(PNG_URI)))
            for attributes in images.found
            if (attributes.get("src") or "").startswith(PNG_URI)
        ]

    def __repr__(self):
        return f"Run({str(self.path)!r}, status={self.status!r})"

    def __eq__(self, other):
        return isinstance(other, Run) and self.path == other.path

    def __hash__(self):
        return hash(self.path)


class ReportFigure:
    """A figure of a run's report: its title (the page's alt text) and PNG bytes.

    A notebook shows it as an image (`_repr_png_`); `save()` writes the PNG.

    Args:
        title: what it shows, e.g. `"accuracy against parameters and FLOPs"`.
        png: the PNG file's bytes.
    """

    def __init__(self, title, png):
        self.title, self.png = title, png

    def _repr_png_(self):
        return self.png

    def save(self, path):
        """Writes the PNG to `path`."""
        Path(path).write_bytes(self.png)

    def __repr__(self):
        return f"ReportFigure({self.title!r}, {len(self.png):,} bytes of PNG)"


class _Images(html.parser.HTMLParser):
    """Collects the attributes of a page's `<img>` tags (`found`), entities decoded."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.found.append(dict(attrs))


def _quiet_tensorflow():
    """Keeps TensorFlow's native log lines off descriptor 2 (`filter_native_logs()`) from before it is imported.

    Jupyter shows what a kernel writes to its descriptor 2 in the cells, and TensorFlow's C++ start-up and
    SavedModel lines would fill them; the command line filters the same lines off the terminal. Called by what
    imports TensorFlow, so that reading a run's CSVs leaves the process's standard error as it was.
    """
    filter_native_logs()


def _all_paths(items):
    return bool(items) and all(isinstance(item, (str, Path)) for item in items)
