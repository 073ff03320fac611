"""Long loops (training steps, scorecard replies) say how long is left at the pace so far."""

from rosie_model.core.reporting import time_left


def test_the_estimate_follows_the_pace_so_far():
    assert time_left(1, 4, 60.0) == "~3m00s left"
    assert time_left(30, 40, 45.0) == "~0m15s left"


def test_no_estimate_before_the_first_unit_or_after_the_last():
    assert time_left(0, 10, 5.0) == "" and time_left(10, 10, 5.0) == ""
