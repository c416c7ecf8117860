"""archsearch: search the VGG/ResNet design recipe for the best image classifier.

A space file under `search_spaces/` declares what may vary:

```python
from archsearch import Data, Recipe, Retrain, Search, Space, Train, choice, log_uniform

space = Space(
    name="cifar10",
    data=Data("cifar10", validation=0.1),
    recipe=Recipe(family=choice("vgg", "resnet"), width=choice(16, 32, 64)),
    train=Train(epochs=10, learning_rate=log_uniform(1e-4, 1e-2)),
    search=Search(tuner="hyperband", max_trials=40, max_params=1_000_000),
    retrain=Retrain(top_k=3, epochs=40, seeds=3),
)
```
"""

from archsearch.data import Data
from archsearch.space import Recipe, Retrain, Search, Space, Train, choice, int_range, log_uniform, uniform

__all__ = ["Data", "Recipe", "Retrain", "Search", "Space", "Train", "choice", "int_range", "log_uniform", "uniform"]
