"""The source network of `benchmarks/transfer.py`: CIFAR-10's 8 classes other than automobile and truck.

One fixed architecture, a small ResNet sized for two CPU cores, searched for
one epoch (one trial) and retrained for 12 on the training split of those 8
classes only (its test split scores it once, as any run's), so that nothing
of car versus truck, the benchmark's target, is in it.
"""

from archsearch import Data, Recipe, Retrain, Search, Space, Train

OTHER_CLASSES = ["airplane", "bird", "cat", "deer", "dog", "frog", "horse", "ship"]

space = Space(
    name="cifar8_source",
    data=Data("cifar10", classes=OTHER_CLASSES, validation=0.1),
    recipe=Recipe(family="resnet", width=16, stages=3, blocks_per_stage=1, downsample="maxpool", head="gap"),
    train=Train(epochs=1, batch_size=128, learning_rate=2e-3, augment=True),
    search=Search(tuner="random", max_trials=1),
    retrain=Retrain(top_k=1, epochs=12, seeds=1),
)
