r"""Train a DDVI VAE with PyTorch Lightning: one process, DDP on CPU processes, or DDP on several GPUs.

The route is Pyro's own one for PyTorch tooling (as in Pyro's ``examples/svi_lightning.py``):
``ELBO.__call__`` turns an objective and a (model, guide) pair into a ``torch.nn.Module`` whose forward
returns the differentiable loss, and a small ``LightningModule`` trains it with a plain
``torch.optim.Adam``. Lightning then supplies devices, data-parallel training and progress bars::

    loss_fn = DDVI_ELBO(**DDVI_KWARGS)(model, guide)   # a torch.nn.Module (Pyro's ELBOModule)
    guide.setup(x_batch)       # the guide builds its networks lazily: build them before collecting parameters
    trainer.fit(ELBOLightningModule(loss_fn, num_data=len(x_train)), train_loader)

The model is the DDVI paper's Table 1 VAE at a small scale, written as in the README: a pinwheel prior
on a 2-D latent and a Bernoulli decoder, with the demo's DDVI chain and objective
(:data:`pyro_diffvi.demo.DIFFUSION_KWARGS`, :data:`pyro_diffvi.demo.DDVI_KWARGS`). The model and its
decoder form an ``nn.Module`` so that ``loss_fn.parameters()`` holds the decoder as well as the guide.

*Scaling.* The data plate has the size of the whole training set (``num_data``) and each process sees
a minibatch of it, so each process's loss is an unbiased estimate of the full-data loss; DDP averages the
processes' gradients, which is the gradient of the same estimate on the processes' combined batch
(``--devices`` times ``--batch-size`` rows). *Random draws* differ between processes: each reseeds Pyro
with ``seed + 1 + rank`` when training starts (the initial parameters come from ``seed`` on every
process, and DDP broadcasts rank 0's anyway).

Usage::

    python examples/distributed_training.py --quick                       # synthetic data, 1 CPU process, seconds
    python examples/distributed_training.py --quick --devices 2 --strategy ddp        # DDP, 2 CPU processes (gloo)
    python examples/distributed_training.py --devices 2 --strategy ddp               # MNIST, 2 CPU processes
    python examples/distributed_training.py --accelerator gpu --devices 4 --strategy ddp   # 4 GPUs (NCCL)

With ``DDVI_ELBO(warmup_steps=N)`` (``--warmup-steps N``) the guide's Gaussian head takes no part in the
first ``N`` steps (the warm-up trains the guide by the sleep term, here without its head term): use
``--strategy ddp_find_unused_parameters_true`` then, else DDP stops at the second step ("your
LightningModule has parameters that were not used in producing the loss").

Writes ``results.json`` into ``--out``: the test ELBO per data point before and after training (with its
Monte-Carlo standard error), optimizer steps, training seconds, the guide's DDVI step counter on every
process, and the settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings

import lightning as L
import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pyro_diffvi.datasets import load_mnist
from pyro_diffvi.demo import DDVI_KWARGS, DIFFUSION_KWARGS, PRIOR_KWARGS
from pyro_diffvi.guides import DiffusionGuide
from pyro_diffvi.infer import DDVI_ELBO
from pyro_diffvi.metrics import elbo as elbo_estimate
from pyro_diffvi.nn import MLP
from pyro_diffvi.priors import Pinwheel
from pyro_diffvi.util import set_seed

IMAGE_DIM = 784


class PinwheelVAE(nn.Module):
    """``z ~ Pinwheel`` (2-D), ``x ~ Bernoulli(logits=decoder(z))``, in a data plate of ``num_data`` points
    of which ``x`` is a minibatch (default: ``x`` is all the data)."""

    def __init__(self, hidden_dims: tuple[int, ...] = (256,)) -> None:
        super().__init__()
        self.decoder = MLP(2, IMAGE_DIM, hidden_dims=hidden_dims, activation="leaky_relu")

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> None:
        pyro.module("decoder", self.decoder)
        prior = Pinwheel(**PRIOR_KWARGS, device=x.device)  # on the data's device, wherever Lightning put it
        with pyro.plate("data", num_data or x.shape[0], subsample_size=x.shape[0]):
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)


class ELBOLightningModule(L.LightningModule):
    """Trains an ELBOModule (``objective(model, guide)``) with Adam on every parameter it holds.

    :param loss_fn: the ELBOModule; its guide must be set up already (``guide.setup(x_batch)``).
    :param num_data: size of the training set (the data plate's size; each batch is a subsample).
    :param lr: Adam's learning rate.
    :param seed: the random draws of process ``rank`` are seeded with ``seed + 1 + rank``.
    """

    def __init__(self, loss_fn: nn.Module, num_data: int, lr: float = 1e-3, seed: int = 0) -> None:
        super().__init__()
        self.loss_fn = loss_fn
        self.num_data = num_data
        self.lr = lr
        self.seed = seed
        self.training_steps_per_rank: list[int] = []

    def on_train_start(self) -> None:
        pyro.set_rng_seed(self.seed + 1 + self.global_rank)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        loss = self.loss_fn(x, num_data=self.num_data)
        terms = getattr(self.loss_fn.elbo, "last_terms", {})
        self.log("loss", loss.detach() / self.num_data, prog_bar=True)  # per data point
        if "elbo" in terms:
            self.log("elbo", terms["elbo"] / self.num_data, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.loss_fn.parameters(), lr=self.lr)

    def on_train_end(self) -> None:
        count = getattr(self.loss_fn.guide, "training_steps", None)  # the DDVI step counter of this process
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            counts = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(counts, count)
        else:
            counts = [count]
        self.training_steps_per_rank = counts


def synthetic_images(num: int) -> torch.Tensor:
    """Binary 784-pixel "images" of pinwheel latents through a random logistic decoder (global RNG)."""
    z = Pinwheel(**PRIOR_KWARGS).sample((num,)) / PRIOR_KWARGS["radius"]
    weights, bias = 4.0 * torch.randn(2, IMAGE_DIM), torch.randn(IMAGE_DIM)
    return torch.bernoulli(torch.sigmoid(z @ weights + bias))


def load_data(args) -> tuple[torch.Tensor, torch.Tensor]:
    if args.data == "synthetic":
        x = synthetic_images(args.train_size + args.test_size)
        return x[: args.train_size], x[args.train_size :]
    x_train, _ = load_mnist("train", binarize="static", seed=args.seed)
    x_test, _ = load_mnist("test", binarize="static", seed=args.seed)
    return x_train[: args.train_size], x_test[: args.test_size]


def evaluate(loss_fn: nn.Module, x_test: torch.Tensor, num_particles: int) -> dict:
    """Test ELBO (nats per data point) of the trained model and guide, with its standard error."""
    device = next(loss_fn.parameters()).device
    bound = elbo_estimate(loss_fn.model, loss_fn.guide, x_test.to(device), num_particles=num_particles)
    return {"mean": bound.mean, "stderr": bound.stderr}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accelerator", default="cpu", help="cpu, gpu, auto, ... (Lightning's Trainer)")
    parser.add_argument("--devices", default="1", help="processes / GPUs: a count, a list like 0,1, or auto")
    parser.add_argument("--strategy", default="auto", help="auto, ddp, ddp_spawn, ddp_find_unused_parameters_true")
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="synthetic data, a small guide, 2 epochs: seconds")
    parser.add_argument(
        "--data", choices=("mnist", "synthetic"), default=None, help="default: mnist, synthetic with --quick"
    )
    parser.add_argument("--epochs", type=int, default=None, help="default 2")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimizer steps (-1: epochs)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="rows per process and step (default 128, 64 quick)"
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=0, help="DDVI_ELBO(warmup_steps=...)")
    parser.add_argument("--train-size", type=int, default=None, help="default 60000 (MNIST) or 1024 (synthetic)")
    parser.add_argument("--test-size", type=int, default=None, help="default 2000 (MNIST) or 256 (synthetic)")
    parser.add_argument("--eval-particles", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("results", "distributed_training"))
    args = parser.parse_args(argv)
    synthetic = (args.data or ("synthetic" if args.quick else "mnist")) == "synthetic"
    args.data = "synthetic" if synthetic else "mnist"
    args.epochs = 2 if args.epochs is None else args.epochs
    args.batch_size = args.batch_size or (64 if args.quick else 128)
    args.train_size = args.train_size or (1024 if synthetic else 60000)
    args.test_size = args.test_size or (256 if synthetic else 2000)
    return args


def _devices(value: str):
    if value == "auto":
        return value
    if "," in value:
        return [int(v) for v in value.split(",") if v]
    return int(value)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    interactive = sys.stderr.isatty()
    if not interactive:  # quiet in logs and CI: no progress bars, no device banners
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")  # the data are in memory
    warnings.filterwarnings("ignore", ".*LeafSpec.*", FutureWarning)  # lightning 2.6 with torch 2.13, harmless

    pyro.clear_param_store()
    set_seed(args.seed)  # the same data and initial parameters on every process
    x_train, x_test = load_data(args)
    model = PinwheelVAE((64,) if args.quick else (256,))
    if args.quick:
        diffusion = dict(DIFFUSION_KWARGS, num_steps=5, denoiser_hidden_dims=(32, 32), encoder_hidden_dims=(128, 64))
    else:
        diffusion = dict(DIFFUSION_KWARGS)
    guide = DiffusionGuide(model, latent="z", observed="x", **diffusion)
    guide.setup(x_train[: args.batch_size])  # networks are built lazily: build them before collecting parameters
    loss_fn = DDVI_ELBO(**DDVI_KWARGS, warmup_steps=args.warmup_steps)(model, guide)
    initial = evaluate(loss_fn, x_test, args.eval_particles)

    loader = DataLoader(TensorDataset(x_train), batch_size=args.batch_size, shuffle=True, drop_last=True)
    plan = ELBOLightningModule(loss_fn, num_data=len(x_train), lr=args.lr, seed=args.seed)
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=_devices(args.devices),
        strategy=args.strategy,
        num_nodes=args.num_nodes,
        max_epochs=args.epochs,
        max_steps=args.max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=interactive,
        enable_model_summary=interactive,
        default_root_dir=args.out,
    )
    start = time.time()
    trainer.fit(plan, train_dataloaders=loader)
    seconds = time.time() - start
    if not trainer.is_global_zero:
        return {}
    final = evaluate(loss_fn, x_test, args.eval_particles)
    results = {
        "elbo": final["mean"],
        "elbo_stderr": final["stderr"],
        "initial_elbo": initial["mean"],
        "initial_elbo_stderr": initial["stderr"],
        "steps": trainer.global_step,
        "seconds": seconds,
        "world_size": trainer.world_size,
        "training_steps_per_rank": plan.training_steps_per_rank,
        "effective_batch_size": args.batch_size * trainer.world_size,
        "settings": vars(args),
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(
        f"{args.data}: {results['steps']} steps on {trainer.world_size} process(es) in {seconds:.1f} s; test ELBO "
        f"{initial['mean']:.2f} -> {final['mean']:.2f} +- {final['stderr']:.2f} nats per data point; "
        f"results in {os.path.join(args.out, 'results.json')}"
    )
    return results


if __name__ == "__main__":
    main()
