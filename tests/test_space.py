"""The declarative space API and its mapping onto Keras Tuner's HyperParameters."""

import math

import keras_tuner
import pandas as pd
import pytest

from archsearch import Data, Recipe, Retrain, Search, Space, Train, choice, int_range, log_uniform, uniform
from archsearch.errors import SpaceError
from archsearch.recipe.bundled import bundled_spaces, space_file
from archsearch.recipe.dimensions import BY_NAME, DIMENSIONS, RECIPE, TRAIN, defaults, point_of
from archsearch.recipe.space import load_space


def make_space(**recipe):
    return Space(
        name="t", data=Data("digits"), recipe=Recipe(**recipe), train=Train(learning_rate=log_uniform(1e-4, 1e-2))
    )


def test_every_dimension_can_be_fixed_or_searched():
    assert set(RECIPE) >= {
        "resolution",
        "family",
        "width",
        "growth",
        "max_width",
        "stages",
        "blocks_per_stage",
        "downsample",
        "batch_norm",
        "stem",
        "bottleneck",
        "head",
    }
    assert set(TRAIN) >= {"epochs", "batch_size", "optimizer", "learning_rate", "weight_decay", "dropout", "augment"}
    for d in DIMENSIONS:
        section = Recipe if d.group == "recipe" else Train
        section(**{d.name: d.default})
        other = d.values[-1] if d.values else (not d.default if d.kind is bool else None)
        if other is not None and other != d.default:
            section(**{d.name: choice(d.default, other)})


def test_declarations_map_onto_keras_tuner_hyperparameters():
    space = Space(
        name="t",
        recipe=Recipe(
            family=choice("vgg", "resnet"),
            width=int_range(8, 32, step=8),
            stages=choice(2, 3, "auto"),
            batch_norm=choice(True, False),
        ),
        train=Train(learning_rate=log_uniform(1e-4, 1e-2), dropout=uniform(0.0, 0.5)),
    )
    hp = keras_tuner.HyperParameters()
    point = space.sample(hp)
    kinds = {p.name: type(p).__name__ for p in hp.space}
    assert kinds == {
        "family": "Choice",
        "width": "Int",
        "stages": "Choice",
        "batch_norm": "Choice",
        "learning_rate": "Float",
        "dropout": "Float",
    }
    assert hp.space[-2].sampling == "log"
    assert point["family"] == "vgg" and point["width"] == 8 and point["stages"] == 2 and point["batch_norm"] is True
    assert point["resolution"] == 32  # a default


def test_mixed_choices_come_back_with_their_types():
    space = make_space(stages=choice(2, "auto"))
    values = {p["stages"] for p in space.random_points(20, seed=1)}
    assert values == {2, "auto"}


def test_random_points_are_repeatable_and_cover_the_choices():
    space = make_space(width=choice(16, 32, 64), family=choice("vgg", "resnet"))
    first, second = space.random_points(30, seed=3), space.random_points(30, seed=3)
    assert first == second
    assert {p["width"] for p in first} == {16, 32, 64}
    assert all(1e-4 <= p["learning_rate"] <= 1e-2 for p in first)


def test_size_counts_distinct_points_or_says_continuous():
    assert Space(name="t", recipe=Recipe(width=choice(16, 32), blocks_per_stage=int_range(1, 3))).size() == 6
    assert math.isinf(make_space().size())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Recipe(colour=True), "unknown dimension 'colour'"),
        (lambda: Recipe(epochs=3), "belongs in Train"),
        (lambda: Recipe(width="wide"), r"width='wide': expected an int >= 1"),
        (lambda: Recipe(width=choice()), "at least one value"),
        (lambda: Recipe(width=choice(16, 16)), "values repeat"),
        (lambda: Recipe(width=int_range(64, 16)), "low must be below high"),
        (lambda: Train(learning_rate=log_uniform(0.0, 1.0)), "expected a float >= 1e-07"),
        (lambda: Recipe(family=choice("vgg", "densenet")), "family='densenet': expected one of 'vgg', 'resnet'"),
        (lambda: Recipe(batch_norm=1), "batch_norm=1: expected True or False"),
        (lambda: Recipe(family=uniform(0, 1)), "a range does not fit"),
        (lambda: Search(tuner="grid"), "tuner='grid'"),
        (lambda: Search(max_trials=0), "max_trials=0"),
        (lambda: Retrain(seeds=0), "seeds=0"),
        (lambda: Space(name="a/b"), "name='a/b'"),
        (
            lambda: Space(name="one", search=Search(tuner="hyperband")),
            r"tuner='hyperband' shares epochs .* fixes every dimension",
        ),
    ],
)
def test_bad_declarations_name_the_field(make, message):
    with pytest.raises(SpaceError, match=message):
        make()


def test_load_space_reads_the_file_and_its_docstring(tmp_path):
    path = tmp_path / "s.py"
    path.write_text(
        '"""Which width?"""\nfrom archsearch import Space, Recipe, choice\n'
        'space = Space(name="s", recipe=Recipe(width=choice(8, 16)))\n'
    )
    space = load_space(path)
    assert space.name == "s" and space.description == "Which width?"


@pytest.mark.parametrize(
    "body, message",
    [
        ("space = Space(name='s'\n", r"s\.py:\d+: syntax error"),
        ("space = Space(name='s', recipe=Recipe(depth=3))", r"s\.py:2: recipe: unknown dimension 'depth'"),
        ("space = Space(name='s', recipe=Recipe(width=choice()))", r"s\.py:2: .*at least one value"),
        ("x = 1", r"expected a variable `space = Space\(...\)`"),
        ("space = Space(name='s', search=Search(tuner='grid'))", r"s\.py:2: search: tuner='grid'"),
    ],
)
def test_bad_space_files_name_the_file_and_line(tmp_path, body, message):
    path = tmp_path / "s.py"
    path.write_text("from archsearch import *\n" + body)
    with pytest.raises(SpaceError, match=message):
        load_space(path)


def test_missing_space_file_names_the_bundled_spaces():
    bundled = ", ".join(bundled_spaces())
    with pytest.raises(SpaceError) as raised:
        load_space("nowhere/space.py")
    assert str(raised.value) == f"nowhere/space.py: no such space file or bundled space (bundled: {bundled})"
    assert {"cifar", "cifar10_gpu", "digits"} <= set(bundled_spaces())


def test_a_bundled_space_by_name_with_or_without_py_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty folder: no file of these names here
    assert space_file("digits") == space_file("digits.py") == bundled_spaces()["digits"]
    assert load_space("digits").name == "digits" and load_space("cifar.py").name == "cifar10"


def test_the_former_search_spaces_path_means_the_bundled_space_where_no_such_file_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert space_file("search_spaces/cifar.py") == space_file("./search_spaces/cifar.py") == bundled_spaces()["cifar"]
    for named in ("search_spaces/nosuch.py", "elsewhere/cifar.py", "search_spaces/cifar", "digits.npz"):
        with pytest.raises(SpaceError, match=f"^{named}: no such space file or bundled space"):
            space_file(named)


def test_an_existing_file_then_name_py_here_come_before_a_bundled_space_of_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "search_spaces").mkdir()
    mine = '"""Mine."""\nfrom archsearch import Space\nspace = Space(name="{}")\n'
    (tmp_path / "digits.py").write_text(mine.format("mine"))
    (tmp_path / "search_spaces" / "cifar.py").write_text(mine.format("my_cifar"))
    (tmp_path / "fashion_mnist").write_text(mine.format("a_file_named_so"))
    assert load_space("digits.py").name == "mine"
    assert space_file("digits") == space_file(
        "digits.py"
    )  # a bare name: NAME.py here, as `archsearch init NAME` writes
    assert load_space("fashion_mnist").name == "a_file_named_so"  # an existing file first, whatever its name
    assert load_space("cifar").name == "cifar10"  # no cifar.py here: the bundled one
    assert load_space("search_spaces/cifar.py").name == "my_cifar"
    assert space_file("search_spaces/digits.py") == bundled_spaces()["digits"]  # a path is no bare name


def test_fingerprint_changes_with_the_space():
    assert make_space().fingerprint() == make_space().fingerprint()
    assert make_space(width=16).fingerprint() != make_space(width=32).fingerprint()


def test_bundled_space_files_load():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[1] / "archsearch" / "spaces").glob("*.py"))
    assert {f.name for f in files} >= {"cifar.py", "cifar_car_truck.py", "digits.py"}
    assert list(bundled_spaces().values()) == files
    for file in files:
        space = load_space(file)
        assert space.description, file


@pytest.mark.parametrize(
    "make",
    [
        lambda: Recipe(growth=float("nan")),
        lambda: Recipe(growth=choice(2.0, float("inf"))),
        lambda: Train(learning_rate=log_uniform(1e-4, float("inf"))),
        lambda: Train(weight_decay=uniform(float("nan"), 0.5)),
        lambda: Train(dropout=float("-inf")),
    ],
)
def test_non_finite_floats_are_refused_naming_the_dimension(make):
    with pytest.raises(SpaceError, match=r"(growth|learning_rate|weight_decay|dropout)=.*a finite number"):
        make()


def test_one_registry_of_tuners_for_validation_the_command_line_and_make_tuner():
    from archsearch.cli.main import _parser
    from archsearch.recipe import dimensions
    from archsearch.search.tuners import tuner_classes

    for name in dimensions.TUNERS:
        assert Search(tuner=name).tuner == name
    with pytest.raises(SpaceError, match="expected one of 'random', 'bayesian', 'hyperband'"):
        Search(tuner="grid")
    commands = next(a for a in _parser()._actions if a.dest == "command").choices
    for command in ("run", "worker"):
        tuner = next(a for a in commands[command]._actions if a.dest == "tuner")
        assert tuple(tuner.choices) == tuple(dimensions.TUNERS)
    for name in dimensions.TUNERS:
        tuner_class, oracle_class = tuner_classes(name)
        assert issubclass(tuner_class, keras_tuner.Tuner) and issubclass(oracle_class, keras_tuner.Oracle)


def test_a_choice_of_per_stage_tuples_goes_through_keras_tuner_and_comes_back_a_tuple():
    space = make_space(blocks_per_stage=choice((2, 2), (3, 4)))
    hp = keras_tuner.HyperParameters()
    point = space.sample(hp)
    assert point["blocks_per_stage"] == (2, 2) and type(point["blocks_per_stage"]) is tuple
    (declared,) = [p for p in hp.space if p.name == "blocks_per_stage"]
    assert type(declared).__name__ == "Choice" and declared.values == ["(2, 2)", "(3, 4)"]  # Keras Tuner's own
    hp.values["blocks_per_stage"] = "(3, 4)"  # as a tuner sets the next trial
    assert space.sample(hp)["blocks_per_stage"] == (3, 4)
    assert {p["blocks_per_stage"] for p in space.random_points(20, seed=2)} == {(2, 2), (3, 4)}
    assert space.architecture(space.sample(hp), (32, 32, 3), 10).point["stages"] == 2


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Recipe(blocks_per_stage=(2, 0)), r"blocks_per_stage=\(2, 0\): expected an int >= 1, or a tuple"),
        (lambda: Recipe(blocks_per_stage=()), r"blocks_per_stage=\(\): .*at least one stage"),
        (lambda: Recipe(blocks_per_stage=choice((2, 2), (2, 2))), "values repeat"),
        (lambda: Recipe(width=(16, 32)), r"width=\(16, 32\): expected an int >= 1$"),  # one width, not per stage
        (lambda: Recipe(padding="reflect"), "padding='reflect': expected one of 'same', 'valid', 'torch'"),
        (lambda: Recipe(shortcut="identity"), "shortcut='identity': expected one of 'projection', 'zero_pad'"),
        (lambda: Recipe(stem="conv5"), "stem='conv5': expected one of 'none', 'conv3', 'conv7', 'conv7_pool3'"),
        (lambda: Recipe(stem_width="wide"), r"stem_width='wide': expected an int >= 1 or 'auto'"),
        (lambda: Recipe(head_layers=0), r"head_layers=0: expected an int >= 1 and <= 8"),
        (lambda: Recipe(downsample="avgpool"), "downsample='avgpool': expected one of 'maxpool', 'strided', 'block'"),
    ],
)
def test_bad_values_of_the_new_dimensions_name_the_field(make, message):
    with pytest.raises(SpaceError, match=message):
        make()


def test_dimension_parse_reads_per_stage_tuples_and_single_values_back():
    blocks = BY_NAME["blocks_per_stage"]
    assert blocks.parse("(2, 2, 3)") == (2, 2, 3) and type(blocks.parse("(2, 2, 3)")) is tuple
    assert blocks.parse("[3, 4]") == (3, 4)
    assert blocks.parse("2") == 2 and type(blocks.parse(" 2 ")) is int
    assert BY_NAME["stem_width"].parse("auto") == "auto" and BY_NAME["stem_width"].parse("64") == 64
    assert BY_NAME["halve_last"].parse("False") is False and BY_NAME["halve_last"].parse("True") is True


def test_point_of_a_row_written_before_the_new_dimensions_takes_their_defaults():
    row = {**{name: str(value) for name, value in defaults().items()}, "blocks_per_stage": "(3, 4, 6, 3)"}
    for name in ("halve_last", "padding", "stem_width", "shortcut", "head_layers"):
        del row[name]
    point = point_of(row)
    assert point["blocks_per_stage"] == (3, 4, 6, 3)
    assert (point["halve_last"], point["padding"], point["stem_width"], point["shortcut"], point["head_layers"]) == (
        True,
        "same",
        "auto",
        "projection",
        1,
    )
    assert point_of(pd.Series({**row, "padding": "torch"}))["padding"] == "torch"  # a Series, as read from a CSV


def test_the_new_dimensions_stay_out_of_the_fingerprint_only_at_their_defaults():
    before = make_space().to_dict()["dimensions"]
    assert not {"halve_last", "padding", "stem_width", "shortcut", "head_layers"} & set(before)
    assert make_space(padding="torch").fingerprint() != make_space().fingerprint()
    assert make_space(padding="same").fingerprint() == make_space().fingerprint()
    assert make_space(head_layers=choice(1, 2)).to_dict()["dimensions"]["head_layers"] == "choice(1, 2)"


def test_start_points_are_the_presets_values_of_the_searched_dimensions_as_keras_tuner_holds_them():
    space = Space(
        name="t",
        data=Data("digits"),
        recipe=Recipe.preset("vgg11", resolution=32, width=choice(32, 64), blocks_per_stage=choice(1, (1, 1, 2, 2, 2))),
        train=Train(dropout=uniform(0.0, 0.6), learning_rate=log_uniform(1e-4, 1e-2), epochs=int_range(20, 40)),
        search=Search(start_from="vgg11"),
    )
    # The preset's resolution (224) is the space's; its dropout is searched; what it leaves out takes the
    # dimension's default where the space allows it (learning rate 1e-3), else the declaration's low end (epochs).
    expected = {"width": 64, "blocks_per_stage": "(1, 1, 2, 2, 2)", "epochs": 20, "learning_rate": 1e-3, "dropout": 0.5}
    assert space.start_points() == [expected]
    hp = keras_tuner.HyperParameters()
    space.sample(hp)
    hp.values.update(space.start_points()[0])
    point = space.sample(hp)
    assert (point["width"], point["blocks_per_stage"], point["dropout"]) == (64, (1, 1, 2, 2, 2), 0.5)
    assert (point["learning_rate"], point["epochs"]) == (1e-3, 20)


def test_a_start_point_may_differ_in_dimensions_that_do_not_change_its_network():
    space = Space(
        name="t",
        data=Data("digits"),
        # stages='auto' gives resnet20's 3 stages; max_width 512 is reached by no stage (16, 32, 64).
        recipe=Recipe.preset("resnet20", stages="auto", max_width=512, width=choice(8, 16)),
        search=Search(start_from="resnet20"),
    )
    assert space.start_points() == [{"width": 16}]
    with pytest.raises(SpaceError, match="the preset's max_width=64 lies outside the space"):
        Space(
            name="t",
            data=Data("digits"),
            recipe=Recipe.preset("resnet20", max_width=32, width=choice(8, 16)),
            search=Search(start_from="resnet20"),
        )


@pytest.mark.parametrize(
    "recipe, message",
    [
        (
            lambda: Recipe.preset("resnet20", width=choice(32, 64)),
            r"start_from='resnet20': the preset's width=16 lies outside the space \(width=choice\(32, 64\)\)",
        ),
        (
            lambda: Recipe(family="vgg", width=choice(16, 32)),
            r"start_from='resnet20': the preset's family='resnet' lies outside the space \(family='vgg'\)",
        ),
    ],
)
def test_a_start_point_outside_the_space_is_refused_naming_the_dimension(recipe, message):
    with pytest.raises(SpaceError, match=message):
        Space(name="t", recipe=recipe(), search=Search(start_from=("resnet20",)))


def test_start_from_names_presets_once_each_and_no_more_than_the_trials(monkeypatch):
    with pytest.raises(SpaceError, match="start_from: 'resnet21' is no preset; expected one of .*resnet20"):
        Search(start_from=("resnet21",))
    with pytest.raises(SpaceError, match="names repeat"):
        Search(start_from=("resnet20", "resnet20"))
    with pytest.raises(SpaceError, match="start_from has 2 presets but max_trials=1"):
        Search(start_from=("resnet20", "resnet32"), max_trials=1)
    # Two presets the space cannot tell apart (here a copy at another resolution): one would never be tried.
    import dataclasses

    from archsearch.recipe import presets

    copy = presets.PRESETS["resnet20"]
    copy = dataclasses.replace(copy, name="resnet20_64", recipe={**copy.recipe, "resolution": 64})
    monkeypatch.setitem(presets.PRESETS, copy.name, copy)
    recipe = Recipe.preset("resnet20", width=choice(16, 32))
    with pytest.raises(SpaceError, match="start_from='resnet20_64' is the same point of this space as 'resnet20'"):
        Space(name="t", recipe=recipe, search=Search(start_from=("resnet20", "resnet20_64")))
