"""The offline default: which small VGG or ResNet reads 8x8 handwritten digits best?

scikit-learn ships these 1,797 images, so this space runs anywhere, with no
download, end to end in a few minutes on two CPU cores.
"""

from archsearch import Data, Recipe, Retrain, Search, Space, Train, choice, log_uniform

space = Space(
    name="digits",
    data=Data("digits", validation=0.2),
    recipe=Recipe(
        family=choice("vgg", "resnet"),
        resolution=choice(8, 16),  # upsampling 8 -> 16 buys a second stage
        width=choice(8, 16, 32),
        stages="auto",
        blocks_per_stage=choice(1, 2),
        batch_norm=True,
    ),
    train=Train(epochs=8, batch_size=32, learning_rate=log_uniform(1e-3, 1e-2)),
    search=Search(tuner="random", max_trials=8),
    retrain=Retrain(top_k=2, epochs=15, seeds=2),
)
