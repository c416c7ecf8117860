"""Cats versus dogs at larger R: is it worth paying for resolution, with a conv7 stem to shrink it fast?

Photos of mixed sizes: the loader cuts each one's centred square and resizes it
to 160x160 (`crop_to_aspect_ratio`, not a squash), then the model resizes that
to R. Bring them as an image folder (`--data-dir`), or let tensorflow-datasets
download them.
"""

from archsearch import Data, Recipe, Retrain, Search, Space, Train, choice, log_uniform

space = Space(
    name="cats_vs_dogs",
    # tfds has only a train split here: hold out its last fifth as the test split.
    data=Data(
        "cats_vs_dogs",
        image_size=(160, 160),
        crop_to_aspect_ratio=True,
        validation=0.1,
        train_split="train[:80%]",
        test_split="train[80%:]",
    ),
    recipe=Recipe(
        family="resnet",
        resolution=choice(64, 96, 128),
        stem=choice("none", "conv7"),  # the notes: get R below 100 quickly
        width=choice(32, 64),
        stages="auto",
        blocks_per_stage=choice(1, 2),
        bottleneck=choice(False, True),
    ),
    train=Train(
        epochs=8,
        batch_size=64,
        optimizer=choice("adam", "sgd"),
        learning_rate=log_uniform(1e-3, 1e-1),
        weight_decay=choice(0.0, 5e-4),
        augment=True,
    ),
    search=Search(tuner="hyperband", max_trials=30, max_flops=2_000_000_000),
    retrain=Retrain(top_k=2, epochs=30, seeds=2),
)
