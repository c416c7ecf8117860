"""`report.html`: what a person looks at after a run, one self-contained page.

The page reads the run's files (`trials.csv`, `leaderboard.csv`,
`history.csv`, `run.json`) and draws the figures of `archsearch.output.plots`
into it as PNG data URIs, so it opens offline and can be mailed alone.
The winner's confusion matrix and misclassified images come from its
exported model (`best/model.keras`, the product the run delivers) applied
to the test split as the source stores it: the images a user would feed it.
A run without that model (committed runs keep no weights) or without its
data says so in place of those two figures.
"""

import base64
import datetime
import html
import io

import keras
import numpy as np
import pandas as pd

from archsearch.data import data_summary, load_data
from archsearch.errors import ArchsearchError
from archsearch.files import write_atomic
from archsearch.model.training import predict_classes
from archsearch.output import plots
from archsearch.output.export import (
    MODEL_INT8_TFLITE,
    MODEL_KERAS,
    MODEL_ONNX,
    MODEL_TFLITE,
    SAVED_MODEL,
    stored_dataset,
)
from archsearch.output.summary import (
    cell,
    comparison,
    describe_architecture,
    percent,
    row_name,
    searched_dimensions,
    unranked_caption,
)
from archsearch.recipe import dimensions
from archsearch.recipe.architecture import plan
from archsearch.records.directory import HISTORY, RunDir, wall_seconds
from archsearch.records.history import read_history
from archsearch.records.tables import LATENCY, baselines, front_cost, on_test_front, references

DPI = 100

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0 auto;
       max-width: 1240px; padding: 1em 1.2em 3em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.lead { font-size: 1.1em; } .note { color: #555; } figure { margin: 1em 0; }
img { max-width: 100%; height: auto; display: block; }
.scroll { overflow-x: auto; } table { border-collapse: collapse; font-size: 0.85em; }
th, td { padding: 0.25em 0.35em; border-bottom: 1px solid #e4e4e4; text-align: right; }
td { white-space: nowrap; } th { background: #f4f4f4; vertical-align: bottom; line-height: 1.25; font-size: 0.95em; }
th.group { text-align: center; border-bottom: 1px solid #ccc; } .text { text-align: left; }
.std { display: block; font-size: 0.85em; color: #666; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2em 1em; }
dt { font-weight: 600; } dd { margin: 0; overflow-wrap: anywhere; }
@media (max-width: 640px) {
  body { font-size: 14px; padding: 0.5em; } dl { grid-template-columns: 1fr; } dd { margin-bottom: 0.5em; }
}
"""


def write_report(run_dir, *, stored=None, data_dir=None, log=None):
    """Writes `report.html` into a run directory.

    Args:
        run_dir: a run directory (a `RunDir` or a path) with `trials.csv`,
            `leaderboard.csv` and `run.json`.
        stored: the test data as the source stores it (from
            `archsearch.output.export.stored_dataset()`); loaded from the run's data
            declaration when not given.
        data_dir: a local copy of the data, as for `archsearch run --data-dir`.
        log: called with a line on anything the page had to leave out.

    Returns:
        The path of the report.

    Example:

    ```python
    write_report("results/digits/2026-11-25_02-22-04")
    ```
    """
    run_dir = RunDir(run_dir)
    meta = run_dir.read_run()
    trials = run_dir.read_trials()
    leaderboard = run_dir.read_leaderboard()
    history = read_history(run_dir)
    searched = searched_dimensions(meta, leaderboard)
    winner = leaderboard[leaderboard["rank"] == 1].iloc[0]
    class_names = [str(name) for name in meta["data"]["classes"]]
    unranked = unranked_caption(leaderboard)

    sections = [
        _section(
            "Cost against accuracy",
            _image(plots.cost_figure(trials, leaderboard), "accuracy against parameters and FLOPs"),
            "Every trial's validation accuracy against its size, with the trials' Pareto front (no trial is both "
            "cheaper and more accurate). The retrained architectures are drawn at their test accuracy ± standard "
            "deviation over seeds"
            + (
                ", the references (presets fitted to the data, trained as the winners are) the same way, as open "
                "squares with their names"
                if not references(leaderboard).empty
                else ""
            )
            + (
                "; dashed lines are the baselines' test accuracy."
                if not baselines(leaderboard).empty
                else "; the baselines were left out (their raw pixels would not fit in memory)."
            ),
        ),
        _latency_section(trials, leaderboard),
        _section(
            "What mattered",
            _image(plots.dimension_figure(trials, searched, _ranges(meta)), "validation accuracy by dimension"),
            "Validation accuracy of the completed trials by value of each dimension the space searched; "
            "failed and infeasible trials are counted under each value.",
        ),
        _section(
            "Search progress",
            _image(plots.progress_figure(trials), "best validation accuracy so far"),
            "Each trial's validation accuracy and the best so far, "
            "by trial number and by the trials' summed training time.",
        ),
        _winner_section(run_dir, meta, leaderboard, history, winner, class_names, stored, data_dir, log),
        _section(
            "Leaderboard",
            f'<div class="scroll">{_leaderboard_table(leaderboard, searched)}</div>',
            "Ranked by validation accuracy; the test split was used only to fill in the test columns and pareto "
            f"(the ranked models on the test split's Pareto front of accuracy against {front_cost(leaderboard)}). "
            + (f"{unranked[0].upper()}{unranked[1:]}. " if unranked else "")
            + "Every column is in leaderboard.csv.",
        ),
        _section("The run", _facts(meta), ""),
    ]
    point = _winner_point(winner, meta)
    seeds = f"over {winner['seeds']} seeds" if winner["seeds"] > 1 else "with one seed"
    described = describe_architecture(point, meta.get("transfer"))
    lead = (
        f"Best: {html.escape(described)} (trial {html.escape(str(winner['trial_id']))}): "
        f"test accuracy {percent(winner['test_accuracy'], winner['test_accuracy_std'])}, "
        f"balanced error rate {percent(winner['test_balanced_error_rate'], winner['test_balanced_error_rate_std'])} "
        f"{seeds}, {int(winner['params']):,} parameters."
    )
    against = [comparison(winner, row) for _, row in references(leaderboard).iterrows()]
    if against:
        lead += f" Against the references: {html.escape('; '.join(against))}."
    title = f"archsearch report: {meta['space']['name']}, run {run_dir.name}"
    question = (meta.get("space_file_description") or "").split("\n")[0]
    page = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<link rel="icon" href="data:,">\n<title>{html.escape(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n"
        f'<h1>{html.escape(title)}</h1>\n<p class="note">{html.escape(question)}</p>\n'
        f'<p class="lead">{lead}</p>\n' + "\n".join(sections) + "\n</body>\n</html>\n"
    )
    write_atomic(run_dir.report_html, page)
    return run_dir.report_html


def _latency_section(trials, leaderboard):
    """Test accuracy against measured latency, or a note where the leaderboard has none (older runs)."""
    if front_cost(leaderboard) != LATENCY:
        body = _note(
            f"No latency figure: leaderboard.csv has no {LATENCY} for every retrained model "
            "(a run made before latency was measured). The leaderboard's pareto column counts parameters instead."
        )
        return _section("Latency against accuracy", body, "")
    return _section(
        "Latency against accuracy",
        _image(plots.latency_figure(trials, leaderboard), "test accuracy against latency"),
        "The retrained models' test accuracy ± standard deviation over seeds against their median latency per "
        "image at batch size 1, with the Pareto front among them (the leaderboard's pareto column: no other is "
        "as fast and as accurate, and better in one); faint points are the trials' validation accuracy. The "
        "front is drawn from test figures to show the trade-off, not to choose: archsearch export --pick "
        "fastest chooses by validation accuracy.",
    )


def _ranges(meta):
    """The dimensions the space declared as ranges (`uniform(...)`, `log_uniform(...)`), from run.json."""
    declared = meta["space"].get("dimensions") or {}
    return [name for name, value in declared.items() if str(value).startswith(("uniform(", "log_uniform("))]


def _winner_point(winner, meta):
    """The winner's planned point (`stages` resolved to a number), for describing it in words."""
    if meta.get("transfer"):  # its source's base: no stages of the recipe to resolve
        return dimensions.point_of(winner)
    return plan(dimensions.point_of(winner), tuple(meta["data"]["shape"]), len(meta["data"]["classes"])).point


def _winner_section(run_dir, meta, leaderboard, history, winner, class_names, stored, data_dir, log):
    parts = []
    rows = history[history["trial_id"] == str(winner["trial_id"])]
    if len(rows):
        parts.append(
            _figure(
                _image(plots.curves_figure(rows), "the winner's training curves"),
                "Training loss and accuracy per epoch, measured on the training batches: the search trial "
                "(train split), then each retraining seed from scratch (train and validation splits).",
            )
        )
    else:
        parts.append(_note(f"No per-epoch history: {HISTORY} is missing (runs made before it was recorded)."))
    predictions = _winner_predictions(run_dir, meta, stored, data_dir)
    if isinstance(predictions, str):
        if log:
            log(f"report: no confusion matrix or misclassified images: {predictions}")
        parts.append(_note(f"No confusion matrix or misclassified images: {predictions}."))
    else:
        images, labels, predicted = predictions
        right = int(np.sum(labels == predicted))
        parts.append(
            _figure(
                _image(plots.confusion_figure(labels, predicted, class_names), "confusion matrix"),
                f"The exported model (best/model.keras: rank 1, seed 0) on the {len(labels):,} test images: "
                f"{right:,} right ({right / len(labels):.2%}). Rows are true classes, columns predicted ones.",
            )
        )
    parts.append(
        _figure(
            _image(plots.recall_figure(leaderboard, class_names), "per-class recall"),
            "Per-class recall on the test split: rank 1, mean over its seeds"
            + "".join(
                f", the {kind}'"
                for kind, rows in (("references", references(leaderboard)), ("baselines", baselines(leaderboard)))
                if not rows.empty
            )
            + ".",
        )
    )
    if not isinstance(predictions, str):
        grid = plots.misclassified_figure(images, labels, predicted, class_names)
        wrong = int(np.sum(labels != predicted))
        if grid is None:
            parts.append(_note(f"The exported model classifies all {len(labels):,} test images right: none to show."))
        else:
            parts.append(
                _figure(
                    _image(grid, "misclassified test images"),
                    "Misclassified test images, true class → predicted class: "
                    f"the first {min(wrong, 32)} of {wrong}, in test order.",
                )
            )
    return _section("The winner", "\n".join(parts), "")


def _winner_predictions(run_dir, meta, stored, data_dir):
    """Returns (test images, labels, predicted classes) of the exported winner, or why there are none."""
    model_path = run_dir.best / MODEL_KERAS
    if not model_path.is_file():
        return f"{model_path} is missing (a committed run keeps no weights; `archsearch export` or a rerun makes it)"
    if stored is None:
        declaration = run_dir.data()
        try:
            dataset = load_data(declaration, data_dir=data_dir)
        except ArchsearchError as error:
            return f"the test data could not be loaded ({error}); pass --data-dir"
        found, recorded = data_summary(dataset)["fingerprint"], meta["data"].get("fingerprint")
        if found != recorded:
            source = data_summary(dataset)["source"]
            return f"the data found ({source}, fingerprint {found}) is not this run's (fingerprint {recorded})"
        stored = stored_dataset(declaration, dataset, data_dir=data_dir)
    predicted = predict_classes(keras.saving.load_model(model_path), stored.x_test)
    return stored.x_test, np.asarray(stored.y_test), predicted


def _leaderboard_table(leaderboard, searched):
    """The leaderboard as an HTML table that fits a 1280 px window.

    Columns are grouped under two-row headers (what the space searched,
    the test figures over seeds, the cost), headers wrap (a dimension's name
    after its underscores), a standard deviation sits under its mean and
    FLOPs are given to 3 significant digits; the CSV keeps every digit.
    """

    def plain(values):
        return values.map(lambda value: html.escape(str(value)))

    def optional(column, form):
        return plain(leaderboard[column].map(lambda value: "" if pd.isna(value) else form(value)))

    groups = [
        (None, [("rank", plain(leaderboard["rank"].astype("string").fillna("")))]),
        (None, [("trial", plain(leaderboard["trial_id"].map(row_name)))]),
        ("searched", [(name, plain(leaderboard[name].map(cell))) for name in searched]),
        (None, [("val accuracy", plain(leaderboard["val_accuracy"].map(percent)))]),
        (
            "test, mean ± std over seeds",
            [
                ("accuracy", _mean_and_std(leaderboard, "test_accuracy")),
                ("balanced error rate", _mean_and_std(leaderboard, "test_balanced_error_rate")),
                ("seeds", plain(leaderboard["seeds"].astype("string").fillna(""))),
            ],
        ),
        (
            "cost",
            [
                ("params", optional("params", lambda value: f"{int(value):,}")),
                ("FLOPs", optional("flops", _short_count)),
                *(
                    [("latency ms", optional(LATENCY, lambda value: f"{float(value):.3g}"))]
                    if LATENCY in leaderboard.columns and leaderboard[LATENCY].notna().any()
                    else []
                ),
            ],
        ),
        (None, [("pareto", plain(on_test_front(leaderboard).map({True: "yes", False: "no"}).fillna("")))]),
        (None, [("train s", optional("train_seconds", lambda value: f"{float(value):.0f}"))]),
    ]
    groups = [(title, columns) for title, columns in groups if columns]
    text = {"trial", *(name for name in searched if dimensions.BY_NAME[name].kind in (str, bool))}

    def align(name):
        return ' class="text"' if name in text else ""

    def header(name):
        return f"<th{align(name)}>{'_<wbr>'.join(html.escape(part) for part in name.split('_'))}</th>"

    top, bottom = [], []
    for title, columns in groups:
        top.append(f'<th colspan="{len(columns)}" class="group">{html.escape(title)}</th>' if title else "<th></th>")
        bottom.extend(header(name) for name, _ in columns)
    columns = [column for _, group in groups for column in group]
    rows = [
        "<tr>" + "".join(f"<td{align(name)}>{values.iloc[i]}</td>" for name, values in columns) + "</tr>"
        for i in range(len(leaderboard))
    ]
    head = f"<thead>\n<tr>{''.join(top)}</tr>\n<tr>{''.join(bottom)}</tr>\n</thead>"
    return f'<table class="leaderboard">\n{head}\n<tbody>\n' + "\n".join(rows) + "\n</tbody>\n</table>"


def _mean_and_std(leaderboard, column):
    """A column's mean over seeds as a percentage, its standard deviation (points) under it, as HTML cells."""
    return pd.Series(
        [
            html.escape(percent(mean)) + ("" if pd.isna(std) else f'<span class="std">± {100 * float(std):.2f}</span>')
            for mean, std in zip(leaderboard[column], leaderboard[f"{column}_std"])
        ],
        index=leaderboard.index,
    )


def _short_count(value):
    """A count to 3 significant digits with k, M or G: `3.58M`; plain below a thousand.

    Example:

    >>> _short_count(3580544), _short_count(84128), _short_count(650)
    ('3.58M', '84.1k', '650')
    """
    for power, suffix in ((9, "G"), (6, "M"), (3, "k")):
        if abs(value) >= 10**power:
            return f"{value / 10**power:.3g}{suffix}"
    return f"{int(value)}"


def _facts(meta):
    data = meta["data"]
    shape = " × ".join(map(str, data["shape"]))
    facts = {
        "space": f"{meta['space']['name']} (fingerprint {meta.get('space_fingerprint', '?')})",
        "searched": ", ".join(meta.get("searched") or []) or "see the space",
        "search": _settings(meta["space"]["search"]),
        "retraining": _settings(meta["space"]["retrain"]),
        "data": f"{data['source']}: {', '.join(f'{k} {v:,}' for k, v in data['counts'].items())} images of "
        f"{shape}, classes {', '.join(map(str, data['classes']))} (fingerprint {data.get('fingerprint', '?')})",
        **({"transfer": _transfer_words(meta["transfer"])} if meta.get("transfer") else {}),
        "command": " ".join(meta.get("command") or []),
        "started": _time(meta.get("started")),
        "wall time": _minutes(wall_seconds(meta)),
        "search, retraining": f"{_minutes(meta.get('search_seconds'))}, {_minutes(meta.get('retrain_seconds'))}",
        "device": f"{meta.get('device', '')}; backend {meta.get('backend', '')}, {meta.get('precision', 'float32')}",
        "versions": ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items() if v)
        + f", python {meta.get('python', '')}",
        "export check": _export_check(meta.get("export_check")),
        "status": meta.get("status", ""),
        "report written": _time(datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")),
    }
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts.items())
    return f"<dl>{items}</dl>"


def _transfer_words(transfer):
    """Where a transferred run's base came from, in words (run.json's `transfer`)."""
    words = f"{transfer['base']} base ({transfer['base_params']:,} parameters, up to layer {transfer['features']})"
    if transfer["kind"] == "run":
        data = transfer["data"]
        return (
            f"{words} of run {transfer['run']}, trial {transfer['trial_id']}: trained on {data['source']}'s "
            f"{transfer['splits']['train_split']} split, classes {', '.join(map(str, data['classes']))} "
            f"(fingerprint {data['fingerprint']}), test accuracy {transfer['test_accuracy']:.2%}"
        )
    return f"{words} from {transfer['source']}" + (
        f", weights {transfer['weights']}" if transfer.get("weights") else ""
    )


def _settings(settings):
    """A space's settings in words, the unset ones left out.

    Example:

    >>> _settings({"tuner": "random", "max_trials": 8, "max_params": None, "max_flops": 2000000,
    ...     "references": ["resnet20", "vgg11"], "within": 0.5})
    'tuner random, max_trials 8, max_flops 2,000,000, references (resnet20, vgg11), within 0.5'
    """

    def value(setting):
        if isinstance(setting, bool) or not isinstance(setting, (int, float, list, tuple)):
            return str(setting)
        if isinstance(setting, (list, tuple)):
            return f"({', '.join(map(value, setting))})"
        return f"{setting:,}" if isinstance(setting, int) else f"{setting:g}"

    return ", ".join(f"{name} {value(setting)}" for name, setting in settings.items() if setting is not None)


# The export check's figure of each file: `model.onnx` is `model_onnx_test_accuracy` in run.json.
CHECKED_FILES = {
    f"{name.replace('.', '_')}_test_accuracy": name
    for name in (MODEL_KERAS, SAVED_MODEL, MODEL_ONNX, MODEL_TFLITE, MODEL_INT8_TFLITE)
}


def _export_check(check):
    """The export check in words: the figure it checks and each reloaded file's, as percentages.

    Example:

    >>> print(_export_check({"test_images": 360, "expected_test_accuracy": 0.99722,
    ...     "model_keras_test_accuracy": 0.99722, "saved_model_test_accuracy": 0.99722}))
    360 test images: seed 0's model 99.72%, as its retraining measured; reloaded, model.keras 99.72%, saved_model 99.72%
    """
    if not check:
        return "not recorded"
    files = [
        f"{CHECKED_FILES.get(key, key.removesuffix('_test_accuracy'))} {accuracy:.2%}"
        for key, accuracy in check.items()
        if key.endswith("_test_accuracy") and key != "expected_test_accuracy"
    ]
    return (
        f"{check['test_images']:,} test images: seed 0's model {check['expected_test_accuracy']:.2%}, "
        f"as its retraining measured; reloaded, {', '.join(files)}"
    )


def _time(stamp):
    """An ISO time from run.json as a person reads it: `2026-12-01 16:12:19 UTC`."""
    if not stamp:
        return ""
    moment = datetime.datetime.fromisoformat(stamp).astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _minutes(seconds):
    return "" if seconds is None else f"{seconds / 60:.1f} min"


def _image(figure, alt):
    """Renders a figure as an `<img>` with a PNG data URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}">'


def _figure(image, caption):
    return f'<figure>{image}<figcaption class="note">{html.escape(caption)}</figcaption></figure>'


def _note(text):
    return f'<p class="note">{html.escape(text)}</p>'


def _section(title, body, caption):
    text = f'<p class="note">{html.escape(caption)}</p>\n' if caption else ""
    return f"<section>\n<h2>{html.escape(title)}</h2>\n{text}{body}\n</section>"
