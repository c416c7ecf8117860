"""Fashion-MNIST (lecture notes 002): how far past the notes' one-hidden-layer MLP (88%) does a small CNN go?

28 x 28 grayscale: R=28 halves to 14 and 7, so "auto" stops after three stages (4 x 4).
"""

from archsearch import Data, Recipe, Retrain, Search, Space, Train, choice, log_uniform

space = Space(
    name="fashion_mnist",
    data=Data("fashion_mnist", validation=0.1),
    recipe=Recipe(
        family=choice("vgg", "resnet"),
        resolution=28,
        width=choice(16, 32),
        stages=choice(2, "auto"),
        blocks_per_stage=choice(1, 2),
        head=choice("gap", "mlp"),
    ),
    train=Train(epochs=5, batch_size=128, learning_rate=log_uniform(3e-4, 3e-3), dropout=choice(0.0, 0.3)),
    search=Search(tuner="random", max_trials=12),
    retrain=Retrain(top_k=2, epochs=15, seeds=3),
)
