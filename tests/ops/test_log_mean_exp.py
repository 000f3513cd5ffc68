"""log_mean_exp_with_se against hand-computed values."""

import math

import torch

from pyro_diffvi.ops import log_mean_exp_with_se


def test_log_mean_exp_with_se_hand_computed():
    log_z, se = log_mean_exp_with_se(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).log())
    torch.testing.assert_close(log_z, torch.tensor(math.log(2.0), dtype=torch.float64))
    torch.testing.assert_close(se, torch.tensor(1.0 / (math.sqrt(3) * 2.0), dtype=torch.float64))
