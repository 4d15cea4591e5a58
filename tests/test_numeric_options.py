"""Every numeric option of `pan train` is checked by click at parse time: a non-finite or
out-of-range value is a usage error (exit 2) in one line, never a traceback or a late failure."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FLOAT_OPTIONS = ("--lr", "--epochs", "--margin", "--lambda-pix", "--ema", "--time-limit", "--d-width")
LIST_OPTIONS = {"--lambdas": 4, "--rain-density": 2, "--rain-length": 2, "--rain-angle": 2, "--rain-intensity": 2}
INT_OPTIONS = ("--steps", "--batch-size", "--image-size", "--load-size", "--keep", "--val-every")


def train_with(run_pan, tmp_path, option, value):
    return run_pan("train", "derain", "--synthesize", "--data", tmp_path / "nowhere", option, value, "-q")


@pytest.mark.parametrize("option, value", [
    ("--lr", "nan"), ("--lr", "inf"), ("--epochs", "nan"), ("--epochs", "inf"), ("--margin", "inf"),
    ("--lambda-pix", "inf"), ("--lambdas", "nan,1,1,1"), ("--lambdas", "5,-1,1,1"), ("--ema", "nan"),
    ("--time-limit", "nan"), ("--load-size", "100000"), ("--rain-density", "0,inf"),
])
def test_the_reported_absurd_values_are_usage_errors(run_pan, tmp_path, option, value):
    result = train_with(run_pan, tmp_path, option, value)
    assert result.exit_code == 2, (option, value, result.stderr)
    assert option in result.stderr and "Traceback" not in result.stderr


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "NaN", "1e999", "-0", "0", "1e-320", "", "x", "1,2"]),
    st.integers(min_value=-10**12, max_value=10**12).map(str),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(FLOAT_OPTIONS + tuple(LIST_OPTIONS) + INT_OPTIONS), value=st.data())
def test_fuzzed_numeric_options_never_trace_back_nor_pass_a_non_finite_value(run_pan, tmp_path, option, value):
    if option in LIST_OPTIONS:
        text = ",".join(value.draw(st.lists(numbers, min_size=1, max_size=5)))
    else:
        text = value.draw(numbers)
    result = train_with(run_pan, tmp_path, option, text)
    assert result.exit_code in (1, 2), (option, text, result.exit_code, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), (option, text, result.exception)
    assert "Traceback" not in result.stderr
    parsed = []
    for part in text.split(","):
        try:
            parsed.append(float(part))
        except ValueError:
            parsed.append(0.0)
    if not all(math.isfinite(v) for v in parsed):
        assert result.exit_code == 2, (option, text, result.stderr)


@pytest.mark.parametrize("task, args", [("inpaint", ("--paper", "--batch-size", "1")),
                                        ("sketch2photo", ("--image-size", "64", "--batch-size", "1"))])
def test_sizes_that_leave_batchnorm_one_value_are_refused_up_front(run_pan, tmp_path, task, args):
    result = run_pan("train", task, "--data", tmp_path / "nowhere", *args, "-q")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "leaves BatchNorm one value per channel" in result.stderr and "--batch-size 2 or more" in result.stderr


def test_a_tiny_derain_crop_trains(run_pan, rain_pairs, tmp_path):
    result = run_pan("train", "derain", "--data", rain_pairs, "--image-size", "8", "--steps", "1", "--batch-size", "2",
                     "--run-dir", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.stderr
