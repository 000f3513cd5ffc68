"""Pyro's other training routes: every objective as an ELBOModule with a plain torch optimizer, PyTorch
Lightning (examples/distributed_training.py), and DDP on CPU processes (gloo) against single-process
training on the concatenated batch."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.multiprocessing as mp
from pyro.infer import SVI, Trace_ELBO
from torch import nn

from pyro_diffvi.guides import DiffusionGuide, GaussianGuide
from pyro_diffvi.infer import (
    DDVI_ELBO,
    AdversarialAutoencoderLoss,
    AdversarialCDLoss,
    EnergyPriorELBO,
    SlicedScoreMatchingLoss,
)
from pyro_diffvi.priors import GRBMPrior
from pyro_diffvi.util import set_seed
from tests.integration import _distributed as D

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "distributed_training.py"


# ---- every objective as an ELBOModule ------------------------------------------------------------


class GRBMVAE(nn.Module):
    """z ~ GRBM prior (learnable, unnormalized), x ~ N(decoder(z), 0.5^2 I)."""

    def __init__(self) -> None:
        super().__init__()
        self.prior = GRBMPrior(dim=D.Z_DIM, num_hidden=3, init_scale=0.5)
        self.decoder = nn.Linear(D.Z_DIM, D.X_DIM)

    def forward(self, x: torch.Tensor) -> None:
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior())
            pyro.sample("x", dist.Normal(self.decoder(z), 0.5).to_event(1), obs=x)


SMALL = dict(encoder_hidden_dims=(8,))
DIFFUSION = dict(num_steps=3, denoiser_hidden_dims=(8,), time_dim=4, **SMALL)
# name: (objective, model class, guide)
OBJECTIVES = {
    "trace_elbo": (Trace_ELBO, D.TinyVAE, lambda m: DiffusionGuide(m, "z", "x", **DIFFUSION)),
    "ddvi": (DDVI_ELBO, D.TinyVAE, lambda m: DiffusionGuide(m, "z", "x", **DIFFUSION)),
    "ddvi_simplified_warmup": (
        lambda: DDVI_ELBO(sleep="simplified", warmup_steps=2),
        D.TinyVAE,
        lambda m: DiffusionGuide(m, "z", "x", standardize=False, conditional=False, **DIFFUSION),
    ),
    "energy_ssm": (
        lambda: EnergyPriorELBO(prior_objective=SlicedScoreMatchingLoss()),
        GRBMVAE,
        lambda m: GaussianGuide(m, "z", "x", **SMALL),
    ),
    "energy_adversarial_cd": (
        lambda: EnergyPriorELBO(prior_objective=AdversarialCDLoss(num_transforms=1, hidden_dims=(8,))),
        GRBMVAE,
        lambda m: GaussianGuide(m, "z", "x", **SMALL),
    ),
    "aae": (
        lambda: AdversarialAutoencoderLoss(hidden_dims=(8,)),
        D.TinyVAE,
        lambda m: GaussianGuide(m, "z", "x", **SMALL),
    ),
}


def objective_modules(objective) -> dict[str, nn.Module]:
    """The modules an objective builds and keeps itself (the AAE's discriminators, AdversarialCDLoss's flow).

    ``ELBOModule.parameters()`` does not hold them: the objective is not a ``torch.nn.Module``, and they
    are built on its first evaluation. ``SVI`` finds them through Pyro's param store; a plain torch
    optimizer must be given them."""
    owners = {"objective": objective, "prior_objective": getattr(objective, "prior_objective", None)}
    return {
        f"{owner}.{attr}": value
        for owner, obj in owners.items() if obj is not None
        for attr, value in vars(obj).items() if isinstance(value, nn.Module)
    }


def _train_route(name: str, route: str, x: torch.Tensor, steps: int, lr: float = 1e-2) -> dict:
    make_objective, make_model, make_guide = OBJECTIVES[name]
    pyro.clear_param_store()
    set_seed(0)
    model = make_model().to(x.dtype)
    guide = make_guide(model)
    guide.setup(x)  # the guide builds its networks lazily: build them before collecting parameters
    objective = make_objective()
    with torch.no_grad():
        objective.loss(model, guide, x)  # builds the objective's own modules, if any (same in both routes)
    set_seed(1)
    loss_fn = objective(model, guide)  # Pyro's ELBOModule
    extra = objective_modules(objective)
    if route == "svi":
        svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}), loss=objective)
        for _ in range(steps):
            svi.step(x)
    else:
        params = {id(p): p for m in [loss_fn, *extra.values()] for p in m.parameters()}
        optim = torch.optim.Adam(params.values(), lr=lr)
        for _ in range(steps):
            optim.zero_grad()
            loss_fn(x).backward()
            optim.step()
    named = dict(loss_fn.named_parameters())
    named.update({f"{k}.{n}": p for k, m in extra.items() for n, p in m.named_parameters()})
    return {
        "params": {n: p.detach().clone() for n, p in named.items()},
        "training_steps": getattr(guide, "training_steps", None),
    }


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_objective_trains_as_an_elbo_module_exactly_as_svi(name):
    """``objective(model, guide)`` + ``torch.optim.Adam`` takes the same steps as ``SVI`` + ``pyro.optim.Adam``
    from the same seeds: every parameter (guide, model, prior, the objective's own modules) ends equal,
    and has moved. The DDVI warm-up counter counts the module's calls as SVI's steps."""
    steps = 4
    x = D.dataset()
    svi = _train_route(name, "svi", x, steps)
    module = _train_route(name, "module", x, steps)
    initial = _train_route(name, "module", x, 0)
    assert svi["params"].keys() == module["params"].keys()
    for pname, value in module["params"].items():
        torch.testing.assert_close(value, svi["params"][pname], rtol=1e-9, atol=1e-12, msg=pname)
        assert not torch.equal(value, initial["params"][pname]), f"{pname} did not move"
    if isinstance(OBJECTIVES[name][0](), DDVI_ELBO):
        assert module["training_steps"] == svi["training_steps"] == steps


# ---- DDP on 2 CPU processes (gloo) against one process -------------------------------------------


def test_ddp_gloo_equals_single_process_on_the_concatenated_batch(tmp_path):
    r"""DDP on 2 CPU processes (gloo, ``torch.multiprocessing.spawn``) trains exactly as one process on the
    concatenated batch, for 3 SGD steps of ``DDVI_ELBO(warmup_steps=1)`` with a ``DiffusionGuide``.

    *Scaling.* Pyro's ELBO loss is a sum over data points, and DDP averages the ranks' gradients. With
    ``W = 2`` ranks of ``B`` rows each and ``L_r`` the loss summed over rank ``r``'s rows, each rank's
    loss is ``W * L_r`` (data plate of full size ``W B`` with subsample size ``B``, or the loss times
    ``W``), so the averaged gradient is

    .. math:: \frac1W \sum_r \nabla (W L_r) = \nabla \sum_r L_r,

    the gradient of the loss summed over the concatenated batch of ``W B`` rows, the single-process one.

    *Random draws.* Rank ``r`` seeds step ``s`` with ``step_seed(s, r)`` (reparameterization noise, the
    sleep term's draws of ``(x, z)`` from the model, its ``t`` and ``eps``); the single-process reference
    evaluates the two halves of the batch with the same seeds and sums them. So the comparison is exact:
    parameters and their updates agree to 1e-6 relative (float64; the measured difference is ~1e-16).

    *Warm-up state.* The guide's ``training_steps`` counter ends at 3 on both ranks, in the reference
    and in plain single-process training; the warm-up ends inside the run (step 0 is sleep-only), so a
    counter out of step would also have changed the parameters.
    """
    dtype = torch.float64
    init_file = tmp_path / "rendezvous"  # a file store: no TCP port to pick, so no clash with other runs
    mp.spawn(D.ddp_worker, args=(str(init_file), str(tmp_path), dtype), nprocs=D.WORLD_SIZE, join=True)

    for variant in D.VARIANTS:
        initial, reference = D.train_single_process(variant, dtype)
        ranks = [torch.load(tmp_path / f"{variant}_rank{r}.pt") for r in range(D.WORLD_SIZE)]
        assert ranks[0]["params"].keys() == reference["params"].keys()
        for name, expected in reference["params"].items():
            for rank in ranks:
                got = rank["params"][name]
                assert torch.equal(got, ranks[0]["params"][name]), f"{variant}: ranks disagree on {name}"
                torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-10, msg=f"{variant}: {name}")
                start = initial["params"][name]
                torch.testing.assert_close(got - start, expected - start, rtol=1e-6, atol=1e-12,
                                           msg=f"{variant}: update of {name}")
        moved = sum((p - initial["params"][n]).norm() ** 2 for n, p in reference["params"].items()) ** 0.5
        assert moved > 1e-3, f"{variant}: the parameters hardly moved ({moved})"
        torch.testing.assert_close(
            torch.tensor(ranks[0]["losses"]), torch.tensor(reference["losses"]), rtol=1e-9, atol=0
        )
        assert [r["training_steps"] for r in ranks] == [D.STEPS] * D.WORLD_SIZE, variant
        assert reference["training_steps"] == D.STEPS

    # plain single-process training (one loss evaluation per step) counts the same
    x = D.dataset(dtype)
    loss_fn = D.build(x)
    optim = torch.optim.SGD(loss_fn.parameters(), lr=D.LR)
    for _ in range(D.STEPS):
        optim.zero_grad()
        loss_fn(x).backward()
        optim.step()
    assert loss_fn.guide.training_steps == D.STEPS


# ---- PyTorch Lightning (examples/distributed_training.py) ----------------------------------------


def _load_example():
    spec = importlib.util.spec_from_file_location("distributed_training", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_results(results: dict, world_size: int) -> None:
    assert results["world_size"] == world_size
    assert results["steps"] > 0 and results["seconds"] > 0
    # the DDVI step counter of every process equals the optimizer steps
    assert results["training_steps_per_rank"] == [results["steps"]] * world_size
    assert results["elbo"] > results["initial_elbo"] + 5 * (results["elbo_stderr"] + results["initial_elbo_stderr"])


def test_lightning_single_process_trains(tmp_path):
    """The example's LightningModule trains the ELBOModule on one CPU process: the test ELBO goes up."""
    example = _load_example()
    results = example.main(["--quick", "--accelerator", "cpu", "--devices", "1", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert results["steps"] == 32  # 2 epochs of 1024 rows in batches of 64
    _check_results(results, world_size=1)


def test_lightning_ddp_two_cpu_processes(tmp_path):
    """The example runs unchanged as Lightning DDP on 2 CPU processes (gloo): it launches the second
    process itself, both count the same DDVI steps, and the ELBO goes up."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("MASTER_PORT", None)  # Lightning picks a free port
    command = [sys.executable, str(EXAMPLE), "--quick", "--accelerator", "cpu", "--devices", "2",
               "--strategy", "ddp", "--out", str(tmp_path)]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["steps"] == 16  # each process sees half of each epoch
    _check_results(results, world_size=2)
