"""Fixtures of the metrics tests."""

import pytest

from tests.metrics.linear_gaussian import LinearGaussian


@pytest.fixture
def lg(device):
    """The linear-Gaussian model with its exact and its wrong guide, on the test device."""
    return LinearGaussian(device=device)
