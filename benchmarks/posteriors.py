"""Posterior quality of every guide, with its default settings, on models with exact log p(x).

For each problem of :mod:`pyro_diffvi.datasets.posteriors` (amortized over its observations, plus
the two non-amortized sampling targets), each guide and each seed: a plain ``SVI`` loop with
``Adam(lr)`` on the whole batch for ``--steps`` steps, then

* the ELBO gap ``ELBO - log p(x)`` in nats per observation (<= 0 for a valid bound), from
  ``--eval-particles`` draws per observation, with its Monte-Carlo standard error;
* for multimodal problems, the posterior mass the guide puts on each mode region against the exact
  mass (pooled over observations; ``mode_ratio`` = the smallest ratio over modes with exact mass >= 2%);
* milliseconds per training step (one thread per job);
* for the DDVI guides, the gap every ``--curve-every`` steps (training curve, 64 particles).

Guides: ``gaussian`` (AEVB), ``iaf`` and ``spline`` (flow guides), ``hierarchical`` (H-AEVB), ``ddvi``
(``DiffusionGuide`` + ``DDVI_ELBO()`` with their defaults), ``ddvi_measured`` (the same with
``selection="measured"``: a Gaussian head emitted until the chain is measurably ahead, the chain trained by
reweighted wake-sleep) and ``ddvi_paper`` (the DDVI paper's chain:
linear schedule 1e-4..0.02, T = 20, fixed beta variances, chain in the latent's own coordinates,
simplified sleep; the library's previous defaults).

Cells are cached one JSON line each in ``OUT/cells.jsonl``: an interrupted run continues where it
stopped. The table prints mean +- sd over seeds.

Usage::

    python benchmarks/posteriors.py --steps 2500 --seeds 0 1 2 --jobs 2 --out results/posteriors
    python benchmarks/posteriors.py --problems four_modes ring --guides gaussian ddvi --steps 500
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from multiprocessing import get_context
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_diffvi.datasets import PROBLEMS, make_problem
from pyro_diffvi.guides import DiffusionGuide, FlowGuide, GaussianGuide, HierarchicalGuide
from pyro_diffvi.infer import DDVI_ELBO
from pyro_diffvi.metrics import elbo_gap, mode_mass_ratio
from pyro_diffvi.util import set_seed

GUIDES = ("gaussian", "iaf", "spline", "hierarchical", "ddvi", "ddvi_measured", "ddvi_paper")
PAPER_DDVI = dict(schedule="linear", variance="beta", standardize=False, path_gradient=False)
MIN_MODE_MASS = 0.02


def make_guide_and_loss(name: str, model):
    if name == "gaussian":
        return GaussianGuide(model, latent="z", observed="x"), Trace_ELBO()
    if name == "iaf":
        return FlowGuide(model, latent="z", observed="x"), Trace_ELBO()
    if name == "spline":
        return FlowGuide(model, latent="z", observed="x", flow="spline"), Trace_ELBO()
    if name == "hierarchical":
        return HierarchicalGuide(model, latent="z", observed="x"), Trace_ELBO()
    if name == "ddvi":
        return DiffusionGuide(model, latent="z", observed="x"), DDVI_ELBO()
    if name == "ddvi_measured":
        return DiffusionGuide(model, latent="z", observed="x", selection="measured"), DDVI_ELBO()
    if name == "ddvi_paper":
        return DiffusionGuide(model, latent="z", observed="x", **PAPER_DDVI), DDVI_ELBO(sleep="simplified")
    raise ValueError(f"guide must be one of {GUIDES}, got {name!r}")


def run_cell(cell: dict) -> dict:
    torch.set_num_threads(cell["threads"])
    pyro.clear_param_store()
    device = torch.device(cell["device"])
    problem = make_problem(cell["problem"], device=device)
    set_seed(cell["seed"])
    guide, loss = make_guide_and_loss(cell["guide"], problem.model)
    svi = SVI(problem.model, guide, Adam({"lr": cell["lr"]}), loss)
    curve, choices, seconds = [], [], 0.0
    for step in range(1, cell["steps"] + 1):
        start = time.perf_counter()
        svi.step(problem.x)
        seconds += time.perf_counter() - start
        if cell["guide"].startswith("ddvi") and step % cell["curve_every"] == 0:
            curve.append(round(elbo_gap(problem, guide, num_particles=64)[0], 4))
            choices.append(getattr(guide, "choice", "chain"))
    mean, stderr = elbo_gap(problem, guide, num_particles=cell["eval_particles"])
    record = {k: cell[k] for k in ("problem", "guide", "seed", "steps", "lr")}
    record.update(gap=mean, gap_se=stderr, ms_per_step=1e3 * seconds / cell["steps"], curve=curve,
                  choices=choices, last_terms=dict(getattr(loss, "last_terms", {})),
                  kind=problem.kind, num_modes=problem.num_modes)
    if problem.mode_of is not None:
        record["mode_ratio"], record["mode_masses"] = mode_mass_ratio(
            problem, guide, num_particles=cell["eval_particles"], min_mass=MIN_MODE_MASS
        )
        record["exact_mode_masses"] = problem.mode_masses.double().mean(0).tolist()
    return record


def summarize(records: list[dict], problems: list[str], guides: list[str]) -> None:
    def stat(values):
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):+.3f} ± {sd:.3f}"

    print("\nELBO - log p(x) (nats/observation, mean ± sd over seeds); mode ratio = min guide/exact mode mass")
    print(f"{'problem':<20} {'guide':<13} {'gap':>17} {'MC SE':>7} {'mode ratio':>17} {'ms/step':>8} {'seeds':>5}")
    for p in problems:
        for g in guides:
            rows = [r for r in records if r["problem"] == p and r["guide"] == g]
            if not rows:
                continue
            se = statistics.mean(r["gap_se"] for r in rows)
            ratio = stat([r.get("mode_ratio") for r in rows])
            ms = statistics.mean(r["ms_per_step"] for r in rows)
            print(
                f"{p:<20} {g:<13} {stat([r['gap'] for r in rows]):>17} {se:>7.3f} {ratio:>17} {ms:>8.1f} {len(rows):>5}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--guides", nargs="+", default=list(GUIDES), choices=GUIDES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--eval-particles", type=int, default=256)
    parser.add_argument("--curve-every", type=int, default=250)
    parser.add_argument("--jobs", type=int, default=1, help="cells run in parallel, one thread each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="results/posteriors")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cells.jsonl"
    done = [json.loads(line) for line in cache.read_text().splitlines()] if cache.exists() else []
    key = lambda r: (r["problem"], r["guide"], r["seed"], r["steps"], r["lr"])  # noqa: E731
    finished = {key(r) for r in done}
    cells = [
        dict(problem=p, guide=g, seed=s, steps=args.steps, lr=args.lr, eval_particles=args.eval_particles,
             curve_every=args.curve_every, threads=args.threads, device=args.device)
        for s in args.seeds for p in args.problems for g in args.guides
    ]
    todo = [c for c in cells if key(c) not in finished]
    print(f"{len(cells)} cells, {len(cells) - len(todo)} cached in {cache}, {len(todo)} to run", flush=True)
    with get_context("spawn").Pool(args.jobs) as pool, cache.open("a") as f:
        for record in pool.imap_unordered(run_cell, todo):
            f.write(json.dumps(record) + "\n")
            f.flush()
            done.append(record)
            print(f"{record['problem']:<20} {record['guide']:<13} seed {record['seed']}: gap {record['gap']:+.3f} "
                  f"± {record['gap_se']:.3f}, {record['ms_per_step']:.1f} ms/step", flush=True)
    wanted = {key(c) for c in cells}
    records = [r for r in done if key(r) in wanted]
    summarize(records, args.problems, args.guides)
    (out / "results.json").write_text(json.dumps({"setting": vars(args), "records": records}, indent=2))
    print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
