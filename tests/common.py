"""Helpers shared by the tests (import as ``from tests.common import ...``)."""

import pytest
import torch

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
