import os

import pyro
import pytest
import torch

from pyro_diffvi.util import set_seed


def pytest_configure(config):
    # The tests use small networks, where one thread is faster than several competing for 2 cores.
    torch.set_num_threads(1)


def pytest_runtest_setup(item):
    pyro.clear_param_store()
    pyro.enable_validation(True)
    set_seed(0)


def _test_device() -> torch.device:
    name = os.environ.get("PYRO_DIFFVI_TEST_DEVICE", "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("PYRO_DIFFVI_TEST_DEVICE asks for CUDA but none is available")
    return torch.device(name)


@pytest.fixture
def device() -> torch.device:
    """The device tests run on: CPU by default, ``PYRO_DIFFVI_TEST_DEVICE=cuda`` on a GPU machine."""
    return _test_device()


