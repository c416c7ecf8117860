"""Car versus truck (lecture notes 000): can the recipe beat the notes' CNN at 88% test accuracy?

The notes' data: CIFAR-10's automobile and truck classes, grayscale, 10,000
training and 2,000 test images. Their least-squares classifier on raw pixels
reached 63% test accuracy, their 3-conv CNN 88%.
"""

from archsearch import Data, Recipe, Retrain, Search, Space, Train, choice, log_uniform

space = Space(
    name="cifar_car_truck",
    data=Data("cifar10", classes=["automobile", "truck"], grayscale=True, validation=0.1),
    recipe=Recipe(
        family=choice("vgg", "resnet"),
        resolution=32,
        width=choice(16, 32),
        stages=choice(2, 3),
        blocks_per_stage=choice(1, 2),
        downsample=choice("maxpool", "strided"),
        batch_norm=True,
        head=choice("gap", "mlp"),  # the notes' CNN ends in a 64-unit hidden layer
    ),
    # Flips and small shifts do not change a vehicle's class.
    # Budget sized for two CPU cores (about an hour end to end).
    train=Train(epochs=5, batch_size=64, learning_rate=log_uniform(5e-4, 5e-3), augment=True),
    search=Search(tuner="bayesian", max_trials=10, max_params=500_000),
    retrain=Retrain(top_k=2, epochs=25, seeds=2, references=("resnet20",)),  # the standard CIFAR ResNet, to beat
)
