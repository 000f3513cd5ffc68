r"""Ancestry clustering on human genotypes: the DDVI paper's Sec. 4.2 / 5.3 and its Table 3.

The data are the 1000 Genomes phase-3 genotypes of 2,504 individuals (26 populations, 5 super-populations)
at an ancestry-informative SNP panel shipped through :func:`pyro_diffvi.datasets.load_1000_genomes`
(``--panel seldin``, 127 SNPs, by default; ``kidd``, 55 SNPs), and genotypes simulated with msprime under a
stdpopsim demographic model (``--sim-model OutOfAfrica_3G09``: YRI, CEU, CHB; seeded), where the
population of every sample is known.

The model is a deep latent variable model with a 2-D latent and the DDVI paper's first clustering strategy,
a learnable mixture prior (:class:`~pyro_diffvi.priors.LearnableMixture`: ``--clusters`` Gaussians whose
locations are learned with the decoder). With ``--likelihood binomial`` (default) each genotype is a dosage
:math:`x_{ij} \in \{0, 1, 2\}` with :math:`x_{ij} \mid z_i \sim \mathrm{Binomial}(2, \sigma(f_\theta(z_i)_j))`,
allele frequencies decoded from :math:`z_i`; missing genotypes (``-1``; ``--missing-rate`` hides a share at
random) drop out of the likelihood (masked) and the encoder reads them as ``-1``::

    def model(x):                                   # x: (N, P) dosages, -1 where missing
        pyro.module("decoder", decoder); pyro.module("prior", prior)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior())
            genotypes = dist.Binomial(2, logits=decoder(z), validate_args=False)
            pyro.sample("x", genotypes.mask(x >= 0).to_event(1), obs=x)

With ``--likelihood gaussian`` the data are the paper's input, the standardized top ``--pcs`` principal
components of the genotypes, with a Gaussian likelihood (mean and scale decoded from :math:`z`).

Methods: ``ddvi`` (diffusion guide, ``DDVI_ELBO``; the paper's chain as in the main demo), ``aevb``
(Gaussian guide), ``aevb_iaf`` (IAF flow guide), ``aaeb`` (adversarial autoencoder) and ``pca`` (the first
two principal components of the standardized genotypes). Every method's 2-D latents (one posterior draw per
individual; PCA's scores) are clustered with the paper's read-out, a 20-component full-covariance Gaussian
mixture (:func:`pyro_diffvi.metrics.gmm_clustering_scores`), and scored with purity, completeness and NMI
against the populations and the super-populations, over ``--seeds``.

Outputs in ``--out`` (default ``results/ancestry_clustering``): ``results.json`` (a list of records with keys
``data`` (``1000g`` / ``simulated``), ``panel`` (the SNP panel, or the simulation's model), ``method``,
``seed``, ``level`` (``population`` / ``superpopulation``), ``purity``, ``completeness``, ``nmi``),
``table.md`` (mean ± sd over seeds, beside the paper's Table 3) and ``latents_<data>.png`` (the latent map
of each method coloured by super-population, population names at their centroids, next to PCA). Each
finished (data, method, seed) cell is saved in ``--out``/cells at once; a rerun skips finished cells.

Run ``python examples/ancestry_clustering.py --quick`` (2 CPU cores, minutes) or full scale with
``--device cuda``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO

from pyro_diffvi.datasets import load_1000_genomes, simulate_genotypes
from pyro_diffvi.demo import DDVI_KWARGS, DIFFUSION_KWARGS, fit
from pyro_diffvi.guides import DiffusionGuide, FlowGuide, GaussianGuide
from pyro_diffvi.infer import DDVI_ELBO, AdversarialAutoencoderLoss
from pyro_diffvi.metrics import gmm_clustering_scores
from pyro_diffvi.nn import MLP
from pyro_diffvi.priors import LearnableMixture
from pyro_diffvi.util import resolve_device, set_seed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _cells import CellStore, mean_sd, write_results  # noqa: E402 (shared by the example scripts)

DATA = ("1000g", "simulated")
METHODS = ("ddvi", "aevb", "aevb_iaf", "aaeb", "pca")
LEVELS = ("population", "superpopulation")
# the DDVI paper's Table 3 (1000 Genomes; mean ± 95% interval over 3 seeds)
PAPER_TABLE3 = {
    "aevb": (0.28, 0.02, 0.78, 0.16, 0.59, 0.08),
    "aevb_iaf": (0.29, 0.04, 0.73, 0.06, 0.55, 0.06),
    "aaeb": (0.37, 0.06, 0.76, 0.11, 0.63, 0.02),
    "ddvi": (0.45, 0.03, 0.75, 0.05, 0.66, 0.04),
}


def load_data(kind: str, args):
    """The genotypes of one data set (a :class:`~pyro_diffvi.datasets.GenotypeData`) and its panel name."""
    if kind == "1000g":
        return load_1000_genomes(panel=args.panel), args.panel
    data = simulate_genotypes(args.sim_model, samples_per_population=args.sim_samples, length=args.sim_length,
                              seed=args.sim_seed)
    return data, args.sim_model


def standardized_genotypes(dosages: torch.Tensor) -> torch.Tensor:
    """Genotypes centred and scaled per SNP (Patterson et al. 2006); missing entries (< 0) set to the mean."""
    observed = dosages >= 0
    counts = observed.sum(0).clamp_min(1)
    mean = torch.where(observed, dosages, 0.0).sum(0) / counts
    freq = (mean / 2).clamp(1e-3, 1 - 1e-3)
    return torch.where(observed, dosages - mean, 0.0) / (2 * freq * (1 - freq)).sqrt()


def principal_components(dosages: torch.Tensor, k: int) -> torch.Tensor:
    """The top ``k`` principal-component scores of the standardized genotypes, shape ``(N, k)``."""
    x = standardized_genotypes(dosages.double())
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    scores = u[:, :k] * s[:k]
    return scores * torch.where(scores.abs().amax(0) == scores.amax(0), 1.0, -1.0)  # a fixed sign per axis


def features(dosages: torch.Tensor, args, seed: int = 12345) -> torch.Tensor:
    """The model's data: dosages with ``--missing-rate`` of them hidden (-1), or standardized top PCs."""
    if args.likelihood == "gaussian":
        pcs = principal_components(dosages, args.pcs)
        return ((pcs - pcs.mean(0)) / pcs.std(0)).float()
    hidden = torch.rand(dosages.shape, generator=torch.Generator().manual_seed(seed)) < args.missing_rate
    return torch.where(hidden, -1.0, dosages.float())


def make_model(likelihood: str, num_features: int, prior: LearnableMixture, hidden: tuple[int, ...]):
    """The model ``model(x)`` of the module docstring (its decoder is built here)."""
    out = num_features * (2 if likelihood == "gaussian" else 1)
    decoder = MLP(prior.locs.shape[1], out, hidden_dims=hidden, activation="leaky_relu")

    def model(x):
        pyro.module("decoder", decoder)
        pyro.module("prior", prior)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior())
            if likelihood == "gaussian":
                loc, raw_scale = decoder(z).chunk(2, dim=-1)
                pyro.sample("x", dist.Normal(loc, torch.nn.functional.softplus(raw_scale) + 1e-3).to_event(1), obs=x)
            else:
                genotypes = dist.Binomial(2, logits=decoder(z), validate_args=False)
                pyro.sample("x", genotypes.mask(x >= 0).to_event(1), obs=x)

    return model


def make_guide_and_loss(method: str, model, args):
    """The guide and objective of one method."""
    encoder = dict(encoder_hidden_dims=args.hidden, encoder_activation="leaky_relu")
    if method == "ddvi":
        chain = dict(DIFFUSION_KWARGS, num_steps=args.ddvi_steps, denoiser_hidden_dims=args.denoiser_hidden)
        return DiffusionGuide(model, "z", "x", **chain, **encoder), DDVI_ELBO(**DDVI_KWARGS)
    if method == "aevb_iaf":
        return FlowGuide(model, "z", "x", **encoder), Trace_ELBO()
    if method == "aaeb":
        return GaussianGuide(model, "z", "x", **encoder), AdversarialAutoencoderLoss(latent="z")
    return GaussianGuide(model, "z", "x", **encoder), Trace_ELBO()


def run_cell(kind: str, method: str, seed: int, data, x: torch.Tensor, args, device) -> dict:
    """Train one method on one data set with one seed; return its latents, scores and seconds."""
    pyro.clear_param_store()
    set_seed(seed)
    start = time.time()
    if method == "pca":
        latents = principal_components(data.dosages, 2).float()
    else:
        prior = LearnableMixture(args.clusters, dim=2, scale=args.prior_scale, init_spread=args.prior_spread).to(device)
        model = make_model(args.likelihood, x.shape[1], prior, args.hidden)
        guide, loss = make_guide_and_loss(method, model, args)
        batches = math.ceil(x.shape[0] / args.batch_size)
        fit(model, guide, loss, x.to(device), epochs=args.steps / batches, seed=seed, desc=f"{kind}/{method}/{seed}",
            lr=args.lr, batch_size=args.batch_size)
        with torch.no_grad():
            latents = guide(x.to(device))["z"].cpu()
    seconds = time.time() - start
    records = []
    for level in LEVELS:
        scores = gmm_clustering_scores(latents, getattr(data, level), num_components=args.gmm_components, seed=seed)
        records.append(dict(data=kind, panel=None, method=method, seed=seed, level=level, **scores))
    return {"records": records, "seconds": seconds, "latents": latents}


def plot_maps(panels: dict[str, torch.Tensor], data, path: str, title: str) -> None:
    """Latent maps side by side: points coloured by super-population, population names at their centroids."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (name, z) in zip(axes[0], panels.items()):
        z = z.numpy()
        for s, sname in enumerate(data.superpopulation_names):
            rows = (data.superpopulation == s).numpy()
            if rows.any():
                ax.scatter(z[rows, 0], z[rows, 1], s=3, alpha=0.5, color=colours(s), label=sname, rasterized=True)
        for p, pname in enumerate(data.population_names):
            rows = (data.population == p).numpy()
            if rows.any():
                cx, cy = np.median(z[rows], axis=0)
                ax.annotate(pname, (cx, cy), fontsize=6, ha="center", va="center",
                            bbox=dict(boxstyle="round,pad=0.1", fc="white", alpha=0.6, lw=0))
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=4, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(records: list[dict], seconds: dict) -> str:
    """Markdown tables: mean ± sd over seeds per (data, method, level), and the paper's Table 3."""
    lines = ["| data | panel | level | method | seeds | purity | completeness | NMI | s / run |",
             "|---|---|---|---|---|---|---|---|---|"]
    cells = sorted({(r["data"], r["panel"], r["level"], r["method"]) for r in records},
                   key=lambda c: (DATA.index(c[0]), c[1], LEVELS.index(c[2]), METHODS.index(c[3])))
    for kind, panel, level, method in cells:
        rows = [r for r in records if (r["data"], r["panel"], r["level"], r["method"]) == (kind, panel, level, method)]
        stats = [mean_sd([r[k] for r in rows]) for k in ("purity", "completeness", "nmi")]
        secs = np.mean([seconds.get((kind, method, r["seed"]), float("nan")) for r in rows])
        lines.append(
            f"| {kind} | {panel} | {level} | {method} | {len(rows)} | " + " | ".join(stats) + f" | {secs:.0f} |"
        )
    lines += ["", "The DDVI paper's Table 3 (1000 Genomes, mean ± 95% interval over 3 seeds):", "",
              "| method | purity | completeness | NMI |", "|---|---|---|---|"]
    for method, (p, dp, c, dc, n, dn) in PAPER_TABLE3.items():
        lines.append(f"| {method} | {p:.2f} ± {dp:.2f} | {c:.2f} ± {dc:.2f} | {n:.2f} ± {dn:.2f} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 CPU cores, minutes: fewer steps, small networks, a small simulation"
    )
    parser.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--panel", default="seldin", choices=["seldin", "kidd"], help="1000 Genomes SNP panel")
    parser.add_argument("--likelihood", default="binomial", choices=["binomial", "gaussian"],
                        help="binomial: genotype dosages; gaussian: the paper's standardized principal components")
    parser.add_argument("--pcs", type=int, default=20, help="principal components of the gaussian setting")
    parser.add_argument("--missing-rate", type=float, default=0.0, help="share of genotypes hidden at random (masked)")
    parser.add_argument(
        "--sim-model", default="OutOfAfrica_3G09", choices=["OutOfAfrica_3G09", "AmericanAdmixture_4B18"]
    )
    parser.add_argument("--sim-samples", type=int, default=200, help="simulated individuals per population")
    parser.add_argument("--sim-length", type=int, default=5_000_000, help="simulated chr22 stretch (bp)")
    parser.add_argument("--sim-seed", type=int, default=1)
    parser.add_argument("--clusters", type=int, default=20, help="components of the learnable mixture prior")
    parser.add_argument("--prior-scale", type=float, default=1.0, help="standard deviation of each prior component")
    parser.add_argument("--prior-spread", type=float, default=5.0, help="spread of the initial component locations")
    parser.add_argument("--gmm-components", type=int, default=20, help="components of the read-out mixture (paper: 20)")
    parser.add_argument("--steps", type=int, default=10000, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 512], help="encoder/decoder hidden widths")
    parser.add_argument(
        "--ddvi-steps", type=int, default=DIFFUSION_KWARGS["num_steps"], help="DDVI's diffusion steps T"
    )
    parser.add_argument(
        "--denoiser-hidden", type=int, nargs="+", default=[128, 128, 128, 128], help="DDVI's denoiser widths"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/ancestry_clustering")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.hidden, args.lr, args.sim_samples, args.sim_length = 300, [64, 64], 3e-3, 60, 1_000_000
        args.ddvi_steps, args.denoiser_hidden = 10, [64, 64]
    args.hidden, args.denoiser_hidden = tuple(args.hidden), tuple(args.denoiser_hidden)
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cells = CellStore(args.out)
    start = time.time()
    datasets = {}
    for kind in args.data:
        data, panel = load_data(kind, args)
        datasets[kind] = (data, panel)
        x = features(data.dosages, args)
        for method in args.methods:
            for seed in args.seeds:
                key = f"{kind}_{panel}_{args.likelihood}_{method}_{seed}"
                if cells.done(key):  # finished before: resumed runs skip it
                    continue
                cell = run_cell(kind, method, seed, data, x, args, device)
                for record in cell["records"]:
                    record["panel"] = panel
                latents = cell.pop("latents")
                cells.save(key, cell, latents)
                print(json.dumps(cell), flush=True)
    records, seconds = [], {}
    for cell in cells.records(lambda key: f"_{args.likelihood}_" in key):
        records += cell["records"]
        first_record = cell["records"][0]
        seconds[(first_record["data"], first_record["method"], first_record["seed"])] = cell["seconds"]
    for kind, (data, panel) in datasets.items():
        first = min(args.seeds)
        panels = {}
        for method in ("pca",) + tuple(m for m in METHODS if m != "pca"):
            latents = cells.tensors(f"{kind}_{panel}_{args.likelihood}_{method}_{first}")
            if latents is not None:
                panels[method] = latents
        plot_maps(panels, data, os.path.join(args.out, f"latents_{kind}.png"),
                  f"{kind} ({panel}, {args.likelihood}): latents by super-population, seed {first}")
    table = summarize(records, seconds)
    write_results(args.out, records, table, vars(args))
    print(f"total {time.time() - start:.0f} s; mean ± sd over seeds {args.seeds}")
    return records


if __name__ == "__main__":
    main()
