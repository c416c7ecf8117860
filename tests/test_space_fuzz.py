"""Fuzzing the space loader: every generated space file ends in a valid space or one clear error."""

import math
import string

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from archsearch.errors import SpaceError
from archsearch.recipe.dimensions import BY_NAME, RECIPE, TRAIN
from archsearch.recipe.space import Space, load_space

NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
JUNK = st.one_of(
    st.integers(-5, 5000),
    st.floats(allow_nan=True, allow_infinity=True),
    NON_FINITE,
    st.booleans(),
    st.none(),
    st.text(string.ascii_letters, max_size=8),
    st.sampled_from(["auto", "vgg", "resnet", "maxpool", "conv7", "gap"]),
)


def source(value):
    """Python source for a value: repr writes NaN and infinity as the names nan and inf, which a space file lacks."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    return repr(value)


def plausible(name):
    """Values of the dimension's own type, mostly allowed, so that whole files load and validation is reached."""
    d = BY_NAME[name]
    if d.values:
        return st.sampled_from(d.values)
    if d.kind is bool:
        return st.booleans()
    if d.kind is int:
        ints = st.integers(d.low - 1, min(d.high or 64, 64))
        return st.one_of(ints, st.just("auto")) if d.auto else ints
    return st.one_of(st.floats(d.low, d.high), NON_FINITE)


def declaration(name):
    values = st.one_of(plausible(name), plausible(name), JUNK)
    return st.one_of(
        values.map(source),
        st.lists(values, min_size=1, max_size=4).map(lambda vs: "choice(" + ", ".join(map(source, vs)) + ")"),
        st.tuples(st.integers(-3, 100), st.integers(-3, 100)).map(lambda t: f"int_range({t[0]}, {t[1]})"),
        st.tuples(values, values).map(lambda t: f"log_uniform({source(t[0])}, {source(t[1])})"),
        st.tuples(values, values).map(lambda t: f"uniform({source(t[0])}, {source(t[1])})"),
    )


def section(names, strangers):
    """Mostly the section's own dimensions, now and then one that is misspelled or belongs elsewhere."""
    pair = st.sampled_from([*names, *names, *strangers]).flatmap(
        lambda n: st.tuples(st.just(n), declaration(n) if n in BY_NAME else JUNK.map(source))
    )
    return st.lists(pair, max_size=4).map(dict)


TAILS = st.sampled_from(
    [
        "",
        ")",
        "search=Search(tuner='grid'), ",
        "search=Search(max_trials=-1), ",
        "retrain=Retrain(top_k='3'), ",
        "name=3, ",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recipe=section(RECIPE, ["colour", "widht", "epochs"]), train=section(TRAIN, ["depth", "growth"]), tail=TAILS)
def test_generated_space_files_load_or_fail_clearly(tmp_path, recipe, train, tail):
    body = ", ".join(f"{k}={v}" for k, v in recipe.items())
    knobs = ", ".join(f"{k}={v}" for k, v in train.items())
    path = tmp_path / "fuzz.py"
    path.write_text(
        f"from archsearch import *\nspace = Space({tail}name='fuzz', recipe=Recipe({body}), train=Train({knobs}))\n"
    )
    try:
        space = load_space(path)
    except SpaceError as error:
        event("refused")
        message = str(error)
        assert message.startswith(str(path)), message
        assert "\n" not in message and "Traceback" not in message
    else:
        event("loaded")
        assert isinstance(space, Space)
        for point in space.random_points(2):
            assert all(math.isfinite(v) for v in point.values() if isinstance(v, float)), point
