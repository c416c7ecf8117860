"""archsearch: search the VGG/ResNet design recipe for the best image classifier.

A space file (the bundled ones: `archsearch spaces`) declares what may vary, as one `Space`
(see its docstring for a full example) built from `Data`, `Recipe`, `Train`,
`Search`, `Retrain`, `Transfer` (a trained network to start from) and the
declarations `choice`, `int_range`, `uniform` and `log_uniform`. From Python
or a notebook, `archsearch.run(space, ...)` runs one as `archsearch run` does
and `archsearch.load_run(path)` reads a finished one; both return a `Run`
(`archsearch.api`).

The names are imported on first use (PEP 562), so that `import archsearch`
alone loads neither Keras nor TensorFlow: the command line first sets up
what it prints (`archsearch.cli.console`), and commands that only read CSVs stay
fast. `archsearch.RandomShift` is the layer that loading a training-time
`model.keras` needs; accessing it registers it.
"""

import importlib

_WHERE = {
    "Data": "archsearch.data",
    "RandomShift": "archsearch.model.layers",
    "Transfer": "archsearch.recipe.transfer",
    **{name: "archsearch.api" for name in ("Run", "load_run", "run")},
    **{
        name: "archsearch.recipe.space"
        for name in ("Recipe", "Retrain", "Search", "Space", "Train", "choice", "int_range", "log_uniform", "uniform")
    },
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'archsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
