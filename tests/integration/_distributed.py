"""Set-up shared by ``tests/integration/test_distributed.py`` and the DDP worker processes it spawns.

It lives in its own module so that the workers started by ``torch.multiprocessing.spawn`` import only
this (not pytest's test module). Everything here is deterministic given the seeds it names.

The two ways of scaling a rank's loss (``VARIANTS``), for ``W`` ranks with ``B`` rows each:

* ``"plate"``: the model's data plate has the full size ``W * B`` and subsample size ``B``, so Pyro
  scales each rank's loss by ``W`` (the usual minibatch recipe: pass ``num_data``);
* ``"scaled"``: the plate has size ``B`` and the rank multiplies its loss by ``W`` itself.

Either way rank ``r``'s loss is ``W * L_r`` with ``L_r`` the ELBO loss summed over its own rows, DDP
averages the ranks' gradients, and the update uses ``(1/W) sum_r grad(W L_r) = grad(sum_r L_r)``: the
gradient of the loss summed over the concatenated batch of ``W * B`` rows.
"""

from __future__ import annotations

import os

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_diffvi.guides import DiffusionGuide
from pyro_diffvi.infer import DDVI_ELBO
from pyro_diffvi.util import set_seed

WORLD_SIZE = 2
ROWS_PER_RANK = 4
X_DIM, Z_DIM = 5, 2
STEPS = 3
WARMUP_STEPS = 1  # step 0 trains the sleep term alone, steps 1.. the full objective
LR = 1e-3
VARIANTS = ("plate", "scaled")


class TinyVAE(nn.Module):
    """z ~ N(0, I_2), x ~ N(decoder(z), 0.5^2 I_5), in a data plate of size ``num_data`` (default: the rows of x)."""

    def __init__(self) -> None:
        super().__init__()
        self.decoder = nn.Sequential(nn.Linear(Z_DIM, 8), nn.Tanh(), nn.Linear(8, X_DIM))

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> None:
        pyro.module("decoder", self.decoder)
        size = x.shape[0] if num_data is None else num_data
        with pyro.plate("data", size, subsample_size=x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(Z_DIM), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), 0.5).to_event(1), obs=x)


def dataset(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The concatenated batch: ``WORLD_SIZE * ROWS_PER_RANK`` rows; rank ``r`` holds rows ``r*B .. (r+1)*B - 1``."""
    g = torch.Generator().manual_seed(7)
    return torch.randn(WORLD_SIZE * ROWS_PER_RANK, X_DIM, generator=g).to(dtype)


def shard(x: torch.Tensor, rank: int) -> torch.Tensor:
    return x[rank * ROWS_PER_RANK : (rank + 1) * ROWS_PER_RANK]


def build(x_setup: torch.Tensor) -> pyro.infer.elbo.ELBOModule:
    """A fresh model + ``DiffusionGuide`` + ``DDVI_ELBO`` as an ELBOModule, initialized from seed 0.

    ``guide.setup`` builds the guide's networks now (they are built lazily on the first call), so
    that ``parameters()`` is complete before an optimizer or DDP collects it."""
    pyro.clear_param_store()
    set_seed(0)
    model = TinyVAE().to(x_setup.dtype)
    guide = DiffusionGuide(
        model, latent="z", observed="x", num_steps=3, encoder_hidden_dims=(8,), denoiser_hidden_dims=(8,), time_dim=4
    )
    guide.setup(x_setup)
    return DDVI_ELBO(warmup_steps=WARMUP_STEPS)(model, guide)


def step_seed(step: int, rank: int) -> int:
    """The seed of rank ``rank``'s random draws (reparameterization noise, sleep draws) at ``step``."""
    return 1000 + WORLD_SIZE * step + rank


def rank_loss(loss_fn, x_rank: torch.Tensor, variant: str) -> torch.Tensor:
    """``W * L_r``: rank ``r``'s loss, scaled so that DDP's average of gradients is the gradient of the sum."""
    if variant == "plate":
        return loss_fn(x_rank, num_data=WORLD_SIZE * x_rank.shape[0])
    if variant == "scaled":
        return WORLD_SIZE * loss_fn(x_rank)
    raise ValueError(variant)


def snapshot(loss_fn, losses: list[float]) -> dict:
    return {
        "params": {n: p.detach().clone() for n, p in loss_fn.named_parameters()},
        "training_steps": loss_fn.guide.training_steps,
        "losses": losses,
    }


def train_single_process(variant: str, dtype: torch.dtype = torch.float64) -> tuple[dict, dict]:
    """Single-process SGD on the concatenated batch, with each rank's half drawn from that rank's seed.

    Each step evaluates the loss summed over all ``W * B`` rows as the sum of the halves' losses
    (``variant="scaled"``: data plate of the half's size, scale 1) or as the mean of the ranks' own
    losses (``variant="plate"``: the ranks' data plate, scale ``W``, so the subsample draws match).
    The guide's step counter is that of one optimizer step per step, as on every rank (each rank's
    guide counts its one loss evaluation): it is reset before each half. Returns the snapshot of the
    initial parameters and of the trained state."""
    x = dataset(dtype)
    loss_fn = build(shard(x, 0))
    initial = snapshot(loss_fn, [])
    optim = torch.optim.SGD(loss_fn.parameters(), lr=LR)
    losses = []
    for step in range(STEPS):
        optim.zero_grad()
        start, total = loss_fn.guide.training_steps, 0.0
        for rank in range(WORLD_SIZE):
            loss_fn.guide.training_steps = start
            set_seed(step_seed(step, rank))
            if variant == "scaled":
                total = total + loss_fn(shard(x, rank))
            else:
                total = total + rank_loss(loss_fn, shard(x, rank), variant) / WORLD_SIZE
        total.backward()
        optim.step()
        losses.append(total.item())
    return initial, snapshot(loss_fn, losses)


def ddp_worker(rank: int, init_file: str, out_dir: str, dtype: torch.dtype) -> None:
    """One DDP rank (gloo, CPU): trains each variant for ``STEPS`` SGD steps and saves its final state."""
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        x_rank = shard(dataset(dtype), rank)
        for variant in VARIANTS:
            loss_fn = build(x_rank)
            # find_unused_parameters: parameters unused in the warm-up step are allowed
            ddp = DistributedDataParallel(loss_fn, find_unused_parameters=True)
            optim = torch.optim.SGD(ddp.parameters(), lr=LR)
            losses = []
            for step in range(STEPS):
                set_seed(step_seed(step, rank))
                optim.zero_grad()
                loss = rank_loss(ddp, x_rank, variant)
                loss.backward()  # DDP all-reduces (averages) the gradients here
                optim.step()
                reduced = loss.detach() / WORLD_SIZE
                torch.distributed.all_reduce(reduced)  # the loss summed over the concatenated batch
                losses.append(reduced.item())
            torch.save(snapshot(loss_fn, losses), os.path.join(out_dir, f"{variant}_rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()
