r"""Semi-supervised VAEs on MNIST with structured priors: the DDVI paper's Sec. 4.1 / 5.2 and its Table 2.

The model is the M2 model of Kingma et al. (2014) with a structured prior whose components are the
digits: :math:`l \sim \mathrm{Cat}(1/10)`, :math:`z \mid l \sim p(z \mid l)` (one pinwheel arm, swiss-roll
segment or square-side segment per digit), :math:`x \mid z \sim \mathrm{Bernoulli}(\mathrm{dec}(z))`. It is
one Pyro model for labelled (``model(x, y)``) and unlabelled (``model(x)``) batches::

    def model(x, y=None):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(logits=x.new_zeros(10)), obs=y)
            z = pyro.sample("z", prior.component(y))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

and the guide is an ``AutoGuideList`` of a :class:`~pyro_diffvi.guides.ClassifierGuide` for ``y`` and a
continuous guide for ``z`` that reads the label (``condition_on="y"``): DDVI (diffusion guide,
``DDVI_ELBO`` with the label-conditioned sleep term), AEVB (Gaussian) and AEVB-IAF (flow), all trained
with the unlabelled bound summed exactly over labels plus the M2 classification term
(``classification_weight``). AAEB is the adversarial autoencoder baseline: a Gaussian encoder of ``x``
alone, the discriminator against prior draws (of the labelled component for labelled batches), no
classifier and no ELBO.

Per (prior, guide, seed) it reports, on test images whose labels it does not see:

* ``elbo_nats``: the unlabelled ELBO :math:`\mathcal U(x)` in nats per image (a lower bound on
  :math:`\log p(x)`; enumerated over labels, mean of ``--eval-repeats`` evaluations) and its per-pixel
  form (divided by 784; the paper's Table 2 column is a per-pixel *reconstruction* error, which is a
  different quantity: compare directions, not values);
* ``knn_acc``: kNN (k = 20) accuracy of test latents, encoded with the classifier's label (AAEB: with
  none), against the labelled training latents;
* ``latent_nll``: the negative log likelihood of the test latents under a KDE of prior draws;
* ``classifier_acc``: test accuracy of :math:`\arg\max_l q(l|x)`.

Run ``python examples/ddvi_semisupervised.py --quick`` (2 CPU cores, minutes) or the paper's scale with
``--device cuda``. Results: ``--out``/results.json (a list of records), table.md, latents_<prior>.png.
Each finished (prior, guide, seed) cell is saved in ``--out``/cells at once; a rerun skips finished cells
(so an interrupted run resumes, and runs for different ``--priors`` can share one ``--out``).

The DDVI guide uses the main demo's chain by default (``--ddvi-chain paper``: the paper's linear schedule,
T = 20, in the latent's own coordinates, wake-sleep without the head term); on the pinwheel at ``--quick``
scale (seed 0) the library's default chain measured -195.4 nats and kNN 0.28 against -182.7 and 0.41 at
learning rate 1e-3.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, TraceEnum_ELBO
from pyro.infer.autoguide import AutoGuideList
from pyro.optim import Adam
from tqdm import tqdm

from pyro_diffvi.datasets import Minibatches, load_mnist
from pyro_diffvi.demo import DDVI_KWARGS, DIFFUSION_KWARGS, PRIOR_KWARGS, make_decoder
from pyro_diffvi.guides import ClassifierGuide, DiffusionGuide, FlowGuide, GaussianGuide
from pyro_diffvi.infer import DDVI_ELBO, AdversarialAutoencoderLoss
from pyro_diffvi.metrics import knn_accuracy, latent_nll
from pyro_diffvi.plots import plot_latent_panels
from pyro_diffvi.priors import Pinwheel, Square, SwissRoll
from pyro_diffvi.util import set_seed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _cells import CellStore, mean_sd, start_run, write_results  # noqa: E402 (shared by the example scripts)

PRIORS = {
    "pinwheel": lambda device: Pinwheel(**PRIOR_KWARGS, device=device),
    "swiss_roll": lambda device: SwissRoll(device=device),
    "square": lambda device: Square(device=device),
}
GUIDES = ("ddvi", "aevb", "aevb_iaf", "aaeb")
DDVI_CHAINS = {  # (DiffusionGuide settings, DDVI_ELBO settings)
    "default": ({}, {}),  # the library's defaults: standardized chain, cosine schedule, learned variances
    "paper": (DIFFUSION_KWARGS, DDVI_KWARGS),  # the main demo's: the paper's chain, wake-sleep without the head
}


def make_model(decoder, prior):
    """The semi-supervised model ``model(x, y=None)`` (see the module docstring)."""

    def model(x, y=None):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(logits=x.new_zeros(10)), obs=y)
            z = pyro.sample("z", prior.component(y))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    return model


def make_guide_and_loss(kind: str, model, args):
    """The guide and objective of one method."""
    encoder = dict(encoder_hidden_dims=args.hidden, encoder_activation="leaky_relu")
    if kind == "aaeb":
        return GaussianGuide(model, "z", "x", **encoder), AdversarialAutoencoderLoss(latent="z")
    latent_guide = {
        "ddvi": lambda: DiffusionGuide(model, "z", "x", condition_on="y", **DDVI_CHAINS[args.ddvi_chain][0], **encoder),
        "aevb": lambda: GaussianGuide(model, "z", "x", condition_on="y", **encoder),
        "aevb_iaf": lambda: FlowGuide(model, "z", "x", condition_on="y", **encoder),
    }[kind]
    # the list creates the plates of its parts: its data plate takes each batch's size
    guide = AutoGuideList(model, create_plates=lambda x, y=None: pyro.plate("data", x.shape[0]))
    guide.append(ClassifierGuide(model, "y", "x", **encoder))
    guide.append(latent_guide())
    sleep = DDVI_CHAINS[args.ddvi_chain][1] if kind == "ddvi" else {"sleep": "none"}
    loss = DDVI_ELBO(**sleep, classification_weight=args.alpha, max_plate_nesting=1)
    return guide, loss


def split_labels(y: torch.Tensor, num_labels: int, seed: int) -> torch.Tensor:
    """Indices of a class-balanced labelled subset (``num_labels / 10`` per digit), drawn with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    per_class = num_labels // 10
    picks = [torch.nonzero(y == c).squeeze(-1) for c in range(10)]
    return torch.cat([p[torch.randperm(len(p), generator=g)[:per_class]] for p in picks])


def train(model, guide, loss, data, args, seed: int, desc: str) -> float:
    """Alternate unlabelled and labelled minibatches (one step each) for ``args.epochs`` passes over the
    unlabelled images; return the seconds taken."""
    x_lab, y_lab, x_unl = data
    svi = SVI(model, guide, Adam({"lr": args.lr}), loss)
    start = time.time()
    for epoch in range(args.epochs):
        unlabelled = Minibatches(x_unl, batch_size=args.batch_size, seed=seed + epoch)
        labelled = iter(())
        bar = tqdm(unlabelled, desc=f"{desc} epoch {epoch + 1}/{args.epochs}", leave=False, disable=None)
        for step, x in enumerate(bar):
            try:
                xl, yl = next(labelled)
            except StopIteration:
                labelled = iter(Minibatches(x_lab, y_lab, batch_size=args.batch_size, seed=seed + 1000 * epoch + step))
                xl, yl = next(labelled)
            svi.step(x)
            svi.step(xl, yl)
    return time.time() - start


@torch.no_grad()
def evaluate(kind: str, model, guide, prior, data, args) -> dict:
    """The test metrics of one trained method (see the module docstring)."""
    x_lab, y_lab, x_test, y_test = data
    n = x_test.shape[0]
    if kind == "aaeb":
        z_test, z_lab, classifier_acc, elbo, elbo_se = guide(x_test)["z"], guide(x_lab)["z"], None, None, None
    else:
        predicted = guide[0].probs(x_test).argmax(-1)
        classifier_acc = (predicted == y_test).double().mean().item()
        z_test = guide(x_test, predicted)["z"]  # a labelled call: z ~ q(z | x, l) with the classifier's label
        z_lab = guide(x_lab, y_lab)["z"]
        objective = TraceEnum_ELBO(max_plate_nesting=1)
        values = torch.tensor([-objective.loss(model, guide, x_test) / n for _ in range(args.eval_repeats)])
        elbo, elbo_se = (
            values.mean().item(),
            (values.std().item() / math.sqrt(len(values)) if len(values) > 1 else None),
        )
    nll = latent_nll(z_test, prior.sample((n,)))
    knn = knn_accuracy(z_lab, y_lab, test_latents=z_test, test_labels=y_test, k=20)
    return {
        "elbo_nats": elbo, "elbo_stderr": elbo_se, "elbo_per_pixel": None if elbo is None else elbo / 784,
        "knn_acc": knn, "latent_nll": nll.mean, "latent_nll_stderr": nll.stderr, "classifier_acc": classifier_acc,
        "latents": z_test,
    }


def run_cell(prior_name: str, kind: str, seed: int, data, args, device) -> dict:
    pyro.clear_param_store()
    set_seed(seed)
    prior = PRIORS[prior_name](device)
    model = make_model(make_decoder(2, device=device, hidden_dims=args.hidden), prior)
    guide, loss = make_guide_and_loss(kind, model, args)
    x_train, y_train, x_test, y_test = data
    labelled = split_labels(y_train, args.labels, seed)
    mask = torch.ones(len(y_train), dtype=torch.bool)
    mask[labelled] = False
    train_data = (x_train[labelled], y_train[labelled], x_train[mask][: args.unlabelled])
    seconds = train(model, guide, loss, train_data, args, seed, f"{prior_name}/{kind}/{seed}")
    result = evaluate(kind, model, guide, prior, (x_train[labelled], y_train[labelled], x_test, y_test), args)
    result.update(prior=prior_name, guide=kind, seed=seed, train_seconds=seconds)
    return result


def summarize(records: list[dict]) -> str:
    """A markdown table: mean and spread (sample standard deviation) over seeds of each metric."""
    keys = ("elbo_nats", "knn_acc", "latent_nll", "classifier_acc")
    lines = [
        "| prior | guide | seeds | ELBO (nats/image) | ELBO per pixel "
        "| kNN-20 acc | latent NLL | classifier acc | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cells = sorted({(r["prior"], r["guide"]) for r in records}, key=lambda c: (c[0], GUIDES.index(c[1])))
    for prior, kind in cells:
        rows = [r for r in records if r["prior"] == prior and r["guide"] == kind]
        stats = {k: mean_sd([r[k] for r in rows]) for k in keys}
        per_pixel = mean_sd([r["elbo_nats"] / 784 for r in rows if r["elbo_nats"] is not None], digits=4)
        seconds = sum(r["train_seconds"] for r in rows) / len(rows)
        lines.append(
            f"| {prior} | {kind} | {len(rows)} | {stats['elbo_nats']} | {per_pixel} | {stats['knn_acc']} "
            f"| {stats['latent_nll']} | {stats['classifier_acc']} | {seconds:.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 CPU cores, minutes: a subset of the data, small networks"
    )
    parser.add_argument("--priors", nargs="+", default=list(PRIORS), choices=list(PRIORS))
    parser.add_argument("--guides", nargs="+", default=list(GUIDES), choices=list(GUIDES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--labels", type=int, default=1000, help="labelled training images (balanced over digits)")
    parser.add_argument("--unlabelled", type=int, default=59000, help="unlabelled training images")
    parser.add_argument("--test-size", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=100, help="passes over the unlabelled images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--alpha", type=float, default=None,
                        help="weight of the classification term (default 0.1 x number of images, Kingma et al. 2014)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[1000, 1000], help="encoder/decoder hidden widths")
    parser.add_argument("--eval-repeats", type=int, default=4, help="evaluations of the test ELBO (for its SE)")
    parser.add_argument(
        "--ddvi-chain",
        default="paper",
        choices=list(DDVI_CHAINS),
        help="the DDVI guide's settings: the library's defaults or the paper's chain (as the main demo)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/ddvi_semisupervised")
    args = parser.parse_args(argv)
    if args.quick:  # 141 unlabelled and 141 labelled steps; a higher learning rate for so few steps
        args.unlabelled, args.test_size, args.epochs, args.hidden, args.lr = 6000, 1000, 3, [256, 256], 3e-3
    args.hidden = tuple(args.hidden)
    if args.alpha is None:
        args.alpha = 0.1 * (args.labels + args.unlabelled)
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    device = start_run(args)
    x_train, y_train = load_mnist("train", binarize="static", device=device)
    x_test, y_test = load_mnist("test", binarize="static", device=device)
    data = (x_train, y_train, x_test[: args.test_size], y_test[: args.test_size])
    cells = CellStore(args.out)
    start = time.time()
    for prior_name in args.priors:
        for kind in args.guides:
            for seed in args.seeds:
                key = f"{prior_name}_{kind}_{seed}"
                if cells.done(key):  # finished before: resumed runs skip it
                    continue
                result = run_cell(prior_name, kind, seed, data, args, device)
                latents = result.pop("latents").cpu()
                cells.save(key, result, latents)
                print(json.dumps(result), flush=True)
    records = cells.records()
    for prior_name in sorted({r["prior"] for r in records}):
        first = min(r["seed"] for r in records if r["prior"] == prior_name)
        panels = {kind: cells.tensors(f"{prior_name}_{kind}_{first}") for kind in GUIDES}
        plot_latent_panels(
            {kind: z for kind, z in panels.items() if z is not None}, data[3].cpu(), PRIORS[prior_name]("cpu"),
            os.path.join(args.out, f"latents_{prior_name}.png"),
            suptitle=f"{prior_name} prior: test latents by digit (seed {first}; z ~ q(z | x, predicted label))",
        )
    table = summarize(records)
    settings = vars(args)
    write_results(args.out, records, table, settings)
    print(f"total {time.time() - start:.0f} s; mean ± sd over seeds {args.seeds}; settings {settings}")
    return records


if __name__ == "__main__":
    main()
