"""Seconds per training step of DDVI in the DDVI paper's MNIST setting: Pyro vs pure PyTorch vs a Gaussian guide.

Setting (the main demo's, from :mod:`pyro_diffvi.demo`): encoder 784-1000-1000 (LeakyReLU), decoder
2-1000-1000-784 (Bernoulli), Pinwheel prior of radius 10, denoiser with 4 hidden layers of 128 and a time
embedding, T = 20, batch 128, random binary data of MNIST shape (timing only). Rows:

* ``Gaussian guide (Trace_ELBO)``: the AEVB baseline;
* ``DDVI defaults``: ``DiffusionGuide`` + ``DDVI_ELBO()`` with their defaults in ``SVI`` (target <= 2x
  the Gaussian guide), and the same with ``path_gradient=False`` (the cost of the path-derivative pass)
  and with ``num_sleep_particles=1`` (the cost of the sleep term's 8 noise draws);
* ``DDVI measured``: ``DiffusionGuide(selection="measured")`` + ``DDVI_ELBO()`` (the Gaussian head, the
  averaged chain and ``num_rws_particles`` chain draws per datum, one vectorized model call), and the same
  with 2 reweighted draws;
* ``Pyro DDVI, paper chain (<sleep>)``: the paper's chain (linear schedule, fixed variances, latent
  coordinates) with ``DDVI_ELBO(sleep=...)``;
* ``PyTorch reference (<sleep>)``: that chain's networks, objective and arithmetic in plain PyTorch
  (``ddvi_loss`` of ``tests/reference.py``, the test oracle, with the denoiser's per-chain ``stepper``) with
  ``torch.optim.Adam``: the ratio Pyro / reference is Pyro's overhead (target <= 1.2x).
All rows run in one process, interleaved over repeats; ``min`` is the least disturbed timing.

Usage::

    python benchmarks/bench_ddvi.py --steps 10 --repeats 3 --out results/bench_ddvi
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from _common import interleaved_timings, parse_setting, print_table, write_json
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch.distributions import Bernoulli

from pyro_diffvi.demo import DIFFUSION_KWARGS, ENCODER_KWARGS, PRIOR_KWARGS, make_decoder, make_model
from pyro_diffvi.guides import DiffusionGuide, GaussianGuide
from pyro_diffvi.infer import DDVI_ELBO
from pyro_diffvi.priors import Pinwheel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for the test oracle
from tests.reference import ddvi_loss  # noqa: E402

SLEEPS = ("simplified", "wake-sleep")
BASELINE = "Gaussian guide (Trace_ELBO)"
PAPER_CHAIN = DIFFUSION_KWARGS  # the demo's chain: the paper's (linear schedule, fixed variances, latent coordinates)


def pyro_step(guide_class, loss, x, device, index: int, **guide_kwargs):
    model = make_model(make_decoder(2, device=device), Pinwheel(**PRIOR_KWARGS, device=device), name=f"decoder{index}")
    guide = guide_class(model, "z", "x", name=f"guide{index}", **guide_kwargs, **ENCODER_KWARGS)
    svi = SVI(model, guide, Adam({"lr": 1e-4}), loss)
    return lambda: svi.step(x)


def reference_step(sleep: str, x, device, index: int):
    """The pure-PyTorch DDVI step on a DiffusionGuide's networks (built, not trained, through Pyro)."""
    decoder, prior = make_decoder(2, device=device), Pinwheel(**PRIOR_KWARGS, device=device)
    model = make_model(decoder, prior)
    guide = DiffusionGuide(model, "z", "x", name=f"guide{index}", **PAPER_CHAIN, **ENCODER_KWARGS)
    guide(x)  # builds the networks
    optimizer = torch.optim.Adam([*guide.parameters(), *decoder.parameters()], lr=1e-4)

    def step():
        out = ddvi_loss(
            x,
            encoder=guide.context,
            head=lambda c: guide.loc_scale("z", c),
            denoiser=guide.denoisers[0],
            chain_stepper=guide.denoisers[0].stepper,  # the same per-chain precomputation as the Pyro path
            log_likelihood=lambda x, z: Bernoulli(logits=decoder(z)).log_prob(x).sum(-1),
            prior_log_prob=prior.log_prob,
            sample_prior=lambda n: prior.sample((n,)),
            sample_likelihood=lambda z: Bernoulli(logits=decoder(z)).sample(),
            betas=guide.process.betas,
            sleep=sleep,
            sleep_head=True,
        )
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()

    return step


def main() -> None:
    args, device, x = parse_setting(__doc__.split("\n")[0])

    runs = {BASELINE: pyro_step(GaussianGuide, Trace_ELBO(), x, device, 0)}
    runs["DDVI defaults"] = pyro_step(DiffusionGuide, DDVI_ELBO(), x, device, 1)
    runs["DDVI defaults, path_gradient=False"] = pyro_step(
        DiffusionGuide, DDVI_ELBO(), x, device, 2, path_gradient=False
    )
    runs["DDVI defaults, num_sleep_particles=1"] = pyro_step(
        DiffusionGuide, DDVI_ELBO(num_sleep_particles=1), x, device, 9
    )
    runs["DDVI measured (selection='measured')"] = pyro_step(
        DiffusionGuide, DDVI_ELBO(), x, device, 11, selection="measured"
    )
    runs["DDVI measured, num_rws_particles=2"] = pyro_step(
        DiffusionGuide, DDVI_ELBO(num_rws_particles=2), x, device, 12, selection="measured"
    )
    baselines = {name: BASELINE for name in runs if name.startswith(("DDVI defaults", "DDVI measured"))}
    for i, sleep in enumerate(SLEEPS):
        pyro_name, ref_name = f"Pyro DDVI, paper chain ({sleep})", f"PyTorch reference ({sleep})"
        runs[pyro_name] = pyro_step(
            DiffusionGuide, DDVI_ELBO(sleep=sleep, num_sleep_particles=1), x, device, 2 * i + 3, **PAPER_CHAIN
        )
        runs[ref_name] = reference_step(sleep, x, device, 2 * i + 4)
        baselines[pyro_name], baselines[ref_name] = ref_name, BASELINE
    timings = interleaved_timings(runs, args.steps, args.repeats, args.warmup, device)
    print(f"\nMNIST setting: batch {args.batch_size}, T = 20, device {device}, {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved repeats x {args.steps} steps")
    rows = print_table(timings, baselines)
    write_json(args.out, vars(args), rows)


if __name__ == "__main__":
    main()
