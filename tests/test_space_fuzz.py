"""Fuzzing the space loader: every generated space file ends in a valid space or one clear error."""

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archsearch.dimensions import DIMENSIONS
from archsearch.errors import SpaceError
from archsearch.space import Space, load_space

NAMES = [d.name for d in DIMENSIONS] + ["colour", "depth", "widht"]
VALUES = st.one_of(
    st.integers(-5, 5000), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.text(string.ascii_letters, max_size=8), st.sampled_from(["auto", "vgg", "resnet", "maxpool", "conv7", "gap"]),
)
DECLARATIONS = st.one_of(
    VALUES.map(repr),
    st.lists(VALUES, max_size=4).map(lambda vs: "choice(" + ", ".join(map(repr, vs)) + ")"),
    st.tuples(st.integers(-3, 100), st.integers(-3, 100)).map(lambda t: f"int_range({t[0]}, {t[1]})"),
    st.tuples(VALUES, VALUES).map(lambda t: f"log_uniform({t[0]!r}, {t[1]!r})"),
    st.tuples(VALUES, VALUES).map(lambda t: f"uniform({t[0]!r}, {t[1]!r})"),
)
SECTIONS = st.dictionaries(st.sampled_from(NAMES), DECLARATIONS, max_size=5)
TAILS = st.sampled_from(["", ")", "search=Search(tuner='grid'), ", "search=Search(max_trials=-1), ", "retrain=Retrain(top_k='3'), ", "name=3, "])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recipe=SECTIONS, train=SECTIONS, tail=TAILS)
def test_generated_space_files_load_or_fail_clearly(tmp_path, recipe, train, tail):
    body = ", ".join(f"{k}={v}" for k, v in recipe.items())
    knobs = ", ".join(f"{k}={v}" for k, v in train.items())
    path = tmp_path / "fuzz.py"
    path.write_text(
        "from archsearch import *\n"
        f"space = Space({tail}name='fuzz', recipe=Recipe({body}), train=Train({knobs}))\n"
    )
    try:
        space = load_space(path)
    except SpaceError as error:
        message = str(error)
        assert message.startswith(str(path)), message
        assert "\n" not in message and "Traceback" not in message
    else:
        assert isinstance(space, Space)
        space.random_points(2)
