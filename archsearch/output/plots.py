"""The report's figures, drawn with matplotlib from a run's tables.

Each function takes DataFrames or arrays and returns a `matplotlib.figure.Figure`
(no pyplot, so no global state and no display is needed). Accuracies are
fractions in the tables and percentages on the axes.
"""

import dataclasses
import itertools

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.path import Path
from matplotlib.ticker import FuncFormatter, PercentFormatter
from matplotlib.transforms import Bbox
from sklearn.metrics import ConfusionMatrixDisplay

from archsearch.records import tables

TRIAL_COLOR, RETRAINED_COLOR, FRONT_COLOR, BASELINE_COLOR = "#4c72b0", "#c44e52", "#55a868", "#777777"
REFERENCE_COLOR = "#8172b3"
STATUS_MARKERS = {"failed": "x", "infeasible": "+"}


def _percent_axis(axis):
    axis.yaxis.set_major_formatter(PercentFormatter(1.0))
    axis.grid(True, alpha=0.3)


def cost_figure(trials, leaderboard):
    """Validation accuracy against parameters and against FLOPs, the Pareto front marked.

    Retrained architectures are drawn at their test accuracy ± std over
    seeds, and the references (`reference:<preset>` rows) the same way with
    a marker of their own and their name; the notes' baselines' test
    accuracies are horizontal lines. Labels are placed where they cover no
    point, line or other label (`_place_labels()`), and the legend goes under
    the axes.
    """
    figure = Figure(figsize=(11, 4.6), layout="constrained")
    completed = trials[trials["status"] == "completed"].astype({"params": float, "flops": float, "val_accuracy": float})
    ranked = leaderboard[~leaderboard["baseline"].astype(bool)]
    baselines = tables.baselines(leaderboard).sort_values("test_accuracy")
    labels = {}
    for axis, cost, label in zip(figure.subplots(1, 2), ("params", "flops"), ("parameters", "FLOPs per image")):
        axis.scatter(
            completed[cost],
            completed["val_accuracy"],
            s=22,
            color=TRIAL_COLOR,
            alpha=0.7,
            label="trial (validation accuracy)",
        )
        front = completed[tables.pareto_front(completed[cost], completed["val_accuracy"])].sort_values(cost)
        axis.plot(
            *_steps(front[cost], front["val_accuracy"]),
            color=FRONT_COLOR,
            linewidth=1.5,
            label="Pareto front of the trials",
        )
        labels[axis] = _retrained_and_references(axis, ranked, tables.references(leaderboard), cost)
        for position, (_, row) in enumerate(baselines.iterrows()):
            name = str(row["trial_id"]).removeprefix(tables.BASELINE).replace("_", " ")
            accuracy = float(row["test_accuracy"])
            # One legend entry says what the dashed lines are, so that their labels can be short.
            legend = {"label": "baseline (test accuracy)"} if position == 0 else {}
            axis.axhline(accuracy, color=BASELINE_COLOR, linestyle="--", linewidth=1, **legend)
            labels[axis].append(_Label(f"{name} {100 * accuracy:.1f}%", (0.0, accuracy), BASELINE_COLOR, True))
        axis.set_xscale("log")
        # Room for a label right of the largest point: a reference's name is longer than a rank.
        axis.margins(x=0.08 if tables.references(leaderboard).empty else 0.2)
        axis.tick_params(axis="x", which="both", labelrotation=30, labelsize=8)  # a narrow range labels minor ticks
        axis.set_xlabel(label)
        axis.set_ylabel("accuracy")
        _percent_axis(axis)
    handles, names = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, names, fontsize=8, loc="outside lower center", ncols=len(names))
    _place_labels(figure, labels)
    return figure


def latency_figure(trials, leaderboard):
    """Test accuracy against measured latency (log scale) of the retrained models, their Pareto front drawn.

    The front is the leaderboard's `pareto` column (test accuracy against
    latency); the trials' validation accuracies are drawn faintly behind, where
    trials.csv measures latency too, and the references where they have it.
    Needs `latency_ms` for every ranked row (`tables.front_cost()`).
    """
    figure = Figure(figsize=(11, 4.6), layout="constrained")
    axis = figure.subplots()
    latency = tables.LATENCY
    if latency in trials.columns:
        completed = trials[(trials["status"] == "completed") & trials[latency].notna()]
        axis.scatter(
            completed[latency].astype(float),
            completed["val_accuracy"].astype(float),
            s=16,
            color=TRIAL_COLOR,
            alpha=0.3,
            label="trial (validation accuracy)",
        )
    ranked = leaderboard[~leaderboard["baseline"].astype(bool)]
    front = ranked[tables.on_test_front(leaderboard)[ranked.index].to_numpy(bool)].sort_values(latency)
    axis.plot(
        *_steps(front[latency].astype(float), front["test_accuracy"].astype(float)),
        color=FRONT_COLOR,
        linewidth=1.5,
        label="Pareto front of the retrained models (test)",
    )
    references = tables.references(leaderboard)
    references = references[references[latency].notna()] if latency in references.columns else references.iloc[:0]
    labels = _retrained_and_references(axis, ranked, references, latency)
    axis.set_xscale("log")
    axis.margins(x=0.08 if references.empty else 0.2)
    low, high = axis.get_xlim()
    if not front.empty:  # the front's last step runs on to the right edge: all it dominates lies under it
        axis.hlines(float(front["test_accuracy"].iloc[-1]), float(front[latency].iloc[-1]), high, color=FRONT_COLOR)
        axis.set_xlim(low, high)
    # Milliseconds as plain numbers (0.2, 1, 3); of the minor ticks, 2, 3 and 5 times a power of ten are
    # labelled, or every one where the axis spans less than a decade (it may have no major tick).
    labelled = "123456789" if high / low < 10 else "235"
    axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.xaxis.set_minor_formatter(
        FuncFormatter(lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in labelled else "")
    )
    axis.tick_params(axis="x", which="both", labelsize=8)
    axis.set_xlabel("median latency per image, batch 1 (ms)")
    axis.set_ylabel("accuracy")
    _percent_axis(axis)
    figure.legend(fontsize=8, loc="outside lower center", ncols=4)
    _place_labels(figure, {axis: labels})
    return figure


def _retrained_and_references(axis, ranked, references, cost):
    """Draws the retrained models and the references at their test accuracy ± std against `cost`.

    Returns:
        Their labels (`_Label`s), for `_place_labels()`.
    """
    axis.errorbar(
        ranked[cost].astype(float),
        ranked["test_accuracy"].astype(float),
        yerr=ranked["test_accuracy_std"].astype(float),
        fmt="D",
        color=RETRAINED_COLOR,
        capsize=3,
        label="retrained (test accuracy ± std)",
    )
    labels = [
        _Label(f"rank {row['rank']}", (float(row[cost]), float(row["test_accuracy"])), RETRAINED_COLOR)
        for _, row in ranked.iterrows()
    ]
    if references.empty:
        return labels
    axis.errorbar(
        references[cost].astype(float),
        references["test_accuracy"].astype(float),
        yerr=references["test_accuracy_std"].astype(float),
        fmt="s",
        markersize=7,
        markerfacecolor="none",
        markeredgewidth=1.5,
        color=REFERENCE_COLOR,
        capsize=3,
        label="reference preset (test accuracy ± std)",
    )
    return labels + [
        _Label(
            str(row["trial_id"]).removeprefix(tables.REFERENCE),
            (float(row[cost]), float(row["test_accuracy"])),
            REFERENCE_COLOR,
        )
        for _, row in references.iterrows()
    ]


def _steps(x, y):
    """The vertices of a step line that holds each `y` until the next `x` (as `step(where="post")` draws it).

    Drawn as a plain line, so that `_place_labels()` sees the path as drawn.

    Example:

    >>> [list(v) for v in _steps([1, 2, 3], [0.5, 0.7, 0.9])]
    [[1, 2, 2, 3, 3], [0.5, 0.5, 0.7, 0.7, 0.9]]
    """
    x, y = list(x), list(y)
    xs, ys = x[:1], y[:1]
    for next_x, next_y in zip(x[1:], y[1:]):
        xs += [next_x, next_x]
        ys += [ys[-1], next_y]
    return xs, ys


@dataclasses.dataclass
class _Label:
    """A label to place: its text, the point it names (data coordinates) and its color.

    `along_line`: a baseline's label, which names a horizontal line at the
    point's y (its x is not used): it may go anywhere along it, just above or below.
    """

    text: str
    point: tuple
    color: str
    along_line: bool = False


# Where a label may go, in points from its point, nearest first: beside, then diagonally, above, below, further out.
POINT_OFFSETS = [
    (dx * scale, dy * scale, ha, va)
    for scale in (1, 2, 3)
    for dx, dy, ha, va in (
        (6, 0, "left", "center"),
        (-6, 0, "right", "center"),
        (6, -3, "left", "top"),
        (6, 3, "left", "bottom"),
        (-6, 3, "right", "bottom"),
        (-6, -3, "right", "top"),
        (0, 7, "center", "bottom"),
        (0, -7, "center", "top"),
    )
]
LINE_OFFSETS = [  # a baseline's label: along its line (axes fractions), just above or below it, in points
    (x, dy, "left" if x < 0.5 else "right" if x > 0.5 else "center", va)
    for x in (0.01, 0.99, 0.1, 0.9, 0.25, 0.75, 0.4, 0.6, 0.5)
    for dy, va in ((2, "bottom"), (-2, "top"))
]


def _place_labels(figure, labels):
    """Adds each axis's labels where they cover no plotted point, line, bar or earlier label, inside the axes.

    The figure's layout is settled first and then fixed, so that the places
    found are the ones drawn. A label with no free place takes the one that
    covers the fewest things inside the axes.

    Args:
        figure: the figure, drawn but for its labels.
        labels: `{axis: [_Label, ...]}`, placed in order.
    """
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw_without_rendering()
    figure.set_layout_engine("none")
    for axis, items in labels.items():
        obstacles, bounds, placed = _obstacles(axis), axis.get_window_extent(renderer), []
        for label in items:
            best = None
            for dx, dy, ha, va in LINE_OFFSETS if label.along_line else POINT_OFFSETS:
                text = axis.annotate(
                    label.text,
                    (dx, label.point[1]) if label.along_line else label.point,
                    xycoords=("axes fraction", "data") if label.along_line else "data",
                    textcoords="offset points",
                    xytext=(0, dy) if label.along_line else (dx, dy),
                    ha=ha,
                    va=va,
                    fontsize=8,
                    color=label.color,
                    annotation_clip=False,
                )
                box = text.get_window_extent(renderer).padded(1)
                inside = bounds.contains(box.x0, box.y0) and bounds.contains(box.x1, box.y1)
                # Cut off by the axes is worse than covering another label, which is worse than crossing a line.
                covered = sum(_covers(box, obstacle) for obstacle in obstacles) + (0 if inside else 100)
                covered += 10 * sum(box.overlaps(other) for other in placed)
                if best is None or covered < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (covered, text, box)
                else:
                    text.remove()
                if covered == 0:
                    break
            placed.append(best[2])


def _obstacles(axis):
    """What a label must not cover in an axis, in display coordinates: point boxes, line paths and bars."""
    found = []
    for collection in axis.collections:
        if isinstance(collection, LineCollection):  # error bars; a model of one seed has none (its std is blank)
            transform = collection.get_transform()
            found.extend(Path(transform.transform(segment)) for segment in collection.get_segments() if len(segment))
        elif len(collection.get_offsets()):  # a scatter: a box per point, its marker's size
            centers = collection.get_offset_transform().transform(collection.get_offsets())
            sizes = np.broadcast_to(collection.get_sizes(), len(centers))
            for (x, y), size in zip(centers, sizes):
                radius = np.sqrt(size) * axis.figure.dpi / 72 / 2
                found.append(Bbox([[x - radius, y - radius], [x + radius, y + radius]]))
    for line in axis.lines:
        vertices = line.get_transform().transform(line.get_xydata())
        if line.get_linestyle() not in ("None", "none", "", " ") and len(vertices) > 1:
            found.append(Path(vertices))
        if line.get_marker() not in (None, "None", "none", "", " "):
            radius = line.get_markersize() * axis.figure.dpi / 72 / 2
            found.extend(Bbox([[x - radius, y - radius], [x + radius, y + radius]]) for x, y in vertices)
    found.extend(patch.get_window_extent() for patch in axis.patches)
    return found


def _covers(box, obstacle):
    """Whether a label's box covers an obstacle: a box it overlaps, or a path that crosses or enters it."""
    if isinstance(obstacle, Bbox):
        return box.overlaps(obstacle)
    return obstacle.intersects_bbox(box, filled=False) or box.count_contains(obstacle.vertices) > 0


def dimension_figure(trials, searched, continuous=()):
    """Validation accuracy by value of each searched dimension, failed and infeasible trials counted per value.

    A dimension with a few values gets a box per value with the trials as
    points over it; a continuous one (a learning rate, say) a scatter plot.

    Args:
        trials: the run's `trials.csv`.
        searched: the dimensions the space searched.
        continuous: those of them drawn from a range rather than a few choices.
    """
    columns = min(3, max(1, len(searched)))
    rows = -(-len(searched) // columns) or 1
    figure = Figure(figsize=(11, 3.1 * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    rng = np.random.default_rng(0)
    for axis, name in zip(axes, searched):
        completed = trials[trials["status"] == "completed"]
        if name in continuous:
            axis.scatter(
                completed[name].astype(float), completed["val_accuracy"].astype(float), s=18, color=TRIAL_COLOR
            )
            others = trials[trials["status"] != "completed"]
            if (trials[name].astype(float) > 0).all():
                axis.set_xscale("log")
                # A narrow range labels minor ticks too.
                axis.tick_params(axis="x", which="both", labelrotation=30, labelsize=8)
            failed = ", ".join(
                f"{(others['status'] == s).sum()} {s}" for s in STATUS_MARKERS if (others["status"] == s).any()
            )
            axis.set_xlabel(name + (f" ({failed})" if failed else ""))
        else:
            values = sorted(trials[name].astype(str).unique(), key=_value_order)
            groups = [completed.loc[completed[name].astype(str) == v, "val_accuracy"].astype(float) for v in values]
            axis.boxplot(
                [g for g in groups],
                positions=range(len(values)),
                widths=0.5,
                showfliers=False,
                medianprops={"color": TRIAL_COLOR},
            )
            for position, group in enumerate(groups):
                axis.scatter(
                    position + rng.uniform(-0.12, 0.12, len(group)), group, s=14, color=TRIAL_COLOR, alpha=0.7, zorder=3
                )
            labels = []
            for value in values:
                counts = trials.loc[trials[name].astype(str) == value, "status"].value_counts()
                notes = [f"{counts[s]} {s}" for s in STATUS_MARKERS if counts.get(s, 0)]
                labels.append(value + ("\n" + ", ".join(notes) if notes else ""))
            axis.set_xticks(range(len(values)), labels, fontsize=8)
            axis.set_xlabel(name)
        axis.set_ylabel("validation accuracy")
        _percent_axis(axis)
    for axis in axes[len(searched) :]:
        axis.set_visible(False)
    return figure


def _value_order(value):
    """Sorts numbers numerically before words: 8, 16, 32, auto."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def progress_figure(trials):
    """The best validation accuracy so far, against trial number and against the trials' training time."""
    figure = Figure(figsize=(11, 3.6), layout="constrained")
    order = trials.assign(number=pd.to_numeric(trials["trial_id"])).sort_values("number")
    accuracy = order["val_accuracy"].astype(float)
    best = accuracy.fillna(-np.inf).cummax().replace(-np.inf, np.nan)
    minutes = order["seconds"].astype(float).fillna(0).cumsum() / 60
    for axis, x, label in zip(
        figure.subplots(1, 2),
        (order["number"], minutes),
        ("trial number", "training time of the trials so far (minutes)"),
    ):
        axis.scatter(x, accuracy, s=18, color=TRIAL_COLOR, alpha=0.6, label="trial")
        axis.step(x, best, where="post", color=RETRAINED_COLOR, linewidth=1.8, label="best so far")
        axis.set_xlabel(label)
        axis.set_ylabel("validation accuracy")
        _percent_axis(axis)
    figure.axes[0].legend(fontsize=8, loc="lower right")
    return figure


def curves_figure(history):
    """Training loss and accuracy per epoch of one architecture: its search trial and each retraining seed.

    Args:
        history: the architecture's rows of `history.csv`.
    """
    figure = Figure(figsize=(11, 3.6), layout="constrained")
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    for (phase, seed), rows in history.groupby(["phase", history["seed"].fillna(-1)], sort=False):
        label = (
            "search trial (train split)" if phase == "search" else f"retraining, seed {int(seed)} (train + validation)"
        )
        style = {"linestyle": "--", "color": TRIAL_COLOR} if phase == "search" else {}
        loss_axis.plot(rows["epoch"], rows["loss"].astype(float), marker=".", label=label, **style)
        accuracy_axis.plot(rows["epoch"], rows["accuracy"].astype(float), marker=".", label=label, **style)
    loss_axis.set_ylabel("training loss")
    loss_axis.set_yscale("log")
    loss_axis.grid(True, alpha=0.3)
    accuracy_axis.set_ylabel("training accuracy")
    _percent_axis(accuracy_axis)
    for axis in (loss_axis, accuracy_axis):
        axis.set_xlabel("epoch")
    accuracy_axis.legend(fontsize=8, loc="lower right")
    return figure


def confusion_figure(labels, predicted, class_names):
    """The confusion matrix on the test split (scikit-learn), rows true classes, columns predicted."""
    size = min(8, max(4, 2.2 + 0.45 * len(class_names)))
    figure = Figure(figsize=(size, size * 0.85), layout="constrained")
    axis = figure.subplots()
    ConfusionMatrixDisplay.from_predictions(
        labels,
        predicted,
        labels=range(len(class_names)),
        display_labels=class_names,
        ax=axis,
        colorbar=False,
        cmap="Blues",
        values_format="d",
    )
    axis.tick_params(axis="x", labelrotation=45 if max(map(len, class_names)) > 3 else 0)
    return figure


def recall_figure(leaderboard, class_names):
    """Per-class test recall of the winner (mean over seeds), with the references' and the baselines' as markers.

    The winner's figures are a row above 100%, clear of the bars and markers; the legend is under the axes.
    """
    references, baselines = tables.references(leaderboard), tables.baselines(leaderboard)
    width = min(11, 3 + 0.6 * len(class_names))
    # The legend goes under the axes, where it hides no marker: a column per 3.5 inches.
    legend_columns = max(1, min(3, int(width // 3.5)))
    legend_rows = -(-(1 + len(references) + len(baselines)) // legend_columns)
    figure = Figure(figsize=(width, 3.4 + 0.2 * legend_rows), layout="constrained")
    axis = figure.subplots()
    columns = [f"test_recall_{name}" for name in class_names]
    winner = leaderboard[leaderboard["rank"] == 1].iloc[0]
    recall = winner[columns].astype(float).to_numpy()
    axis.bar(range(len(class_names)), recall, color=RETRAINED_COLOR, width=0.6, label="rank 1 (mean over seeds)")
    for position, value in enumerate(recall):  # a row above 100%, where no bar or marker reaches
        axis.annotate(
            f"{100 * value:.1f}",
            (position, 1.0),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    for (_, row), marker in zip(references.iterrows(), itertools.cycle("sDv^<>ph")):
        axis.scatter(
            range(len(class_names)),
            row[columns].astype(float),
            marker=marker,
            s=40,
            facecolors="none",
            edgecolors=REFERENCE_COLOR,
            label=f"reference: {str(row['trial_id']).removeprefix(tables.REFERENCE)} (mean over seeds)",
            zorder=3,
        )
    for (_, row), marker in zip(baselines.iterrows(), ("_", "1")):
        name = str(row["trial_id"]).removeprefix(tables.BASELINE).replace("_", " ")
        axis.scatter(
            range(len(class_names)),
            row[columns].astype(float),
            marker=marker,
            s=120,
            color=BASELINE_COLOR,
            label=f"baseline: {name}",
            zorder=3,
        )
    axis.set_xticks(range(len(class_names)), class_names)
    axis.set_ylim(0, 1.14)
    axis.set_ylabel("test recall")
    _percent_axis(axis)
    figure.legend(fontsize=8, loc="outside lower center", ncols=legend_columns)
    return figure


def misclassified_figure(images, labels, predicted, class_names, limit=32, columns=8):
    """A grid of misclassified test images, each titled `true → predicted`; `None` if none is wrong.

    Args:
        images: the test images as the source stores them, uint8 `(n, h, w, c)`.
        labels: true classes.
        predicted: predicted classes.
        class_names: names of the classes.
        limit: at most this many images, the first ones in test order.
        columns: images per row.
    """
    wrong = np.flatnonzero(np.asarray(labels) != np.asarray(predicted))[:limit]
    if not len(wrong):
        return None
    rows = -(-len(wrong) // columns)
    figure = Figure(figsize=(11, 1.55 * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for axis in axes:
        axis.axis("off")
    for axis, index in zip(axes, wrong):
        image = images[index]
        gray = image.shape[-1] == 1
        axis.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None, vmin=0, vmax=255)
        axis.set_title(f"{class_names[labels[index]]} → {class_names[predicted[index]]}", fontsize=7)
    return figure
