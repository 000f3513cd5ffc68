"""The shared constants."""

import math

from pyro_diffvi.ops import LOG_2PI


def test_log_2pi_is_the_log_of_two_pi():
    assert LOG_2PI == math.log(2 * math.pi)
