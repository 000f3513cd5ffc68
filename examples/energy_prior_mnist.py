"""Energy-prior VAEs on dynamically binarized MNIST: Table 2 (MNIST column) of *Variational Inference with
Unnormalized Priors* (anonymous authors, manuscript under double-blind review), at reduced scale.

Four VAEs with the paper's architecture (encoder 784-256-256-128 with ELUs -> mean and log-variance of a
64-d Gaussian posterior; decoder 64-256-256-784 with ELUs -> Bernoulli logits; batch 64; Adam with
learning rate 1e-3 for the VAE and 2e-4 for the prior):

* ``normal``: N(0, I) prior, trained by ``Trace_ELBO``;
* ``vamp``: VampPrior with 16 pseudo-inputs sharing the encoder, ``Trace_ELBO``;
* ``grbm_ssm``: GRBM prior (64 visible x 64 hidden, Eq. 12) trained by ``EnergyPriorELBO`` with sliced
  score matching (Alg. 1);
* ``grbm_adv``: the same GRBM trained with adversarial CD against a 4-layer IAF (Alg. 2).

Test NLL (nats): for the normalized priors the IWAE bound (an upper bound on the NLL); for the GRBM priors
an ESTIMATE: IWAE with the unnormalized prior minus an AIS estimate of log Z (a stochastic lower bound on
log Z, so the NLL tends to be under-estimated). The default run trains each model for one epoch (937 steps) and
evaluates on a subset of the test set (it says so in its output); the paper trains for 100
epochs on all data, so expect much larger NLLs than its numbers.

Usage::

    python examples/energy_prior_mnist.py                      # 1 epoch per model: about 3 min on 1 thread
    python examples/energy_prior_mnist.py --epochs 3           # about 8 min
    python examples/energy_prior_mnist.py --epochs 100 --max-steps 0 --test-size 10000 --iw-samples 1000
"""

from __future__ import annotations

import argparse
import json
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402
from pyro.infer import SVI, Trace_ELBO  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from pyro_diffvi.datasets import Minibatches, load_mnist  # noqa: E402
from pyro_diffvi.guides import GaussianGuide  # noqa: E402
from pyro_diffvi.infer import AdversarialCDLoss, EnergyPriorELBO, SlicedScoreMatchingLoss  # noqa: E402
from pyro_diffvi.metrics import energy_prior_log_likelihood, iwae  # noqa: E402
from pyro_diffvi.nn.mlp import MLP  # noqa: E402
from pyro_diffvi.priors import GRBMPrior, VampPrior  # noqa: E402
from pyro_diffvi.util import resolve_device, set_seed  # noqa: E402

LATENT = 64
PAPER_NLL = {"grbm_ssm": 91.89, "grbm_adv": 92.93, "vamp": 95.25, "normal": 96.03}
LABELS = {
    "normal": "VAE w/ N(0, 1) prior",
    "vamp": "VAE w/ VampPrior (16)",
    "grbm_ssm": "VAE w/ GRBM prior (SSM)",
    "grbm_adv": "VAE w/ GRBM prior (Adv.)",
}


class Encoder(nn.Module):
    """784-256-256-128 with ELUs; the output splits into the mean and log-variance of q(z|x)."""

    def __init__(self):
        super().__init__()
        self.net = MLP(784, 2 * LATENT, hidden_dims=(256, 256), activation="elu")

    def forward(self, x):
        loc, log_var = self.net(x).chunk(2, -1)
        return loc, (0.5 * log_var).exp()


def make_decoder():
    return MLP(LATENT, 784, hidden_dims=(256, 256), activation="elu")


class Vae:
    """Model + guide for one prior kind."""

    def __init__(self, kind: str, device, init_pseudo_inputs):
        self.kind = kind
        self.encoder = Encoder().to(device)
        self.decoder = make_decoder().to(device)
        self.prior_module = None
        if kind == "vamp":
            self.prior_module = VampPrior(self.encoder, 16, (784,), init_pseudo_inputs=init_pseudo_inputs).to(device)
        elif kind.startswith("grbm"):
            self.prior_module = GRBMPrior(LATENT, 64).to(device)
        self.guide = GaussianGuide(self.model, latent="z", observed="x", encoder=self.encoder)

    def prior(self, like: torch.Tensor):
        if self.kind == "normal":
            return dist.Normal(like.new_zeros(LATENT), 1.0).to_event(1)
        return self.prior_module()

    def model(self, x):
        pyro.module("decoder", self.decoder)
        prior = self.prior(x)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def prior_samples(self, n: int, like: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.prior(like).sample((n,))


def make_svi(vae: Vae, args):
    if vae.kind in ("normal", "vamp"):
        # the VampPrior's pseudo-inputs are part of the prior: give them the prior learning rate too
        optim = pyro.optim.Adam(
            lambda name: {"lr": args.prior_lr if "pseudo_inputs" in name else args.lr}
        )
        return SVI(vae.model, vae.guide, optim, loss=Trace_ELBO()), None
    objective = (
        SlicedScoreMatchingLoss(num_projections=1) if vae.kind == "grbm_ssm" else AdversarialCDLoss(num_transforms=4)
    )
    elbo = EnergyPriorELBO(prior_objective=objective)
    optim = pyro.optim.Adam(elbo.optim_args({"lr": args.lr}, prior={"lr": args.prior_lr}))
    return SVI(vae.model, vae.guide, optim, loss=elbo), elbo


def train(vae: Vae, train_images, args, device):
    batches = Minibatches(train_images, batch_size=64, binarize="dynamic", drop_last=True, seed=args.seed)
    svi, elbo = make_svi(vae, args)
    total = args.epochs * len(batches)
    if args.max_steps > 0:
        total = min(total, args.max_steps)
    history, step = [], 0
    bar = tqdm(total=total, desc=f"train {vae.kind}", leave=False)
    while step < total:
        for x in batches:
            loss = svi.step(x.to(device)) / x.shape[0]
            terms = dict(elbo.last_terms) if elbo is not None else {}
            history.append({"step": step, "loss_per_point": loss, **terms})
            step += 1
            bar.update()
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss:.1f}")
            if step >= total:
                break
    bar.close()
    return history


def evaluate(vae: Vae, test_x, args):
    if vae.kind in ("normal", "vamp"):
        est = iwae(vae.model, vae.guide, test_x, num_particles=args.iw_samples, max_particles_per_chunk=args.chunk)
        return {
            "nll": -est.mean, "data_se": est.stderr, "mc_se": None,
            "method": f"IWAE-{args.iw_samples} bound (NLL upper bound)",
        }
    est = energy_prior_log_likelihood(
        vae.model, vae.guide, test_x, num_particles=args.iw_samples, max_particles_per_chunk=args.chunk,
        num_chains=args.ais_chains, num_ais_steps=args.ais_steps,
    )
    log_z, log_z_se = est.log_partition["z"]
    return {
        "nll": -est.mean, "data_se": est.data_stderr, "mc_se": est.stderr, "log_z": log_z, "log_z_se": log_z_se,
        "method": f"ESTIMATE: IWAE-{args.iw_samples} (unnormalized prior) - AIS log Z "
                  f"({args.ais_chains} chains x {args.ais_steps} steps)",
    }


def plot_samples(vaes, like, path):
    fig, axes = plt.subplots(1, len(vaes), figsize=(3.2 * len(vaes), 3.4))
    for ax, vae in zip(list(axes) if len(vaes) > 1 else [axes], vaes):
        z = vae.prior_samples(64, like)
        with torch.no_grad():
            img = torch.sigmoid(vae.decoder(z)).reshape(8, 8, 28, 28).permute(0, 2, 1, 3).reshape(224, 224)
        ax.imshow(img.cpu(), cmap="gray")
        ax.set_title(LABELS[vae.kind], fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_history(histories, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, hist in histories.items():
        loss = torch.tensor([h["loss_per_point"] for h in hist])
        k = max(1, len(loss) // 50)
        smooth = loss[: len(loss) // k * k].reshape(-1, k).mean(1)
        ax.plot(torch.arange(len(smooth)) * k, smooth, label=LABELS[kind])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss per data point (nats)\n(-ELBO; -partition-free bound for GRBM)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(results, note):
    lines = [
        f"{'model':<28} {'test NLL':>9} {'MC SE':>7} {'data SE':>8} {'paper':>7}  method",
        "-" * 100,
    ]
    for kind in ("grbm_ssm", "grbm_adv", "vamp", "normal"):
        if kind not in results:
            continue
        r = results[kind]
        mc = f"{r['mc_se']:.3f}" if r["mc_se"] is not None else "-"
        lines.append(
            f"{LABELS[kind]:<28} {r['nll']:>9.2f} {mc:>7} {r['data_se']:>8.2f} {PAPER_NLL[kind]:>7.2f}  {r['method']}"
        )
    lines.append(note)
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=2500, help="cap on SVI steps per model (0: no cap)")
    parser.add_argument("--lr", type=float, default=1e-3, help="VAE learning rate (paper: 1e-3)")
    parser.add_argument("--prior-lr", type=float, default=2e-4, help="prior learning rate (paper: 2e-4)")
    parser.add_argument("--models", default="normal,vamp,grbm_ssm,grbm_adv")
    parser.add_argument("--train-size", type=int, default=60000)
    parser.add_argument("--test-size", type=int, default=500, help="test images evaluated (of 10,000)")
    parser.add_argument("--iw-samples", type=int, default=200, help="importance samples per test image")
    parser.add_argument("--chunk", type=int, default=25, help="importance samples evaluated at once")
    parser.add_argument("--ais-chains", type=int, default=256)
    parser.add_argument("--ais-steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default="results/energy_prior_mnist")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = set(kinds) - set(LABELS)
    if unknown:
        parser.error(f"unknown --models {sorted(unknown)}; choose from {sorted(LABELS)}")
    os.makedirs(args.out, exist_ok=True)
    set_seed(args.seed)

    train_images, _ = load_mnist("train", device=device)
    train_images = train_images[: args.train_size]
    test_x, _ = load_mnist("test", binarize="static", seed=args.seed, device=device)
    test_x = test_x[: args.test_size]

    results, histories, vaes = {}, {}, []
    start = time.time()
    for kind in kinds:
        pyro.clear_param_store()
        set_seed(args.seed)
        init = train_images[torch.randperm(train_images.shape[0], device=device)[:16]]
        vae = Vae(kind, device, init_pseudo_inputs=init)
        t0 = time.time()
        histories[kind] = train(vae, train_images, args, device)
        t_train = time.time() - t0
        t0 = time.time()
        set_seed(args.seed + 1)
        r = evaluate(vae, test_x, args)
        r.update(train_seconds=t_train, eval_seconds=time.time() - t0, steps=len(histories[kind]))
        results[kind] = r
        vaes.append(vae)
        tqdm.write(f"{LABELS[kind]}: test NLL {r['nll']:.2f} nats ({r['method']}), "
                   f"train {t_train:.0f} s, eval {r['eval_seconds']:.0f} s")
        with open(os.path.join(args.out, "results.json"), "w") as f:  # checkpoint of finished models
            json.dump({"args": vars(args), "results": results}, f, indent=2)

    steps = {k: results[k]["steps"] for k in results}
    note = (
        f"Reduced scale: {steps} SVI steps of batch 64 per model (paper: 100 epochs = 93,700 steps); test NLL on "
        f"the first {test_x.shape[0]} of 10,000 statically binarized test images. 'MC SE' is the Monte-Carlo "
        "error (IWAE + AIS); 'data SE' the spread over test images / sqrt(N). GRBM rows are ESTIMATES "
        "(AIS log Z is a stochastic lower bound: NLL tends to be under-estimated); other rows are IWAE bounds."
    )
    table = format_table(results, note)
    print(table)
    print(f"total runtime {time.time() - start:.0f} s")
    plot_samples(vaes, test_x, os.path.join(args.out, "samples.png"))
    plot_history(histories, os.path.join(args.out, "training_loss.png"))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"args": vars(args), "results": results, "paper_nll": PAPER_NLL, "note": note,
                   "total_seconds": time.time() - start}, f, indent=2)
    with open(os.path.join(args.out, "table.txt"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
