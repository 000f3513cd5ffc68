"""BoundSelector: its standard error against the spread of independent replicates, the window and the hysteresis."""

import math

import numpy as np
import pytest

from pyro_diffvi.guides import BoundSelector


def test_standard_error_matches_the_spread_of_replicates():
    # iid leads N(0.3, 1): the bias-corrected EMA's sd over 2,000 replicates against the selector's own se
    # (its relative error is ~1/sqrt(2 * 2000) = 1.6%, and the se estimate's own spread is a few % more)
    rng = np.random.default_rng(0)
    decay, steps, replicates = 0.95, 200, 2000
    leads = rng.normal(0.3, 1.0, size=(replicates, steps))
    means, ses = [], []
    for row in leads:
        selector = BoundSelector(decay=decay, threshold=2.0)
        for lead in row:
            selector.record(float(lead))
        mean, se = selector.lead
        means.append(mean)
        ses.append(se)
    assert np.mean(means) == pytest.approx(0.3, abs=5 * np.std(means) / math.sqrt(replicates))
    assert np.std(means) == pytest.approx(np.mean(ses), rel=0.08)
    assert np.std(means) == pytest.approx(math.sqrt((1 - decay) / (1 + decay)), rel=0.08)


def test_no_switch_before_the_window_then_switch_and_back():
    selector = BoundSelector(decay=0.9, threshold=2.0)  # window 1 / (1 - 0.9) = 10 estimates
    for _ in range(9):
        assert selector.record(1.0) == "head"  # far ahead, but the average does not span its window yet
    assert selector.record(1.0) == "chain"
    for _ in range(3):
        assert selector.record(-1.0) == "chain"  # the average is still positive
    for _ in range(30):
        selector.record(-1.0)
    assert selector.choice == "head"


def test_hysteresis_keeps_the_choice_inside_the_band():
    rng = np.random.default_rng(1)
    for start in ("head", "chain"):
        selector = BoundSelector(decay=0.99, threshold=2.0, choice=start)
        for lead in rng.normal(0.0, 1e-3, size=50):  # warm the window up with a tie
            selector.record(float(lead))
        mean, se = selector.lead
        assert abs(mean) < 2.0 * se and selector.choice == start  # a tie keeps whichever is in use
        selector.record(math.nan)  # a non-finite estimate is ignored
        assert selector.count == 50


def test_state_round_trip_and_bad_input():
    selector = BoundSelector(decay=0.9)
    for lead in [0.5, -0.2, 0.8]:
        selector.record(lead)
    restored = BoundSelector(decay=0.9)
    restored.load_state_dict(selector.state_dict())
    assert restored.lead == selector.lead and restored.choice == selector.choice
    with pytest.raises(ValueError, match="decay"):
        BoundSelector(decay=1.0)
    with pytest.raises(ValueError, match="threshold"):
        BoundSelector(threshold=0)
    with pytest.raises(ValueError, match="choice"):
        BoundSelector(choice="flow")
    with pytest.raises(ValueError, match="state\\['choice'\\]"):
        restored.load_state_dict({"choice": "x", "count": 0, "mean": 0.0, "second_moment": 0.0})
