"""CIFAR-10 on one GPU: which ResNet near ResNet-9/ResNet-18 reaches 94% test accuracy within 25 GPU-minutes?

Sized for an H100 or H200 with the JAX backend and bfloat16
(`KERAS_BACKEND=jax archsearch run cifar10_gpu --mixed-precision`):
6 trials of 8 epochs on 45,000 images, then the best retrained for 40 epochs
on 50,000, twice. The sizes are an estimate, not a measurement yet (about
1-3 s per epoch and 20-40 s of compilation per architecture); see
results/bench/README.md for the GPU figures when they are measured.
Offline, point --data-dir at an image folder or archive of CIFAR-10.
"""

from archsearch import Data, Recipe, Retrain, Search, Space, Train, choice, log_uniform

space = Space(
    name="cifar10_gpu",
    data=Data("cifar10", validation=0.1),
    recipe=Recipe(
        family="resnet",
        resolution=32,
        width=choice(64, 96),
        stages=4,
        blocks_per_stage=choice(1, 2),
        downsample="maxpool",
        batch_norm=True,
    ),
    train=Train(
        epochs=8,
        batch_size=512,
        optimizer="sgd",
        learning_rate=log_uniform(0.05, 0.4),
        weight_decay=5e-4,
        schedule="cosine",
        augment=True,
    ),
    search=Search(tuner="random", max_trials=6),
    retrain=Retrain(top_k=1, epochs=40, seeds=2),
)
