r"""Noise-free Langevin EBMs on 2-D toy data with exact ODE likelihoods: Xiao (2022), Ch. 5, Sec. 5.5.1.

An energy :math:`E_\theta` (an MLP with Swish activations) defines a generator: :math:`x_0 \sim \mathcal N(0, I)`
transported by the gradient-descent ODE :math:`x' = -\nabla E_\theta(x)` over :math:`[0, T]`, :math:`T = 0.2`
(Eq. 5.6, solved by fixed-step RK4, :class:`~pyro_diffvi.samplers.NoiseFreeSampler`). Its density is exact by
the instantaneous change of variables (Eq. 5.7, exact Hessian trace in 2-D). Per dataset and seed it trains

* ``ebm``: the EBM objective, Eq. 5.1 with the ODE's samples as (detached) negatives
  (:class:`~pyro_diffvi.infer.NoiseFreeEBMLoss`);
* ``ebm_gen`` (optional, ``--methods``): the same plus the generator loss of Eq. 5.14;
* ``mle``: the same ODE flow by maximum likelihood of Eq. 5.7 (:class:`~pyro_diffvi.infer.GradientFlowNLLLoss`),

and reports the test log-likelihood of the flow by Eq. 5.7 in nats per point (± SE over test points), beside
the dissertation's numbers (EBM objective -0.86 swiss roll / -1.95 Gaussian grid; maximum-likelihood flow
-0.69 / -1.47), the true density's test log-likelihood, the EBM's *own* normalized density
:math:`e^{-E}/Z` (Z by 2-D quadrature; the dissertation's Fig. 5.5 point: it is a poor model even when
the flow is good) and the quadrature of the flow's density over the plotted box (close to 1: a check of
Eq. 5.7).

Data: ``swissroll`` is the FFJORD swiss roll (:func:`~pyro_diffvi.datasets.sample_toy`); ``grid9`` is a 3 x 3 grid
of Gaussians (spacing 1.5, std 0.15, :class:`~pyro_diffvi.priors.GaussianGrid`). The dissertation does
not state its grid's spacing and width, so its -1.95 / -1.47 are comparable in direction only; the
true density's log-likelihood is reported for scale.

Dissertation settings (Sec. 5.5.3): a 5-layer MLP of 256 units, Swish, Adam 1e-3, 3,000 iterations,
batch 800, dopri5 with tolerance 1e-5, T = 0.2. Here RK4 with ``--ode-steps`` steps replaces dopri5.

Run ``python examples/langevin_ebm_toy2d.py --quick`` (2 CPU cores, minutes: smaller network, fewer
iterations and test points) or the dissertation's scale without it (``--device cuda`` helps).
Writes ``--out``/results.json (a list of records), table.md and toy2d_<dataset>.png (data, flow samples,
-E, flow density per method).
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
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from pyro_diffvi.datasets import sample_toy  # noqa: E402
from pyro_diffvi.infer import GradientFlowNLLLoss, NoiseFreeEBMLoss  # noqa: E402
from pyro_diffvi.nn import MLP  # noqa: E402
from pyro_diffvi.priors import GaussianGrid, SwissRoll  # noqa: E402
from pyro_diffvi.samplers import NoiseFreeSampler  # noqa: E402
from pyro_diffvi.util import set_seed  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _cells import start_run, write_results  # noqa: E402 (shared by the example scripts)

DATASETS = ("swissroll", "grid9")
METHODS = ("ebm", "ebm_gen", "mle")
DISSERTATION = {  # Xiao (2022), Sec. 5.5.1: test log-likelihood (nats) of the ODE flow
    ("swissroll", "ebm"): -0.86, ("grid9", "ebm"): -1.95,
    ("swissroll", "mle"): -0.69, ("grid9", "mle"): -1.47,
}


def true_density(name: str, device):
    """The data distribution (a prior object with exact ``log_prob`` and ``sample``)."""
    if name == "swissroll":
        return SwissRoll(device=device)
    return GaussianGrid(num_per_side=3, spacing=1.5, scale=0.15, device=device)


def sample_data(name: str, n: int, seed: int, device) -> torch.Tensor:
    if name == "swissroll":
        return sample_toy("swissroll", n, seed=seed, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    return true_density(name, device).sample_with_labels((n,), generator=gen)[0]


class Energy(nn.Module):
    """E(x) = MLP(x), Swish activations (Sec. 5.5.3)."""

    def __init__(self, hidden: tuple[int, ...]):
        super().__init__()
        self.net = MLP(2, 1, hidden_dims=hidden, activation="silu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def make_objective(method: str, sampler: NoiseFreeSampler):
    if method == "mle":
        return GradientFlowNLLLoss(sampler=sampler)
    return NoiseFreeEBMLoss(sampler=sampler, generator_weight=1.0 if method == "ebm_gen" else 0.0)


def grid_points(lim: float, num: int, device) -> tuple[torch.Tensor, float]:
    """Midpoint grid on [-lim, lim]^2: points (num*num, 2) (row-major in y, then x) and cell area."""
    h = 2 * lim / num
    axis = -lim + h * (torch.arange(num, device=device, dtype=torch.float64) + 0.5)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx, yy], -1).reshape(-1, 2), h * h


def flow_log_prob(energy, sampler: NoiseFreeSampler, x: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Eq. 5.7 (exact trace) in chunks, detached."""
    return torch.cat([sampler.log_prob(energy, part).log_prob for part in x.split(chunk)])


def run_cell(name: str, method: str, seed: int, args, device) -> tuple[dict, dict]:
    set_seed(seed)
    train = sample_data(name, args.train_size, seed=1000 + seed, device=device)
    test = sample_data(name, args.test_size, seed=2000 + seed, device=device)
    energy = Energy(tuple(args.hidden)).to(device)
    sampler = NoiseFreeSampler(num_steps=args.ode_steps, step_size=args.time / args.ode_steps, method="rk4")
    objective = make_objective(method, sampler)
    opt = torch.optim.Adam(energy.parameters(), lr=args.lr)
    t0 = time.time()
    losses = []
    iterations, batch_size = (
        (args.mle_iterations, args.mle_batch_size) if method == "mle" else (args.iterations, args.batch_size)
    )
    for _ in tqdm(range(iterations), desc=f"{name} {method} seed {seed}", leave=False, disable=None):
        batch = train[torch.randint(train.shape[0], (batch_size,), device=device)]
        opt.zero_grad()
        loss = objective(energy, batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    train_seconds = time.time() - t0
    energy.requires_grad_(False)
    ll = flow_log_prob(energy, sampler, test)
    # the EBM's own density e^{-E}/Z and the flow's mass, by midpoint quadrature on [-lim, lim]^2
    lim = args.box
    points, cell = grid_points(lim, args.grid, device)
    with torch.no_grad():
        neg_e = -energy(points.float()).double()
    log_z = (torch.logsumexp(neg_e, 0) + math.log(cell)).item()
    with torch.no_grad():
        ebm_ll = -energy(test).double() - log_z
    flow_grid = flow_log_prob(energy, sampler, points.float()).double()
    flow_mass = (torch.logsumexp(flow_grid, 0) + math.log(cell)).exp().item()
    with torch.no_grad():
        true_ll = true_density(name, device).log_prob(test).double()
    samples = sampler.sample(energy, 2000, 2, device=device)
    n = test.shape[0]
    record = {
        "dataset": name, "method": method, "seed": seed,
        "test_ll": ll.mean().item(), "test_ll_se": ll.std().item() / math.sqrt(n),
        "ebm_density_ll": ebm_ll.mean().item(), "ebm_density_ll_se": ebm_ll.std().item() / math.sqrt(n),
        "true_ll": true_ll.mean().item(), "true_ll_se": true_ll.std().item() / math.sqrt(n),
        "flow_mass": flow_mass, "log_z": log_z,
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "dissertation": DISSERTATION.get((name, "ebm" if method == "ebm_gen" else method)),
        "iterations": iterations, "batch_size": batch_size, "train_seconds": train_seconds, "seconds": time.time() - t0,
    }
    panels = {"samples": samples.cpu(), "neg_energy": neg_e.reshape(args.grid, args.grid).cpu(),
              "flow_log_density": flow_grid.reshape(args.grid, args.grid).cpu()}
    return record, panels


def plot_dataset(name: str, train: torch.Tensor, panels: dict, lim: float, path: str) -> None:
    methods = list(panels)
    fig, axes = plt.subplots(len(methods), 4, figsize=(10, 2.6 * len(methods)), squeeze=False)
    extent = [-lim, lim, -lim, lim]
    for row, method in enumerate(methods):
        p = panels[method]
        cols = [
            ("data", None),
            ("flow samples (Eq. 5.6)", None),
            ("-E (EBM log density, unnormalized)", p["neg_energy"]),
            ("flow density (Eq. 5.7)", p["flow_log_density"].exp()),
        ]
        for col, (title, img) in enumerate(cols):
            ax = axes[row, col]
            if col == 0:
                ax.scatter(*train[:2000].T.cpu().numpy(), s=1, alpha=0.5)
            elif col == 1:
                ax.scatter(*p["samples"].T.numpy(), s=1, alpha=0.5, color="C1")
            else:
                ax.imshow(img.numpy(), origin="lower", extent=extent, cmap="viridis")
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{method}: {title}" if col else f"{name}: {title} ({method} row)", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(records: list[dict]) -> str:
    lines = [
        "| dataset | method | flow test LL (Eq. 5.7) | EBM e^{-E}/Z "
        "test LL | flow mass on box | true density LL | dissertation |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = sorted(
        {(r["dataset"], r["method"]) for r in records}, key=lambda k: (DATASETS.index(k[0]), METHODS.index(k[1]))
    )
    for dataset, method in keys:
        rs = [r for r in records if (r["dataset"], r["method"]) == (dataset, method)]

        def cell(key: str) -> str:
            vals = [r[key] for r in rs]
            if len(vals) == 1:
                return f"{vals[0]:.3f} ± {rs[0][key + '_se']:.3f}"
            mean = sum(vals) / len(vals)
            sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
            return f"{mean:.3f} ± {sd:.3f} (sd over {len(vals)} seeds)"

        mass = sum(r["flow_mass"] for r in rs) / len(rs)
        ref = rs[0]["dissertation"]
        lines.append(f"| {dataset} | {method} | {cell('test_ll')} | {cell('ebm_density_ll')} | {mass:.3f} | "
                     f"{cell('true_ll')} | {'' if ref is None else ref} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 CPU cores, minutes: small network, fewer iterations")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=["ebm", "mle"], choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=800)
    parser.add_argument("--mle-iterations", type=int, default=None, help="iterations of mle (default --iterations)")
    parser.add_argument("--mle-batch-size", type=int, default=None, help="batch of mle (default --batch-size)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256, 256, 256], help="MLP hidden widths")
    parser.add_argument("--time", type=float, default=0.2, help="ODE horizon T")
    parser.add_argument("--ode-steps", type=int, default=20, help="RK4 steps over [0, T]")
    parser.add_argument("--train-size", type=int, default=100000)
    parser.add_argument("--test-size", type=int, default=10000)
    parser.add_argument("--grid", type=int, default=200, help="quadrature grid points per axis")
    parser.add_argument("--box", type=float, default=3.5, help="half-width of the plotted / quadrature box")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/langevin_ebm_toy2d")
    args = parser.parse_args(argv)
    if args.quick:
        # mle back-propagates through the backward ODE and its Hessian traces: about 7x an ebm iteration
        args.iterations, args.batch_size, args.hidden = 1500, 256, [64, 64, 64]
        args.mle_iterations, args.mle_batch_size = 150, 128
        args.ode_steps, args.test_size, args.grid, args.lr = 10, 2000, 100, 3e-3
    args.mle_iterations = args.iterations if args.mle_iterations is None else args.mle_iterations
    args.mle_batch_size = args.batch_size if args.mle_batch_size is None else args.mle_batch_size
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    device = start_run(args)
    start = time.time()
    records = []
    for name in args.datasets:
        panels = {}
        for method in args.methods:
            for seed in args.seeds:
                record, cell_panels = run_cell(name, method, seed, args, device)
                records.append(record)
                if seed == args.seeds[0]:
                    panels[method] = cell_panels
                print(json.dumps(record), flush=True)
        plot_dataset(name, sample_data(name, 2000, seed=1000 + args.seeds[0], device=device), panels, args.box,
                     os.path.join(args.out, f"toy2d_{name}.png"))
    table = summarize(records)
    settings = dict(vars(args))
    seconds = time.time() - start
    write_results(args.out, records, table + f"\n\ntotal {seconds:.0f} s", settings)
    print(f"settings {settings}")
    return records


if __name__ == "__main__":
    main()
