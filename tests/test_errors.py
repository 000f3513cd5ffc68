"""The package's exceptions: a divergence is a floating-point error that names the non-finite term."""

import pytest
import torch

from pyro_diffvi.errors import DivergenceError
from pyro_diffvi.infer.guard import check_terms


def test_divergence_error_is_a_floating_point_error():
    assert issubclass(DivergenceError, FloatingPointError)


def test_a_non_finite_term_raises_a_divergence_naming_it():
    with pytest.raises(DivergenceError, match=r"objective: non-finite loss term\(s\) \['b'\]"):
        check_terms("objective", {"a": torch.tensor(1.0), "b": torch.tensor(float("nan"))})
