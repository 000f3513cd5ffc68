"""Seconds per SVI step of each guide, relative to GaussianGuide, in the DDVI paper's MNIST setting.

Setting (DDVI demo): encoder 784-1000-1000 (LeakyReLU) -> context, decoder 2-1000-1000-784 with a
Bernoulli likelihood, 2-D latent with a Pinwheel prior (N(0, I) if the priors package is missing),
batch 128, random binary data of MNIST shape (timing only). Every configuration runs in the same
process, interleaved over repeats; the table reports the fastest (least disturbed) and the median
step time. The machine's CPU may be shared: treat small ratios (< 1.2x) as noise.

Usage::

    python benchmarks/bench_guides.py --steps 10 --repeats 3 --out results/bench_guides
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch import nn
from tqdm import tqdm

from pyro_diffvi.guides import FlowGuide, GaussianGuide, HierarchicalGuide
from pyro_diffvi.infer import AdversarialAutoencoderLoss
from pyro_diffvi.util import resolve_device, set_seed

ENCODER = {"hidden_dims": (1000, 1000), "activation": "leaky_relu"}


def make_prior(device: torch.device) -> tuple[dist.TorchDistribution, str]:
    try:
        from pyro_diffvi.priors import Pinwheel
    except ImportError:
        return dist.Normal(torch.zeros(2, device=device), 1.0).to_event(1), "N(0, I)"
    return Pinwheel(device=device), "Pinwheel"


def make_model(device: torch.device) -> tuple[Callable, str]:
    prior, prior_name = make_prior(device)
    decoder = nn.Sequential(
        nn.Linear(2, 1000), nn.LeakyReLU(0.2), nn.Linear(1000, 1000), nn.LeakyReLU(0.2), nn.Linear(1000, 784)
    ).to(device)

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    return model, prior_name


def configurations() -> dict[str, tuple[Callable, Callable]]:
    """name -> (guide factory(model), loss factory())."""
    configs = {
        "Gaussian (AEVB)": (lambda m: GaussianGuide(m, "z", "x", **ENCODER), Trace_ELBO),
        "IAF flow, 4 layers (AEVB-IAF)": (lambda m: FlowGuide(m, "z", "x", num_flows=4, **ENCODER), Trace_ELBO),
        "spline flow, 4 layers": (lambda m: FlowGuide(m, "z", "x", num_flows=4, flow="spline", **ENCODER), Trace_ELBO),
        "hierarchical (H-AEVB)": (lambda m: HierarchicalGuide(m, "z", "x", **ENCODER), Trace_ELBO),
        "Gaussian + adversarial (AAEB)": (lambda m: GaussianGuide(m, "z", "x", **ENCODER), AdversarialAutoencoderLoss),
    }
    try:
        from pyro_diffvi.guides import DiffusionGuide
    except ImportError:
        return configs
    configs["diffusion, 20 steps (Trace_ELBO)"] = (lambda m: DiffusionGuide(m, "z", "x", num_steps=20, **ENCODER), Trace_ELBO)
    try:
        from pyro_diffvi.infer import DDVI_ELBO
    except ImportError:
        return configs
    configs["diffusion, 20 steps (DDVI_ELBO)"] = (lambda m: DiffusionGuide(m, "z", "x", num_steps=20, **ENCODER), DDVI_ELBO)
    return configs


def time_steps(svi: SVI, x: torch.Tensor, steps: int) -> float:
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        svi.step(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="SVI steps per timing")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timings per configuration")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="directory for results.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    set_seed(args.seed)
    x = torch.bernoulli(torch.full((args.batch_size, 784), 0.2, device=device))

    runs, prior_name = {}, None
    for name, (make_guide, make_loss) in tqdm(configurations().items(), desc="set-up"):
        pyro.clear_param_store()
        model, prior_name = make_model(device)
        guide = make_guide(model)
        svi = SVI(model, guide, Adam({"lr": 1e-4}), make_loss())
        time_steps(svi, x, args.warmup)
        runs[name] = svi
    times = {name: [] for name in runs}
    for _ in tqdm(range(args.repeats), desc="repeats"):
        for name, svi in runs.items():
            times[name].append(time_steps(svi, x, args.steps))

    base_med, base_min = statistics.median(times["Gaussian (AEVB)"]), min(times["Gaussian (AEVB)"])
    rows = []
    for name, ts in times.items():
        med, best = statistics.median(ts), min(ts)
        rows.append({"guide": name, "median_s_per_step": med, "min_s_per_step": best, "max_s_per_step": max(ts),
                     "relative_min": best / base_min, "relative_median": med / base_med})
    print(f"\nMNIST setting: batch {args.batch_size}, prior {prior_name}, device {device}, "
          f"{torch.get_num_threads()} threads, {args.repeats} interleaved repeats x {args.steps} steps")
    print("(shared CPU: 'min' is the least disturbed timing; treat ratios within ~1.2x as noise)")
    print(f"{'guide':<36} {'min s/step':>10} {'median':>8} {'max':>8} {'vs Gauss (min)':>15} {'(median)':>9}")
    for r in rows:
        print(f"{r['guide']:<36} {r['min_s_per_step']:>10.4f} {r['median_s_per_step']:>8.4f} "
              f"{r['max_s_per_step']:>8.4f} {r['relative_min']:>14.2f}x {r['relative_median']:>8.2f}x")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"batch_size": args.batch_size, "prior": prior_name, "device": str(device),
                "threads": torch.get_num_threads(), "steps": args.steps, "repeats": args.repeats}
        (out / "results.json").write_text(json.dumps({"setting": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
