r"""Flow priors and the Generative Latent Flow on MNIST (Ch. 3 of Z. Xiao, *Designing Deep Generative Models
with Symbiotic Composition*, PhD dissertation, University of Chicago, 2022; Xiao, Yan & Amit, *Generative
Latent Flow*, arXiv:1905.10485, 2019).

Three models with the same encoder and decoder (MLPs), a 20-dimensional latent and grey-level pixels in
[0, 1] with the likelihood :math:`x \mid z \sim \mathcal N(G(z), \sigma^2 I)` (``--sigma``):

* ``vae``: prior :math:`\mathcal N(0, I)`, :class:`~pyro_diffvi.guides.GaussianGuide`, ``Trace_ELBO``;
* ``vae_flow``: a :class:`~pyro_diffvi.priors.FlowPrior` (Eq. 3.3), same guide, ``Trace_ELBO``
  (Eq. 3.4 with :math:`\beta = 1`; the prior trains with the encoder and decoder);
* ``glf``: the same FlowPrior, a deterministic :class:`~pyro_diffvi.guides.EncoderGuide` and
  :class:`~pyro_diffvi.infer.GLFLoss` (Eq. 3.7: reconstruction plus the flow's NLL of the detached codes).

The model is one Pyro program for the three::

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior())                       # N(0, I) or the FlowPrior
            pyro.sample("x", dist.Normal(decoder(z), sigma).to_event(1), obs=x)

Reported per (model, seed) on test images: ``recon_mse``, the per-pixel squared error of the
reconstruction :math:`G(\mu(x))` (the code: the guide's mean, or :math:`E(x)` for GLF); ``mmd``, the MMD
(the DDVI paper's kernel mixture, :func:`~pyro_diffvi.metrics.mmd`) between decoded prior samples
:math:`G(z)`, :math:`z \sim p(z)`, and test images; and, as a floor, the MMD between training and test
images. The dissertation's Table 3.1 reports FID (MNIST: VAE 28.2, VAE + flow prior 28.3, GLF 8.2); we have
no Inception network, so compare the direction of the MMD column, not values. The dissertation's flow has
4 affine coupling blocks; ours has ``--num-transforms`` autoregressive layers (``--flow iaf``, the
library's :class:`~pyro_diffvi.nn.ConditionalFlow`).

Run ``python examples/flow_prior_mnist.py --quick`` (2 CPU cores, minutes) or the full scale (60,000
images, 100 epochs, lr halved after epoch 50 as in the dissertation) with ``--device cuda``. Writes
``--out``/results.json (records), table.md and samples.png (decoded prior samples per model).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402
from pyro.infer import SVI, Trace_ELBO  # noqa: E402
from pyro.optim import ClippedAdam  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from pyro_diffvi.datasets import Minibatches, load_mnist  # noqa: E402
from pyro_diffvi.guides import (
    EncoderGuide,  # noqa: E402
    GaussianGuide,  # noqa: E402
)
from pyro_diffvi.infer import GLFLoss  # noqa: E402
from pyro_diffvi.metrics import mmd  # noqa: E402
from pyro_diffvi.nn import MLP  # noqa: E402
from pyro_diffvi.plots import plot_image_grid  # noqa: E402
from pyro_diffvi.priors import FlowPrior  # noqa: E402
from pyro_diffvi.util import set_seed  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _cells import start_run, write_results  # noqa: E402 (shared by the example scripts)

MODELS = ("vae", "vae_flow", "glf")


class StandardNormal(nn.Module):
    """The VAE's fixed prior N(0, I), called like a FlowPrior."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("zero", torch.zeros(dim))

    def forward(self):
        return dist.Normal(self.zero, 1.0).to_event(1)


def build(kind: str, args, device):
    """The model, guide, objective, prior and decoder of one cell."""
    latent = args.latent
    decoder = nn.Sequential(MLP(latent, 784, hidden_dims=args.hidden, activation="relu"), nn.Sigmoid()).to(device)
    if kind == "vae":
        prior = StandardNormal(latent).to(device)
    else:
        prior = FlowPrior(latent, num_transforms=args.num_transforms, flow=args.flow,
                          hidden_dims=(args.flow_hidden,) * 2, name="prior").to(device)

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior())
            pyro.sample("x", dist.Normal(decoder(z), args.sigma).to_event(1), obs=x)

    if kind == "glf":
        guide = EncoderGuide(model, "z", "x", encoder_hidden_dims=args.hidden)
        objective = GLFLoss(reconstruction_weight=args.reconstruction_weight)
    else:
        guide = GaussianGuide(model, "z", "x", encoder_hidden_dims=args.hidden)
        objective = Trace_ELBO()
    return model, guide, objective, prior, decoder


def codes(kind: str, guide, x: torch.Tensor) -> torch.Tensor:
    """The code of each image: E(x) for GLF, the posterior mean for the VAEs."""
    if kind == "glf":
        return guide.encode(x)
    return guide.loc_scale("z", guide.context(x))[0]


def run_cell(kind: str, seed: int, data, args, device) -> dict:
    x_train, x_test = data
    pyro.clear_param_store()
    set_seed(seed)
    model, guide, objective, prior, decoder = build(kind, args, device)
    guide(x_train[:2])  # build the guide's networks

    def lr(_name):  # the dissertation halves the learning rate half-way; weight decay on the flow only
        return {"lr": args.lr, "clip_norm": 100.0,
                "weight_decay": args.flow_weight_decay if _name.startswith("prior") else 0.0}

    svi = SVI(model, guide, ClippedAdam(lr), objective)
    batches = Minibatches(x_train, batch_size=args.batch_size, shuffle=True, drop_last=True, seed=seed)
    t0 = time.time()
    losses = []
    for epoch in range(args.epochs):
        if epoch == args.epochs // 2 and args.epochs > 1:
            for opt in svi.optim.optim_objs.values():
                for group in opt.param_groups:
                    group["lr"] = args.lr / 2
        for x in tqdm(batches, desc=f"{kind} seed {seed} epoch {epoch + 1}/{args.epochs}", leave=False, disable=None):
            losses.append(svi.step(x) / x.shape[0])
    train_s = time.time() - t0
    with torch.no_grad():
        recon = torch.cat([decoder(codes(kind, guide, xb)) for xb in x_test.split(1000)])
        recon_mse = (recon - x_test).pow(2).mean(-1)
        z = prior().sample((x_test.shape[0],))
        samples = decoder(z)
        sample_mmd = mmd(samples, x_test).item()
        code_scale = codes(kind, guide, x_test[:1000]).std(0).mean().item()
    return {
        "model": kind, "seed": seed,
        "recon_mse": recon_mse.mean().item(), "recon_mse_se": recon_mse.std().item() / math.sqrt(len(recon_mse)),
        "mmd": sample_mmd, "final_loss_per_image": statistics.fmean(losses[-20:]),
        "code_std": code_scale, "train_seconds": train_s, "samples": samples[:64].cpu(),
    }


def summarize(records: list[dict], floor: float) -> str:
    lines = ["| model | recon MSE / pixel | MMD(samples, test) | code std | train s | seeds |",
             "|---|---|---|---|---|---|"]
    for kind in MODELS:
        rows = [r for r in records if r["model"] == kind]
        if not rows:
            continue

        def ms(key, fmt):
            vals = [r[key] for r in rows]
            sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
            return f"{statistics.fmean(vals):{fmt}} ± {sd:{fmt}}" if len(vals) > 1 else f"{vals[0]:{fmt}}"

        lines.append(f"| {kind} | {ms('recon_mse', '.4f')} | {ms('mmd', '.4f')} | {ms('code_std', '.3f')} | "
                     f"{ms('train_seconds', '.0f')} | {len(rows)} |")
    lines.append(f"| (training images) | - | {floor:.4f} | - | - | - |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 CPU cores, minutes: 10,000 images, 4 epochs")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train-size", type=int, default=60000)
    parser.add_argument("--test-size", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--flow-weight-decay", type=float, default=2e-5, help="weight decay of the flow only")
    parser.add_argument("--latent", type=int, default=20)
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 512], help="encoder/decoder widths")
    parser.add_argument("--num-transforms", type=int, default=4)
    parser.add_argument("--flow", default="iaf", choices=["iaf", "spline"])
    parser.add_argument("--flow-hidden", type=int, default=64, help="width of the flow's networks (>= latent)")
    parser.add_argument("--sigma", type=float, default=0.1, help="pixel noise of the likelihood")
    parser.add_argument("--reconstruction-weight", type=float, default=1.0, help="GLF reconstruction weight")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/flow_prior_mnist")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_size, args.test_size, args.epochs, args.hidden = 10000, 2000, 4, [256]
    args.flow_hidden = max(args.flow_hidden, args.latent)
    args.hidden = tuple(args.hidden)
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    device = start_run(args)
    x_train = load_mnist("train", device=device)[0][: args.train_size]
    x_test = load_mnist("test", device=device)[0][: args.test_size]
    start = time.time()
    records = []
    for kind in args.models:
        for seed in args.seeds:
            rec = run_cell(kind, seed, (x_train, x_test), args, device)
            records.append(rec)
            print(json.dumps({k: v for k, v in rec.items() if k != "samples"}), flush=True)
    floor = mmd(x_train[-x_test.shape[0]:], x_test).item()
    fig, axes = plt.subplots(1, len(args.models), figsize=(3.2 * len(args.models), 3.4))
    axes = [axes] if len(args.models) == 1 else list(axes)
    for ax, kind in zip(axes, args.models):
        first = next(r for r in records if r["model"] == kind)
        plot_image_grid(ax, first["samples"][:36], title=f"{kind} (seed {first['seed']})")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "samples.png"), dpi=100)
    plt.close(fig)
    for r in records:
        r.pop("samples")
    table = summarize(records, floor)
    settings = dict(vars(args), seconds=round(time.time() - start, 1))
    write_results(args.out, {"records": records, "mmd_train_vs_test": floor, "settings": settings}, table, settings)
    print(f"total {time.time() - start:.0f} s; mean ± sd over seeds {args.seeds}")
    return records


if __name__ == "__main__":
    main()
