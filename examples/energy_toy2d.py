"""Energy-based models fitted to 2-D toy data with sliced score matching and adversarial CD, as in
*Variational Inference with Unnormalized Priors* (anonymous authors, manuscript under double-blind review).

For each dataset (8-Gaussians, checkerboard, two spirals) four energies are fitted directly to the data:
a GRBM (Eq. 12; 2 visible units, ``--hidden`` hidden units) and a neural energy (MLP with SiLU plus a
weak quadratic confinement, so that e^{-E} is normalizable), each by

* sliced score matching (SSM-VR; Alg. 1's prior step), and
* adversarial contrastive divergence against an IAF (Alg. 2's prior and flow steps).

Test log-likelihoods use log Z by 2-D quadrature (midpoint rule on a grid covering the data; for the
GRBM also checked against exact enumeration of the hidden units), next to a single Gaussian (closed-form
MLE). Density plots and a JSON of the results are written to ``--out``.

Usage::

    python examples/energy_toy2d.py                   # about 6 minutes on 1 CPU thread
    python examples/energy_toy2d.py --steps 200       # quick check
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from pyro_diffvi.datasets import sample_toy  # noqa: E402
from pyro_diffvi.infer import AdversarialCDLoss, SlicedScoreMatchingLoss  # noqa: E402
from pyro_diffvi.nn.mlp import MLP  # noqa: E402
from pyro_diffvi.priors import EnergyPrior, GRBMPrior  # noqa: E402
from pyro_diffvi.util import resolve_device, set_seed  # noqa: E402

DATASETS = ("8gaussians", "checkerboard", "2spirals")
METHODS = ("grbm_ssm", "grbm_adv", "mlp_ssm", "mlp_adv")


class ConfinedMLP(nn.Module):
    """E(z) = MLP(z) + |z|^2 / (2 s^2): the quadratic term keeps e^{-E} integrable."""

    def __init__(self, scale: float, hidden: int = 64):
        super().__init__()
        self.net = MLP(2, 1, hidden_dims=(hidden, hidden, hidden), activation="silu")
        self.scale = scale

    def forward(self, z):
        return self.net(z).squeeze(-1) + 0.5 * z.pow(2).sum(-1) / self.scale**2


def make_energy(method: str, args, data_scale: float, device):
    if method.startswith("grbm"):
        return GRBMPrior(dim=2, num_hidden=args.hidden, init_scale=1.0).to(device)
    return EnergyPrior(ConfinedMLP(scale=3 * data_scale), event_shape=(2,)).to(device)


def make_objective(method: str):
    if method.endswith("ssm"):
        return SlicedScoreMatchingLoss(num_projections=1)
    return AdversarialCDLoss(num_transforms=4, hidden_dims=(64, 64))


def fit(energy, objective, data, args, desc):
    """Minimize the objective with Adam. For adversarial CD the flow (built on the first call) has its own
    optimizer with learning rate ``--flow-lr`` and ``--flow-steps`` extra flow-only updates per step, so
    that it keeps up with the energy (Sec. 2.2 of the paper); the energy uses ``--lr``."""
    objective.loss(energy, data[:2])
    opt = torch.optim.Adam(energy.parameters(), lr=args.lr)
    flow_opt = None
    if isinstance(objective, AdversarialCDLoss):
        flow_opt = torch.optim.Adam(objective.flow.parameters(), lr=args.flow_lr)
    losses = []
    for _ in tqdm(range(args.steps), desc=desc, leave=False):
        batch = data[torch.randint(data.shape[0], (args.batch_size,), device=data.device)]
        for _ in range(args.flow_steps if flow_opt is not None else 0):
            flow_opt.zero_grad()
            objective.loss(energy, batch).backward()  # gradient in the flow's parameters only is used
            flow_opt.step()
        opt.zero_grad()
        if flow_opt is not None:
            flow_opt.zero_grad()
        loss = objective.loss(energy, batch)
        loss.backward()
        opt.step()
        if flow_opt is not None:
            flow_opt.step()
        losses.append(loss.item())
    return losses


def grid(lim: float, num: int, device):
    h = 2 * lim / num
    axis = -lim + h * (torch.arange(num, device=device, dtype=torch.float64) + 0.5)
    return torch.cartesian_prod(axis, axis), h, axis


def quadrature_log_partition(energy_fn, lim: float, num: int, device) -> tuple[float, torch.Tensor]:
    """log ∫ e^{-E} over [-lim, lim]^2 by the midpoint rule; also returns -E on the grid (num x num)."""
    points, h, _ = grid(lim, num, device)
    with torch.no_grad():
        neg_e = -torch.cat([energy_fn(p.float()).double() for p in points.split(65536)])
    return (torch.logsumexp(neg_e, 0) + 2 * math.log(h)).item(), neg_e.reshape(num, num)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps per fit")
    parser.add_argument("--epochs", type=int, default=None, help="alias: steps = epochs * train-size / batch")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3, help="energy learning rate")
    parser.add_argument("--flow-lr", type=float, default=5e-3, help="adversarial flow learning rate")
    parser.add_argument("--flow-steps", type=int, default=2, help="extra flow-only updates per step (adv. CD)")
    parser.add_argument("--hidden", type=int, default=12, help="GRBM hidden units (<= 20 for exact log Z)")
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--test-size", type=int, default=5000)
    parser.add_argument("--grid", type=int, default=400, help="quadrature grid points per axis")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--methods", default=",".join(METHODS), help="subset of " + ",".join(METHODS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/energy_toy2d")
    args = parser.parse_args()
    if args.epochs is not None:
        args.steps = max(1, args.epochs * args.train_size // args.batch_size)

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if set(methods) - set(METHODS):
        parser.error(f"unknown --methods {sorted(set(methods) - set(METHODS))}; choose from {METHODS}")
    os.makedirs(args.out, exist_ok=True)
    set_seed(args.seed)
    start = time.time()

    results = {}
    fig, axes = plt.subplots(len(datasets), 2 + len(methods), figsize=(2.6 * (2 + len(methods)), 2.6 * len(datasets)))
    axes = axes.reshape(len(datasets), -1)
    for row, name in enumerate(datasets):
        train = sample_toy(name, args.train_size, seed=args.seed, device=device)
        test = sample_toy(name, args.test_size, seed=args.seed + 1, device=device)
        scale = train.std().item()
        lim = 1.25 * train.abs().max().item() + 0.5
        # single Gaussian, closed-form MLE
        gauss = torch.distributions.MultivariateNormal(train.mean(0), torch.cov(train.T, correction=0))
        gauss_ll = gauss.log_prob(test)
        res = {"gaussian_mle": {"test_ll": gauss_ll.mean().item(), "se": gauss_ll.std().item() / math.sqrt(len(test))}}
        points, _, axis = grid(lim, args.grid, device)
        panels = [("data", None), ("Gaussian MLE", gauss.log_prob(points.float()).reshape(args.grid, args.grid))]
        for method in methods:
            set_seed(args.seed)
            energy = make_energy(method, args, scale, device)
            objective = make_objective(method)
            t0 = time.time()
            losses = fit(energy, objective, train, args, desc=f"{name} {method}")
            # quadrature on a box twice as wide as the plotted one (mass outside it is neglected)
            log_z, _ = quadrature_log_partition(energy.energy, 2 * lim, 2 * args.grid, device)
            _, neg_e = quadrature_log_partition(energy.energy, lim, args.grid, device)
            with torch.no_grad():
                ll = -energy.energy(test) - log_z
            entry = {
                "test_ll": ll.mean().item(),
                "se": ll.std().item() / math.sqrt(len(test)),
                "log_z_quadrature": log_z,
                "final_objective": sum(losses[-50:]) / len(losses[-50:]),
                "seconds": time.time() - t0,
            }
            if method.startswith("grbm"):
                entry["log_z_exact"] = energy().exact_log_partition().item()
            res[method] = entry
            panels.append((method, neg_e - log_z))
            tqdm.write(
                f"{name:>12} {method:<9} test log-lik {entry['test_ll']:.3f} ± {entry['se']:.3f} "
                f"(log Z quadrature {log_z:.3f}"
                + (f", exact {entry['log_z_exact']:.3f}" if "log_z_exact" in entry else "")
                + ")"
            )
        results[name] = res
        for col, (title, logp) in enumerate(panels):
            ax = axes[row, col]
            if logp is None:
                ax.hist2d(*train[:5000].T.cpu().numpy(), bins=100, range=[[-lim, lim], [-lim, lim]], cmap="viridis")
            else:
                ax.imshow(logp.exp().T.cpu().numpy(), origin="lower", extent=[-lim, lim, -lim, lim], cmap="viridis")
            ax.set_title(f"{name}: {title}" if col == 0 else title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "densities.png"), dpi=110)
    plt.close(fig)

    header = f"{'dataset':<13}" + "".join(f"{m:>18}" for m in ("gaussian_mle", *methods))
    lines = ["Test log-likelihood (nats per point; log Z by 2-D quadrature; ± SE over test points)", header]
    for name, res in results.items():
        lines.append(
            f"{name:<13}"
            + "".join(f"{res[m]['test_ll']:>11.3f} ±{res[m]['se']:.3f}" for m in ("gaussian_mle", *methods))
        )
    table = "\n".join(lines)
    print(table)
    print(f"total runtime {time.time() - start:.0f} s ({args.steps} steps per fit)")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"args": vars(args), "results": results, "seconds": time.time() - start}, f, indent=2)
    with open(os.path.join(args.out, "table.txt"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
