r"""Denoising diffusion GANs on 25-Gaussians and StackedMNIST: mode coverage, Xiao (2022) Sec. 6.4.3 (Fig. 6.9,
Table 6.3).

Per dataset, method and seed it trains

* ``ddgan``: a denoising diffusion GAN with ``T = 4`` steps (:class:`~pyro_diffvi.infer.DDGANLoss`: the VP
  schedule of Eqs. 6.14-6.15, generator :math:`G(x_t, z, t)` predicting :math:`x_0`, posterior sampling, the
  non-saturating loss, R1, EMA; sampled by Alg. 2 with 4 network evaluations);
* ``ddpm``: the *same* network without its latent as a Gaussian-step diffusion model
  (:class:`~pyro_diffvi.infer.DDPMLoss`), with ``T = 4`` and with many steps (``--ddpm-steps``, 1000 by default
  on 25-Gaussians). On 25-Gaussians it predicts the noise (Ho et al.'s loss); on StackedMNIST it predicts
  :math:`x_0` (Eq. 6.6, the generator's own output): an MLP narrower than the 2,352 pixels cannot pass their
  noise through (measured at ``--quick``: the noise error stayed at 0.90 per pixel after 1,500 iterations and
  the 4-step chain's samples reached a standard deviation of 145),

and reports, from ``--num-samples`` draws (``nfe`` network evaluations each):

* ``modes``: modes holding at least ``--min-count`` high-quality samples (25-Gaussians: nearest mean within
  3 standard deviations; StackedMNIST: the label triple read by an MNIST classifier trained here, every
  sample counts), :func:`~pyro_diffvi.metrics.mode_coverage`;
* ``high_quality``: the share of samples within 3 SD of a mean (25-Gaussians only; ``null`` for StackedMNIST);
* ``kl``: the reverse KL :math:`\mathrm{KL}(\hat p\,\|\,\pi)` of the samples' mode assignments to the data's
  mode probabilities :math:`\pi` (uniform on 25-Gaussians; on StackedMNIST the product of the training split's
  digit frequencies, how the stacks are drawn);
* ``fewest_high_quality``: the smallest number of high-quality samples of any mode (how close the weakest mode
  is to being missed; StackedMNIST: samples of the rarest triple);
* ``seconds``: the cell's wall time (training, sampling, evaluation); ``cpu_seconds`` its process CPU time (on a
  shared machine the wall time includes waiting for the cores).

A ``data`` row scores draws of the data itself (25-Gaussians: the mixture; StackedMNIST: fresh stacks of test
digits through the classifier), the floor of each metric at this sample size and classifier.

Data: 25-Gaussians is :func:`~pyro_diffvi.datasets.sample_toy` (``"25gaussians"``: 5 x 5 means spacing
:math:`1/\sqrt 2`, std :math:`0.05/(2\sqrt 2)`), StackedMNIST is :func:`~pyro_diffvi.datasets.load_stacked_mnist`
(60,000 stacks of training digits, scaled to [-1, 1]).

The dissertation's settings (the default without ``--quick``; ``--device cuda`` for its scale): 25-Gaussians
with generator and discriminator of 3 fully connected layers of 512 units, LeakyReLU 0.2, Adam :math:`10^{-4}`,
batch 512, 50,000 iterations, ``T = 4``. Its StackedMNIST networks are the CIFAR-10 U-Net and ResNet (150,000
iterations); here both networks are MLPs on the 2,352 pixels (3 hidden layers of 1024), which the dissertation
does not test, so its numbers are a reference for direction only. ``--quick`` (2 CPU cores, one thread: about
7 minutes per seed on an idle machine, 44 minutes for 3 seeds at a load average of 4-7) reduces, on
25-Gaussians, the widths to 128, the batch to 256 and the iterations to 20,000 with the learning rate raised to
:math:`3 \cdot 10^{-4}` (at :math:`10^{-4}` nothing was learned in 6,000 iterations at this width); on
StackedMNIST the networks to 2 layers of 256, the batch to 64, the iterations to 1,500, the classifier to 2
epochs, and it drops the 1000-step baseline there (1000 network evaluations for each of 26,000 images).

Usage::

    python examples/ddgan.py --quick                 # both datasets, 3 seeds
    python examples/ddgan.py --data 25gaussians --device cuda

Writes ``--out``/results.json (a list of records with keys ``data, method, num_steps, seed, modes, kl,
high_quality, nfe, seconds`` and more), table.md, samples_25gaussians.png (scatter of each method's draws with
the means and their 3-SD circles, equal axes) and samples_stackedmnist.png (image grids). Each finished
(data, method, steps, seed) cell is saved in ``--out``/cells at once; a rerun skips finished cells.

References: Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation,
University of Chicago, 2022, Ch. 6; J. Ho, A. Jain, P. Abbeel. *Denoising Diffusion Probabilistic Models*.
NeurIPS, 2020; Z. Lin, A. Khetan, G. Fanti, S. Oh. *PacGAN*. NeurIPS, 2018 (the StackedMNIST metrics).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from pyro_diffvi.datasets import load_mnist, load_stacked_mnist, sample_toy, stacked_label  # noqa: E402
from pyro_diffvi.infer import DDGANLoss, DDPMLoss  # noqa: E402
from pyro_diffvi.metrics import mixture_mode_coverage, mode_coverage  # noqa: E402
from pyro_diffvi.nn import MLP, DenoisingDiscriminator, DenoisingGenerator  # noqa: E402
from pyro_diffvi.priors import GaussianGrid  # noqa: E402
from pyro_diffvi.util import set_seed  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _cells import CellStore, mean_sd, start_run, write_results  # noqa: E402 (shared by the example scripts)

DATASETS = ("25gaussians", "stackedmnist")
METHODS = ("ddgan", "ddpm")
CLASSIFIER_KEY = "mnist_classifier"
DISSERTATION = {  # Xiao (2022) Table 6.3 (StackedMNIST: modes, KL) and Fig. 6.9 (25-Gaussians, qualitative)
    "stackedmnist": {"ddgan": (1000, 0.071), "VAEBM": (1000, 0.087), "StyleGAN2": (940, 0.424),
                     "PresGAN": (1000, 0.115), "PacGAN": (992, 0.277), "VEEGAN": (762, 2.173)},
}
SETTINGS = {  # per dataset: (full, quick)
    "25gaussians": (
        dict(hidden=[512, 512, 512], noise_dim=16, iterations=50_000, batch_size=512, lr=1e-4, r1_weight=0.05,
             ddpm_steps=[4, 1000], ddpm_prediction="eps", num_samples=10_000, train_size=100_000),
        dict(hidden=[128, 128, 128], noise_dim=16, iterations=20_000, batch_size=256, lr=3e-4, r1_weight=0.05,
             ddpm_steps=[4, 1000], ddpm_prediction="eps", num_samples=10_000, train_size=100_000),
    ),
    "stackedmnist": (
        dict(hidden=[1024, 1024, 1024], noise_dim=100, iterations=150_000, batch_size=128, lr=1e-4, r1_weight=0.05,
             ddpm_steps=[4, 1000], ddpm_prediction="x0", num_samples=26_000, train_size=60_000),
        dict(hidden=[256, 256], noise_dim=100, iterations=1_500, batch_size=64, lr=2e-4, r1_weight=0.05,
             ddpm_steps=[4], ddpm_prediction="x0", num_samples=26_000, train_size=60_000),
    ),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="minutes on 2 CPU cores: smaller networks, fewer iterations")
    p.add_argument("--data", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--ddgan-steps", type=int, nargs="+", default=[4], help="T of the DDGAN (1: an unconditional GAN)")
    p.add_argument("--ddpm-steps", type=int, nargs="+", default=None, help="T of the baselines (see SETTINGS)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="results/ddgan")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--threads", type=int, default=1)
    for name in ("iterations", "batch_size", "noise_dim", "num_samples", "train_size"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None)
    p.add_argument("--hidden", type=int, nargs="+", default=None, help="hidden widths of both networks")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--r1-weight", type=float, default=None, help="gamma of Eq. 6.16")
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--min-count", type=int, default=1, help="high-quality samples a mode needs to count")
    p.add_argument("--classifier-epochs", type=int, default=None, help="MNIST classifier (quick 2, full 5)")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    if args.classifier_epochs is None:
        args.classifier_epochs = 2 if args.quick else 5
    return args


def settings(args, data: str) -> dict:
    """The dataset's settings (full or ``--quick``), overridden by the options given on the command line."""
    out = dict(SETTINGS[data][1 if args.quick else 0])
    for key in out:
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    return out


# ---- data ----------------------------------------------------------------------------------------------


def training_data(data: str, s: dict, seed: int, device) -> torch.Tensor:
    if data == "25gaussians":
        return sample_toy("25gaussians", s["train_size"], seed=seed, device=device)
    images, _ = load_stacked_mnist("train", num_samples=s["train_size"], seed=seed, device=device)
    return 2 * images - 1


def digit_frequencies() -> torch.Tensor:
    _, digits = load_mnist("train")
    return torch.bincount(digits, minlength=10).double() / len(digits)


def stacked_mode_probs() -> torch.Tensor:
    f = digit_frequencies()
    return (f[:, None, None] * f[None, :, None] * f[None, None, :]).reshape(1000)


# ---- the MNIST classifier that reads StackedMNIST modes -----------------------------------------------


def make_classifier() -> nn.Module:
    return MLP(784, 10, hidden_dims=(512, 256), activation="relu")


def train_classifier(args, device) -> tuple[nn.Module, float]:
    """An MLP digit classifier (784-512-256-10, Adam 1e-3, batch 128); returns it and its MNIST test accuracy."""
    set_seed(12345)
    x, y = load_mnist("train", device=device)
    x_test, y_test = load_mnist("test", device=device)
    net = make_classifier().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator(device=device).manual_seed(0)
    for epoch in range(args.classifier_epochs):
        order = torch.randperm(len(x), generator=gen, device=device)
        for rows in tqdm(order.split(128), desc=f"MNIST classifier epoch {epoch + 1}", leave=False, disable=None):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[rows]), y[rows]).backward()
            opt.step()
    with torch.no_grad():
        accuracy = (net(x_test).argmax(-1) == y_test).double().mean().item()
    return net.requires_grad_(False), accuracy


def classify_stacks(classifier: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """StackedMNIST labels of images in [-1, 1] (N, 2352): each channel's digit, clamped to [0, 1] first."""
    with torch.no_grad():
        channels = ((images + 1) / 2).clamp(0, 1).reshape(-1, 784)
        digits = torch.cat([classifier(part).argmax(-1) for part in channels.split(8192)]).reshape(-1, 3)
    return stacked_label(digits)


# ---- one cell --------------------------------------------------------------------------------------------


def build(method: str, num_steps: int, dim: int, s: dict, args, device):
    """The objective and a ``step(batch)`` for one method."""
    hidden = tuple(s["hidden"])
    if method == "ddgan":
        generator = DenoisingGenerator(dim, noise_dim=s["noise_dim"], hidden_dims=hidden).to(device)
        discriminator = DenoisingDiscriminator(dim, hidden_dims=hidden).to(device)
        objective = DDGANLoss(generator, discriminator, num_steps=num_steps, r1_weight=s["r1_weight"],
                              ema_decay=args.ema_decay)
        g_opt = torch.optim.Adam(generator.parameters(), lr=s["lr"], betas=(0.5, 0.9))
        d_opt = torch.optim.Adam(discriminator.parameters(), lr=s["lr"], betas=(0.5, 0.9))
        return objective, lambda x: objective.step(x, g_opt, d_opt)
    network = DenoisingGenerator(dim, noise_dim=0, hidden_dims=hidden).to(device)
    objective = DDPMLoss(network, num_steps=num_steps, prediction=s["ddpm_prediction"], ema_decay=args.ema_decay)
    opt = torch.optim.Adam(network.parameters(), lr=s["lr"])
    return objective, lambda x: objective.step(x, opt)


def draw(distribution, n: int, chunk: int = 10_000) -> torch.Tensor:
    return torch.cat([distribution.sample((min(chunk, n - i),)) for i in range(0, n, chunk)])


def score(data: str, samples: torch.Tensor, args, classifier=None) -> dict:
    if data == "25gaussians":
        grid = GaussianGrid(device=samples.device)
        result = mixture_mode_coverage(samples, grid.centers, grid.scale, min_count=args.min_count)
        high_quality = result.high_quality
    else:
        labels = classify_stacks(classifier, samples)
        result = mode_coverage(labels, 1000, probs=stacked_mode_probs().to(labels.device), min_count=args.min_count)
        high_quality = None
    return {"modes": result.modes, "kl": result.kl, "high_quality": high_quality,
            "fewest_high_quality": int(result.high_quality_counts.min())}


def run_cell(data: str, method: str, num_steps: int, seed: int, args, device, classifier=None) -> tuple[dict, dict]:
    s = settings(args, data)
    start, cpu_start = time.time(), time.process_time()
    set_seed(seed)
    if method == "data":
        if data == "25gaussians":
            samples = sample_toy("25gaussians", s["num_samples"], seed=10_000 + seed, device=device)
        else:
            images, _ = load_stacked_mnist("test", num_samples=s["num_samples"], seed=10_000 + seed, device=device)
            samples = 2 * images - 1
        train_seconds, nfe = 0.0, 0
    else:
        train = training_data(data, s, seed, device)
        objective, step = build(method, num_steps, train.shape[1], s, args, device)
        gen = torch.Generator(device=device).manual_seed(seed)
        desc = f"{data} {method} T={num_steps} seed {seed}"
        for _ in tqdm(range(s["iterations"]), desc=desc, leave=False, disable=None):
            step(train[torch.randint(train.shape[0], (s["batch_size"],), generator=gen, device=device)])
        train_seconds = time.time() - start
        distribution = objective.distribution()
        samples, nfe = draw(distribution, s["num_samples"]), distribution.nfe
    record = {"data": data, "method": method, "num_steps": num_steps, "seed": seed}
    record.update(score(data, samples, args, classifier))
    record.update(nfe=nfe, seconds=time.time() - start, cpu_seconds=time.process_time() - cpu_start,
                  train_seconds=train_seconds,
                  iterations=0 if method == "data" else s["iterations"], num_samples=s["num_samples"],
                  min_count=args.min_count, settings=s)
    keep = samples[:2000] if data == "25gaussians" else samples[:64]
    return record, {"samples": keep.cpu()}


# ---- figures and the table -----------------------------------------------------------------------------


def label(record_or_key) -> str:
    method, steps = record_or_key
    return "data" if method == "data" else f"{method.upper()} T={steps}"


def plot_scatter(panels: dict, path: str) -> None:
    grid = GaussianGrid()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.7), squeeze=False)
    for ax, (key, samples) in zip(axes[0], panels.items()):
        ax.scatter(*samples.T.numpy(), s=1, alpha=0.4, color="C0", label="samples", zorder=2)
        ax.scatter(*grid.centers.T.numpy(), s=12, marker="+", linewidths=0.6, color="k", label="mode means", zorder=3)
        for c in grid.centers:
            ax.add_patch(Circle(tuple(c.tolist()), 3 * grid.scale, fill=False, color="C3", lw=0.6, zorder=3))
        ax.plot([], [], color="C3", lw=0.6, label="3 SD: high quality")
        ax.set(xlim=(-1.8, 1.8), ylim=(-1.8, 1.8), aspect="equal", title=label(key))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, markerscale=4, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_images(panels: dict, path: str) -> None:
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.5), squeeze=False)
    for ax, (key, samples) in zip(axes[0], panels.items()):
        images = ((samples + 1) / 2).clamp(0, 1).reshape(-1, 3, 28, 28)[:64]
        rows = math.ceil(len(images) / 8)
        canvas = torch.ones(3, rows * 29 + 1, 8 * 29 + 1)
        for i, image in enumerate(images):
            r, c = divmod(i, 8)
            canvas[:, 1 + 29 * r: 29 * r + 29, 1 + 29 * c: 29 * c + 29] = image
        ax.imshow(canvas.permute(1, 2, 0).numpy())
        ax.set(title=label(key), xticks=[], yticks=[], aspect="equal")
    fig.suptitle("StackedMNIST samples (channels = three digits)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def summarize(records: list[dict], classifier_accuracy: float | None) -> str:
    lines = ["| data | method | T (NFE) | seeds | modes | high-quality share | reverse KL | seconds (CPU) "
             "| per seed (modes / hq / KL / fewest) |", "|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["data"], r["method"], r["num_steps"]) for r in records},
                  key=lambda k: (DATASETS.index(k[0]), (("data",) + METHODS).index(k[1]), k[2]))
    for data, method, steps in keys:
        rows = sorted((r for r in records if (r["data"], r["method"], r["num_steps"]) == (data, method, steps)),
                      key=lambda r: r["seed"])
        hq = [r["high_quality"] for r in rows]
        per = ", ".join(f"{r['modes']} / " + ("-" if r["high_quality"] is None else f"{r['high_quality']:.3f}")
                        + f" / {r['kl']:.3f} / {r['fewest_high_quality']}" for r in rows)
        wall, cpu = (sum(r[k] for r in rows) / len(rows) for k in ("seconds", "cpu_seconds"))
        lines.append(f"| {data} | {method} | {steps} ({rows[0]['nfe']}) | {len(rows)} | "
                     f"{mean_sd([r['modes'] for r in rows], 1)} | {mean_sd(hq)} | {mean_sd([r['kl'] for r in rows])} | "
                     f"{wall:.0f} ({cpu:.0f}) | {per} |")
    lines.append("\nfewest: the fewest high-quality samples of any mode (StackedMNIST: samples of the rarest triple).")
    if classifier_accuracy is not None:
        lines.append(f"MNIST classifier (reads StackedMNIST modes): test accuracy {classifier_accuracy:.4f}.")
    ref = DISSERTATION["stackedmnist"]
    lines.append("Dissertation, StackedMNIST (Table 6.3, modes / KL): "
                 + ", ".join(f"{k} {m} / {kl}" for k, (m, kl) in ref.items()) + "; 25-Gaussians (Fig. 6.9): DDGAN "
                 "T = 4 covers all 25 modes with high sample quality; a diffusion model, shown with 100 and 500 steps, "
                 "needs many steps to keep its sample quality.")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    device = start_run(args)
    cells = CellStore(args.out)
    start = time.time()
    classifier, accuracy = None, None
    if "stackedmnist" in args.data:
        if not cells.done(CLASSIFIER_KEY):
            net, acc = train_classifier(args, device)
            cells.save(CLASSIFIER_KEY, {"accuracy": acc, "epochs": args.classifier_epochs},
                       {k: v.cpu() for k, v in net.state_dict().items()})
        classifier = make_classifier().to(device).requires_grad_(False)
        classifier.load_state_dict(cells.tensors(CLASSIFIER_KEY))
        with open(os.path.join(cells.dir, CLASSIFIER_KEY + ".json")) as f:
            accuracy = json.load(f)["accuracy"]
    for data in args.data:
        s = settings(args, data)
        runs = [("data", 0)]
        runs += [("ddgan", t) for t in args.ddgan_steps] if "ddgan" in args.methods else []
        runs += [("ddpm", t) for t in (args.ddpm_steps or s["ddpm_steps"])] if "ddpm" in args.methods else []
        for method, steps in runs:
            for seed in args.seeds:
                key = f"{data}_{method}{steps}_{seed}"
                if cells.done(key):
                    continue
                record, tensors = run_cell(data, method, steps, seed, args, device, classifier)
                cells.save(key, record, tensors)
                tqdm.write(json.dumps({k: v for k, v in record.items() if k != "settings"}))
        if not args.no_plots:
            first = min(args.seeds)
            panels = {(m, t): cells.tensors(f"{data}_{m}{t}_{first}") for m, t in runs}
            panels = {k: v["samples"] for k, v in panels.items() if v is not None}
            plot = plot_scatter if data == "25gaussians" else plot_images
            plot(panels, os.path.join(args.out, f"samples_{data}.png"))
    records = [r for r in cells.records(keep=lambda key: key != CLASSIFIER_KEY)
               if r["data"] in args.data and r["seed"] in args.seeds and r["method"] in ("data", *args.methods)]
    table = summarize(records, accuracy)
    write_results(args.out, records, table, vars(args))
    print(f"total {time.time() - start:.0f} s (cells finished earlier are not rerun)")
    return records


if __name__ == "__main__":
    main()
