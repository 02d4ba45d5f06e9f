import math

import pytest

from mtl.errors import ConfigError
from mtl.evaluation import delta_m, delta_p

# A worked example: a segmentation task with two metrics and a depth task with one.
REFERENCE = {"seg": {"miou": 0.4, "pixacc": 0.8}, "depth": {"abs_err": 0.4}}
RESULT = {"seg": {"miou": 0.5, "pixacc": 0.7}, "depth": {"abs_err": 0.3}, "extra": {"x": 1.0}}
HIB = {"seg": {"miou": True, "pixacc": True}, "depth": {"abs_err": False}}


def test_delta_p_worked_example():
    # seg: mean(+0.1/0.4, -0.1/0.8) = mean(0.25, -0.125) = 0.0625 ; depth: -(0.3-0.4)/0.4 = 0.25
    # Δp = 100 * (0.0625 + 0.25) / 2 = 15.625 (each task counts equally)
    assert delta_p(RESULT, REFERENCE, HIB) == pytest.approx(15.625)


def test_delta_m_worked_example():
    # terms: miou -(0.25), pixacc -(-0.125), abs_err +(-0.25) -> mean(-0.25, 0.125, -0.25) = -0.125
    assert delta_m(RESULT, REFERENCE, HIB) == pytest.approx(-12.5)


def test_reference_equals_result_gives_zero():
    assert delta_p(REFERENCE, REFERENCE, HIB) == 0.0
    assert delta_m(REFERENCE, REFERENCE, HIB) == 0.0


def test_missing_metric_is_named():
    with pytest.raises(ConfigError, match="seg/pixacc"):
        delta_p({"seg": {"miou": 0.5}, "depth": {"abs_err": 0.3}}, REFERENCE, HIB)


def test_missing_task_is_named():
    with pytest.raises(ConfigError, match="depth"):
        delta_m({"seg": {"miou": 0.5, "pixacc": 0.7}}, REFERENCE, HIB)


@pytest.mark.parametrize("bad", [0.0, math.nan, math.inf])
def test_bad_reference_values(bad):
    with pytest.raises(ConfigError, match="depth/abs_err"):
        delta_p(RESULT, {**REFERENCE, "depth": {"abs_err": bad}}, HIB)
