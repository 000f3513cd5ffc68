"""Every guide with its defaults on the most common VAE: a 16-D latent with an N(0, I) prior on MNIST.

Setting (issue "DDVI defaults"): decoder 16-400-784 (Bernoulli logits), each guide's default encoder,
``N(0, I)`` prior, the first ``--train-size`` statically binarized training images, ``--epochs`` passes
of batch 128 with Adam 1e-3 (:func:`pyro_diffvi.demo.fit`), test ELBO on the first ``--test-size`` test
images (:func:`pyro_diffvi.metrics.elbo`, ``--particles`` draws each, with its Monte-Carlo SE),
and training seconds. Guides: ``gaussian`` (``GaussianGuide`` + ``Trace_ELBO``), ``iaf``
(``FlowGuide`` + ``Trace_ELBO``), ``ddvi`` (``DiffusionGuide`` + ``DDVI_ELBO()``), and the same three
after a 100-step wake-sleep start: ``gaussian_ws`` and ``iaf_ws`` (``WakeSleepStartLoss(warmup_steps=100)``),
``ddvi_warmup`` (``DDVI_ELBO(warmup_steps=100)``). The table gives
mean ± sd over seeds and each guide's training time relative to the Gaussian guide's in the same run.

Usage::

    python benchmarks/mnist16.py --seeds 0 1 2 --out results/mnist16
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO

from pyro_diffvi.datasets import load_mnist
from pyro_diffvi.demo import fit, make_decoder, make_model
from pyro_diffvi.guides import DiffusionGuide, FlowGuide, GaussianGuide
from pyro_diffvi.infer import DDVI_ELBO, WakeSleepStartLoss
from pyro_diffvi.metrics import elbo as elbo_estimate
from pyro_diffvi.util import resolve_device, set_seed

GUIDES = ("gaussian", "iaf", "ddvi", "gaussian_ws", "iaf_ws", "ddvi_warmup")
WARMUP_STEPS = 100
LATENT_DIM = 16


def start(name: str, objective):
    return WakeSleepStartLoss(objective=objective, warmup_steps=WARMUP_STEPS) if name.endswith("_ws") else objective


def make_guide_and_loss(name: str, model):
    if name in ("gaussian", "gaussian_ws"):
        return GaussianGuide(model, "z", "x"), start(name, Trace_ELBO())
    if name in ("iaf", "iaf_ws"):
        return FlowGuide(model, "z", "x"), start(name, Trace_ELBO())
    if name == "ddvi_warmup":
        return DiffusionGuide(model, "z", "x"), DDVI_ELBO(warmup_steps=WARMUP_STEPS)
    return DiffusionGuide(model, "z", "x"), DDVI_ELBO()


def run(name: str, seed: int, x_train, x_test, args, device) -> dict:
    pyro.clear_param_store()
    set_seed(seed)
    prior = dist.Normal(torch.zeros(LATENT_DIM, device=device), 1.0).to_event(1)
    model = make_model(make_decoder(LATENT_DIM, device=device, hidden_dims=(400,)), prior)
    guide, loss = make_guide_and_loss(name, model)
    seconds = fit(model, guide, loss, x_train, epochs=args.epochs, seed=seed, desc=name)
    with torch.no_grad():
        bound = elbo_estimate(model, guide, x_test, num_particles=args.particles)
    return dict(guide=name, seed=seed, elbo=bound.mean, elbo_stderr=bound.stderr, train_seconds=seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--guides", nargs="+", default=list(GUIDES), choices=GUIDES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--particles", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="directory for results.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rows = []
    for seed in args.seeds:
        x_train, _ = load_mnist("train", binarize="static", seed=seed, device=device)
        x_test, _ = load_mnist("test", binarize="static", seed=seed, device=device)
        x_train, x_test = x_train[: args.train_size], x_test[: args.test_size]
        for name in args.guides:
            rows.append(run(name, seed, x_train, x_test, args, device))
            r = rows[-1]
            print(
                f"seed {seed} {name:<11} test ELBO {r['elbo']:.2f} ± "
                f"{r['elbo_stderr']:.2f}, {r['train_seconds']:.0f} s",
                flush=True,
            )
    base = {r["seed"]: r["train_seconds"] for r in rows if r["guide"] == "gaussian"}
    print(f"\n{'guide':<11} {'test ELBO (mean ± sd over seeds)':>32} {'MC SE':>6} {'time vs Gaussian':>17}")
    for name in args.guides:
        mine = [r for r in rows if r["guide"] == name]
        elbos = [r["elbo"] for r in mine]
        sd = statistics.stdev(elbos) if len(elbos) > 1 else 0.0
        se = statistics.mean(r["elbo_stderr"] for r in mine)
        ratio = [r["train_seconds"] / base[r["seed"]] for r in mine if r["seed"] in base]
        ratio_text = f"{statistics.mean(ratio):.2f}x" if ratio else "-"
        print(f"{name:<11} {statistics.mean(elbos):>23.2f} ± {sd:<6.2f} {se:>6.2f} {ratio_text:>17}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"setting": vars(args), "records": rows}, indent=2))
        print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
