"""CIFAR-10: which VGG/ResNet variant is best under one million parameters?

Online, tensorflow-datasets downloads CIFAR-10; offline, point --data-dir at an
image folder with the same class names (`<root>/train/<class>/*.jpg`).
"""

from archsearch import Data, Recipe, Retrain, Search, Space, Train, choice, log_uniform

space = Space(
    name="cifar10",
    data=Data("cifar10", validation=0.1),
    recipe=Recipe(
        family=choice("vgg", "resnet"),
        resolution=32,
        width=choice(16, 32, 64),
        stages=choice(2, 3, "auto"),
        blocks_per_stage=choice(1, 2, 3),
        downsample=choice("maxpool", "strided"),
        batch_norm=choice(True, False),
    ),
    train=Train(epochs=10, batch_size=128, learning_rate=log_uniform(1e-4, 1e-2), augment=True),
    search=Search(tuner="hyperband", max_trials=40, max_params=1_000_000),
    retrain=Retrain(top_k=3, epochs=40, seeds=3),
)
