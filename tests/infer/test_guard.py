"""Divergence guard of EnergyPriorELBO (with each prior objective) and AdversarialAutoencoderLoss: a
non-finite loss term or gradient raises DivergenceError naming it before any parameter is touched, or,
with on_nonfinite="skip", leaves every parameter unchanged and warns (design rule 8)."""

import pyro
import pytest
import torch
from torch import nn

from pyro_diffvi.errors import DivergenceError
from pyro_diffvi.infer import AdversarialAutoencoderLoss
from pyro_diffvi.infer.energy import EnergyPriorELBO
from pyro_diffvi.infer.prior_objectives import PriorObjective, energy_function
from tests.common import state_differences
from tests.integration.test_objective_state import OBJECTIVES, all_tensors, build, data

GUARDED = ["ssm", "cd_replay", "adversarial_cd", "aae"]


def with_on_nonfinite(objective, mode: str):
    """The same objective with ``on_nonfinite=mode`` (built through the public constructor)."""
    if isinstance(objective, EnergyPriorELBO):
        return EnergyPriorELBO(prior_objective=objective.prior_objective, on_nonfinite=mode)
    return AdversarialAutoencoderLoss(hidden_dims=(8,), on_nonfinite=mode)


def trained(kind: str, mode: str = "raise", steps: int = 2):
    """Model, guide, objective and SVI after a few good steps."""
    model, guide, objective, optim, _ = build(kind, init_seed=0)
    objective = with_on_nonfinite(objective, mode)
    svi = pyro.infer.SVI(model, guide, optim, loss=objective)
    for _ in range(steps):
        svi.step(data())
    return model, guide, objective, svi


def assert_unchanged(before: dict, after: dict) -> None:
    assert state_differences(before, after) == []


def nan_data() -> torch.Tensor:
    x = data()
    x[3, 1] = float("nan")
    return x


@pytest.mark.parametrize("kind", GUARDED)
def test_nan_data_raises_naming_the_term_before_any_update(kind):
    pyro.enable_validation(False)  # the guard does not rely on Pyro's validation (which would catch NaN obs)
    model, guide, objective, svi = trained(kind)
    before = all_tensors(model, guide, objective)
    term = "partition-free bound" if kind != "aae" else "reconstruction"
    with pytest.raises(DivergenceError, match=f"{type(objective).__name__}: non-finite loss term.*'{term}'"):
        svi.step(nan_data())
    assert_unchanged(before, all_tensors(model, guide, objective))
    with pytest.raises(DivergenceError, match=term):
        objective.differentiable_loss(model, guide, nan_data())


@pytest.mark.parametrize("kind", GUARDED)
def test_skip_mode_leaves_parameters_unchanged_and_warns(kind):
    pyro.enable_validation(False)
    model, guide, objective, svi = trained(kind, mode="skip")
    before = all_tensors(model, guide, objective)
    with pytest.warns(RuntimeWarning, match=r"non-finite loss term.*the step was skipped \(on_nonfinite='skip'\)"):
        loss = svi.step(nan_data())
    assert loss != loss  # NaN: the skipped step's value
    assert_unchanged(before, all_tensors(model, guide, objective))
    value = objective.differentiable_loss(model, guide, nan_data())  # skip mode: no exception
    assert not torch.isfinite(value)
    svi.step(data())  # training goes on with the next good batch
    after = all_tensors(model, guide, objective)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("store:"))


@pytest.mark.parametrize("kind", ["ssm", "adversarial_cd"])
@pytest.mark.parametrize("validate", [True, False])
def test_huge_learning_rate_stops_before_the_diverging_update(kind, validate):
    pyro.enable_validation(validate)
    model, guide, objective, _, _ = build(kind, init_seed=0)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e3}), loss=objective)
    svi.step(data())  # moves every parameter by ~1e3: the prior's log_sigma leaves the float32 range
    before = all_tensors(model, guide, objective)
    # measured: with validation the GRBM prior refuses |log_sigma| = 1000 (naming it); without, the
    # loss terms (adversarial CD) or the gradients (SSM) come out NaN
    expected = "GRBMPrior.*log_sigma must satisfy" if validate else "EnergyPriorELBO: non-finite"
    with pytest.raises(DivergenceError, match=expected):
        svi.step(data())
    assert_unchanged(before, all_tensors(model, guide, objective))


class InfiniteGradient(PriorObjective):
    """Value 0 with a NaN gradient (the derivative of sqrt at 0 times that of |.| at 0)."""

    def loss(self, prior, z, log_q=None):
        energy = energy_function(prior)(z)
        return (energy - energy.detach()).abs().mean().sqrt()


class InfiniteGradientDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, z):
        out = self.linear(z)
        return (out - out.detach()).abs().sqrt()


@pytest.mark.parametrize("mode", ["raise", "skip"])
@pytest.mark.parametrize("kind", ["ssm", "aae"])
def test_non_finite_gradient_is_caught_after_backward(kind, mode):
    model, guide, _, optim, _ = build(kind, init_seed=0)
    if kind == "ssm":
        objective = EnergyPriorELBO(prior_objective=InfiniteGradient(), on_nonfinite=mode)
        bad = "GRBMPrior"
    else:
        objective = AdversarialAutoencoderLoss(discriminator=InfiniteGradientDiscriminator(), on_nonfinite=mode)
        bad = "aae_discriminator"
    svi = pyro.infer.SVI(model, guide, optim, loss=objective)
    objective.loss(model, guide, data())  # registers every parameter; the value is finite
    before = all_tensors(model, guide, objective)
    if mode == "raise":
        with pytest.raises(DivergenceError, match=f"non-finite gradient\\(s\\) of \\[.*{bad}"):
            svi.step(data())
    else:
        with pytest.warns(RuntimeWarning, match=f"non-finite gradient\\(s\\) of \\[.*{bad}.*skipped"):
            svi.step(data())
    assert_unchanged(before, all_tensors(model, guide, objective))


def test_on_nonfinite_is_validated():
    for make in (lambda v: EnergyPriorELBO(on_nonfinite=v), lambda v: AdversarialAutoencoderLoss(on_nonfinite=v)):
        with pytest.raises(ValueError, match=r"on_nonfinite must be one of \('raise', 'skip'\), got 'ignore'"):
            make("ignore")
    assert set(OBJECTIVES) >= set(GUARDED)
