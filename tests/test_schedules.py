"""The shared ramps (workbench.schedules)."""

import math

import pytest

from workbench.schedules import sigmoid_rampup


def test_sigmoid_rampup():
    assert sigmoid_rampup(0, 10) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(5, 10) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(10, 10) == 1.0 and sigmoid_rampup(3, 0) == 1.0
