"""archsearch: search the VGG/ResNet design recipe for the best image classifier.

A space file under `search_spaces/` declares what may vary, as one `Space`
(see its docstring for a full example) built from `Data`, `Recipe`, `Train`,
`Search`, `Retrain` and the declarations `choice`, `int_range`, `uniform`
and `log_uniform`. Importing the package also registers `RandomShift`, the
layer that loading a saved `model.keras` needs.
"""

from archsearch.data import Data
from archsearch.layers import RandomShift
from archsearch.space import Recipe, Retrain, Search, Space, Train, choice, int_range, log_uniform, uniform

__all__ = ["Data", "RandomShift", "Recipe", "Retrain", "Search", "Space", "Train", "choice", "int_range", "log_uniform", "uniform"]
