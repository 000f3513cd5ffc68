"""pytest set-up shared by the test suite and the docstring examples (``--doctest-modules``).

Each docstring example starts like a test: an empty Pyro param store, validation on, seed 0, one
torch thread (the examples use small tensors, where one thread is fastest).
"""

import pyro
import torch
from _pytest.doctest import DoctestItem

from pyro_diffvi.util import set_seed


def pytest_configure(config):
    torch.set_num_threads(1)


def pytest_runtest_setup(item):
    if isinstance(item, DoctestItem):
        pyro.clear_param_store()
        pyro.enable_validation(True)
        set_seed(0)
