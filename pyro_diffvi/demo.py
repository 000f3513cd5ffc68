r"""Main demo: DDVI vs a Gaussian guide on MNIST with a pinwheel prior and a 2-D latent (DDVI paper, Table 1).

Run ``python -m pyro_diffvi`` (or ``pyro-diffvi-demo``). Prints the test ELBO (nats per image, with
its Monte-Carlo standard error), the latent NLL (KDE) and the kNN (k = 20) accuracy of both guides,
and writes ``latents.png`` and ``results.json`` under ``--out``.

Configuration (both guides get the same data, optimizer and epochs):

* **Prior**: a pinwheel of radius 10 (``PRIOR_KWARGS``: radial std 3, tangential std 0.5), the size of
  Johnson et al.'s pinwheel and of the DDVI paper's latents (its MMD bandwidths are 2..80).
* **DDVI**: the paper's chain (``DIFFUSION_KWARGS``: T = 20, linear schedule :math:`10^{-4}..0.02`,
  :math:`\sigma_t^2 = \beta_t`, in the latent's own coordinates) with
  ``DDVI_ELBO(sleep="wake-sleep", sleep_head=False)``. On this VAE, whose decoder is learned, the
  library's defaults (standardized chain, path-derivative gradients) measured worse after two epochs
  (seed 0, 2000 test images: -167.6 nats, -162.9 with ``path_gradient=False``, against -159.1 for the
  Gaussian guide), and one run diverged in its second epoch; see docs/results.md.
* **Budget**: two epochs (938 steps of batch 128, Adam 1e-3). ``--seeds 0 1 2`` repeats the comparison
  and reports the mean and spread of the ELBO difference over seeds; with one seed the output says so.

``latents.png`` shows the first seed's test latents coloured by digit (with a legend) over the prior's
exact density (shaded, with the 50/90/99% highest-density regions), on equal axis scales
(:func:`pyro_diffvi.plots.plot_latent_panels`).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch import nn
from tqdm import tqdm

from pyro_diffvi.datasets import Minibatches, load_mnist
from pyro_diffvi.guides import DiffusionGuide, GaussianGuide
from pyro_diffvi.infer import DDVI_ELBO
from pyro_diffvi.metrics import elbo as elbo_estimate
from pyro_diffvi.metrics import knn_accuracy, latent_nll
from pyro_diffvi.plots import plot_latent_panels
from pyro_diffvi.priors import Pinwheel
from pyro_diffvi.util import resolve_device, set_seed

ENCODER_KWARGS = dict(encoder_hidden_dims=(1000, 1000), encoder_activation="leaky_relu")
"""The paper's MNIST encoder, 784-1000-1000 with LeakyReLU, as guide keyword arguments."""

PRIOR_KWARGS = dict(radius=10.0, radial_scale=3.0, tangential_scale=0.5)
"""The demo's pinwheel: Johnson et al.'s size (see the module docstring for why not unit radius)."""

DIFFUSION_KWARGS = dict(num_steps=20, schedule="linear", variance="beta", standardize=False, path_gradient=False)
"""The DDVI guide's chain: the paper's T = 20 and linear schedule, in the latent's own coordinates."""

DDVI_KWARGS = dict(sleep="wake-sleep", sleep_head=False)
"""The DDVI objective: wake-sleep denoiser training without the head's KL term (see the module docstring)."""


def make_decoder(
    dim: int = 2, *, device: torch.device | str = "cpu", hidden_dims: tuple[int, ...] = (1000, 1000)
) -> nn.Module:
    """The paper's MNIST decoder: dim-1000-1000-784 with LeakyReLU, Bernoulli logits out.

    :param dim: width of the latent.
    :param device: device of the parameters.
    :param hidden_dims: hidden widths (the paper's: 1000, 1000).

    Example:

    >>> import torch
    >>> from pyro_diffvi.demo import make_decoder
    >>> make_decoder(2)(torch.zeros(3, 2)).shape
    torch.Size([3, 784])
    """
    layers, width = [], dim
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, 784)).to(device)


def make_model(decoder: nn.Module, prior, *, name: str = "decoder"):
    """A VAE model ``model(x)`` for flattened images: ``z ~ prior``, ``x ~ Bernoulli(logits=decoder(z))``;
    the decoder is registered with Pyro as ``name``.

    :param decoder: a network from latents to Bernoulli logits.
    :param prior: the prior of ``z``, e.g. a :class:`~pyro_diffvi.priors.Pinwheel`.
    :param name: the decoder's name in the Pyro param store.

    Example:

    >>> import pyro, torch
    >>> from pyro_diffvi.demo import make_decoder, make_model
    >>> from pyro_diffvi.priors import Pinwheel
    >>> model = make_model(make_decoder(2), Pinwheel())
    >>> trace = pyro.poutine.trace(model).get_trace(torch.zeros(4, 784))
    >>> trace.nodes["z"]["value"].shape
    torch.Size([4, 2])
    """

    def model(x):
        pyro.module(name, decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    return model


def train_and_evaluate(kind: str, args, data, device, seed: int) -> dict:
    """Train one guide of the demo and evaluate it on the test images.

    :param kind: ``"ddvi"`` (diffusion guide, DDVI objective) or ``"gaussian"`` (Gaussian guide, ELBO).
    :param args: the parsed command line (``args.epochs`` is read).
    :param data: ``(x_train, y_train, x_test, y_test)``, binarized flattened images and labels.
    :param device: the device of the networks and data.
    :param seed: the seed of the initialization and the minibatch order.
    :return: test ELBO and its standard error, latent NLL and its standard error, kNN accuracy,
        training seconds and the test latents.

    Example:

    >>> import argparse, torch
    >>> from pyro_diffvi.demo import train_and_evaluate
    >>> x, y = torch.bernoulli(torch.full((32, 784), 0.3)), torch.arange(32) % 10
    >>> result = train_and_evaluate("gaussian", argparse.Namespace(epochs=1), (x, y, x, y), "cpu", seed=0)
    >>> sorted(result)
    ['elbo', 'elbo_stderr', 'knn_accuracy', 'latent_nll', 'latent_nll_stderr', 'latents', 'train_seconds']
    """
    pyro.clear_param_store()
    set_seed(seed)
    prior = Pinwheel(**PRIOR_KWARGS, device=device)
    model = make_model(make_decoder(2, device=device), prior)
    if kind == "ddvi":
        guide = DiffusionGuide(model, "z", "x", **DIFFUSION_KWARGS, **ENCODER_KWARGS)
        loss = DDVI_ELBO(**DDVI_KWARGS)
    else:
        guide = GaussianGuide(model, "z", "x", **ENCODER_KWARGS)
        loss = Trace_ELBO()
    x_train, y_train, x_test, y_test = data
    train_seconds = fit(model, guide, loss, x_train, epochs=args.epochs, seed=seed, desc=kind)
    result = evaluate(model, guide, prior, data)
    result["train_seconds"] = train_seconds
    return result


def fit(model, guide, loss, x_train: torch.Tensor, *, epochs: float, seed: int, desc: str = "train",
        lr: float = 1e-3, batch_size: int = 128) -> float:
    """Train ``model`` and ``guide`` with ``SVI`` and Adam on shuffled minibatches; return the seconds taken.

    :param model: the model, called as ``model(x)``.
    :param guide: the guide.
    :param loss: the objective (e.g. ``Trace_ELBO()`` or ``DDVI_ELBO()``).
    :param x_train: the training images, shape ``(N, 784)``.
    :param epochs: passes over the data; a fractional part trains on that share of one more pass.
    :param seed: the minibatch order of epoch ``e`` is drawn with ``seed + e``.
    :param desc: the progress bar's label (bars are shown only on a terminal).
    :param lr: Adam's learning rate.
    :param batch_size: minibatch size.
    :return: wall-clock seconds of training.

    Example:

    >>> import pyro, torch
    >>> from pyro.infer import Trace_ELBO
    >>> from pyro_diffvi.demo import fit, make_decoder, make_model
    >>> from pyro_diffvi.guides import GaussianGuide
    >>> from pyro_diffvi.priors import Pinwheel
    >>> model = make_model(make_decoder(2), Pinwheel())
    >>> guide = GaussianGuide(model, "z", "x")
    >>> fit(model, guide, Trace_ELBO(), torch.bernoulli(torch.full((64, 784), 0.3)), epochs=0.5, seed=0) >= 0
    True
    """
    svi = SVI(model, guide, Adam({"lr": lr}), loss)
    full, rest = int(epochs), epochs - int(epochs)
    total = full + (1 if rest > 0 else 0)
    start = time.time()
    for epoch in range(total):
        batches = Minibatches(x_train, batch_size=batch_size, shuffle=True, seed=seed + epoch)
        steps = len(batches) if epoch < full else max(1, round(rest * len(batches)))
        bar = tqdm(total=steps, desc=f"{desc} epoch {epoch + 1}/{total}", leave=False, disable=None)
        for step, x in enumerate(batches):
            if step == steps:
                break
            svi.step(x)
            bar.update()
        bar.close()
    return time.time() - start


def evaluate(model, guide, prior, data, *, num_particles: int = 4) -> dict:
    """Test metrics of a trained 2-D-latent VAE: ELBO, latent NLL, kNN accuracy and the test latents.

    :param model: the model, called as ``model(x)``, with latent site ``"z"``.
    :param guide: its trained guide.
    :param prior: the prior of ``z`` (its samples enter the latent NLL).
    :param data: ``(x_train, y_train, x_test, y_test)``.
    :param num_particles: guide draws per test image for the ELBO.
    :return: ``elbo`` and ``elbo_stderr`` (nats per image, Monte-Carlo SE), ``latent_nll`` and its
        ``latent_nll_stderr``, ``knn_accuracy`` (k = 20, train latents as reference) and ``latents``
        (the test latents as a list).

    Example:

    >>> import torch
    >>> from pyro_diffvi.demo import evaluate, make_decoder, make_model
    >>> from pyro_diffvi.guides import GaussianGuide
    >>> from pyro_diffvi.priors import Pinwheel
    >>> prior = Pinwheel()
    >>> model = make_model(make_decoder(2), prior)
    >>> x, y = torch.bernoulli(torch.full((32, 784), 0.3)), torch.arange(32) % 10
    >>> sorted(evaluate(model, GaussianGuide(model, "z", "x"), prior, (x, y, x, y)))
    ['elbo', 'elbo_stderr', 'knn_accuracy', 'latent_nll', 'latent_nll_stderr', 'latents']
    """
    x_train, y_train, x_test, y_test = data
    with torch.no_grad():
        bound = elbo_estimate(model, guide, x_test, num_particles=num_particles)
        z_test = guide(x_test)["z"]
        z_train = guide(x_train[: len(x_test)])["z"]
        nll = latent_nll(z_test, prior.sample((len(x_test),)))
        acc = knn_accuracy(z_train, y_train[: len(x_test)], test_latents=z_test, test_labels=y_test, k=20)
    return {
        "elbo": bound.mean, "elbo_stderr": bound.stderr, "latent_nll": nll.mean, "latent_nll_stderr": nll.stderr,
        "knn_accuracy": acc, "latents": z_test.cpu().tolist(),
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the demo (``python -m pyro_diffvi``) with command-line arguments ``argv``.

    :param argv: the arguments (default: ``sys.argv[1:]``); ``["--help"]`` lists them.
    :return: the summary written to ``results.json``.

    Example:

    >>> from pyro_diffvi.demo import main
    >>> main(["--help"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    SystemExit: 0
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one comparison per seed")
    parser.add_argument("--out", default=os.path.join("results", "demo"))
    parser.add_argument("--train-size", type=int, default=60000)
    parser.add_argument("--test-size", type=int, default=2000)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    runs = {}
    for seed in args.seeds:
        x_train, y_train = load_mnist("train", binarize="static", seed=seed, device=device)
        x_test, y_test = load_mnist("test", binarize="static", seed=seed, device=device)
        x_train, y_train = x_train[: args.train_size], y_train[: args.train_size]
        x_test, y_test = x_test[: args.test_size], y_test[: args.test_size]
        print(f"seed {seed}: MNIST, training on {len(x_train)} images, evaluating on {len(x_test)} test images")
        data = (x_train, y_train, x_test, y_test)
        runs[seed] = {kind: train_and_evaluate(kind, args, data, device, seed) for kind in ("gaussian", "ddvi")}
        _print_table(runs[seed])
    os.makedirs(args.out, exist_ok=True)
    first = runs[args.seeds[0]]
    title = (f"test latents, seed {args.seeds[0]} (of {len(args.seeds)} seed(s) run), "
             "over the pinwheel prior's exact density (50/90/99% regions)")
    _plot(first, y_test, os.path.join(args.out, "latents.png"), title)  # the labels do not depend on the seed
    summary = {
        "per_seed": {s: {k: {kk: vv for kk, vv in r.items() if kk != "latents"} for k, r in run.items()}
                     for s, run in runs.items()},
        "settings": vars(args),
    }
    summary.update(summary["per_seed"][args.seeds[0]])
    diffs = [run["ddvi"]["elbo"] - run["gaussian"]["elbo"] for run in runs.values()]
    summary["ddvi_minus_gaussian_elbo"] = {"per_seed": diffs, "mean": sum(diffs) / len(diffs),
                                           "min": min(diffs), "max": max(diffs)}
    summary["num_seeds"] = len(args.seeds)
    if len(diffs) > 1:
        print(f"DDVI - Gaussian test ELBO over {len(diffs)} seeds {args.seeds}: mean {sum(diffs) / len(diffs):+.2f} "
              f"nats (min {min(diffs):+.2f}, max {max(diffs):+.2f})")
    else:
        print(f"one seed ({args.seeds[0]}): the ELBO difference above has no spread over seeds; "
              "--seeds 0 1 2 repeats the comparison")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"wrote {args.out}/latents.png and {args.out}/results.json")
    return summary


def _print_table(results: dict) -> None:
    print(f"{'guide':10s} {'test ELBO (nats)':>22s} {'latent NLL':>16s} {'kNN acc':>8s}")
    for kind, r in results.items():
        print(
            f"{kind:10s} {r['elbo']:12.2f} ± {r['elbo_stderr']:6.2f}  "
            f" {r['latent_nll']:8.3f} ± {r['latent_nll_stderr']:.3f} "
            f"{r['knn_accuracy']:8.3f}"
        )


def _plot(results: dict, labels: torch.Tensor, path: str, title: str) -> None:
    panels = {f"{kind}: test ELBO {r['elbo']:.1f}": torch.tensor(r["latents"]) for kind, r in results.items()}
    plot_latent_panels(panels, labels, Pinwheel(**PRIOR_KWARGS), path, suptitle=title)
