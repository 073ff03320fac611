"""Every input of the bad-input corpus (tests/hostile.py) costs at most itself: the stage survives, every
good record next to it comes out, and the damage is counted."""

import pytest

from tests.hostile import CASES, run_case


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.stage}/{c.name}")
def test_a_hostile_input_costs_only_itself(case, tmp_path):
    outcome = run_case(case, tmp_path)
    assert outcome.survived, outcome.error
    assert outcome.lost == 0, f"{outcome.lost} of {outcome.good} good records lost"
    assert (outcome.bad_counted > 0) == case.counted_bad, f"{outcome.bad_counted} bad records counted"
