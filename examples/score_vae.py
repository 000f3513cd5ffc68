r"""ScoreVAE on MNIST: an encoder for a pretrained diffusion model, against a beta-VAE and DiffDecoder
(G. Batzolis, J. Stanczuk, C.-B. Schönlieb, *Variational Diffusion Auto-encoder: Latent Space Extraction from
Pre-trained Diffusion Models*, arXiv:2304.12141, 2023; its Tables 1-2 on CIFAR-10 and CelebA 64).

Data: the 60,000 / 10,000 MNIST images of the package's loader, **dequantized**: the 256 grey levels
:math:`k/256` get uniform noise, :math:`x = (k + u)/256`, :math:`u \sim U(0, 1)` (fresh for every training batch,
drawn once with a fixed seed for the test images), and every model works on :math:`v = 2x - 1 \in [-1, 1]^{784}`.

Methods, all with the same latent width (``--latent``) and the same encoder network
(:class:`~pyro_diffvi.nn.GaussianTimeEncoder`; read at :math:`t = 0` by the baselines), all trained in an
ordinary ``SVI`` loop with :class:`~pyro_diffvi.infer.ScoreVAE_ELBO`:

* ``scorevae``: a pretrained unconditional score model (trained first with the simple weighting and EMA,
  saved to ``--out``/prior_seed<s>.pt and loaded back from the file), frozen, and the time-dependent
  encoder; the model's likelihood is :class:`~pyro_diffvi.distributions.DiffusionLikelihood`, the guide
  :class:`~pyro_diffvi.guides.TimeDependentGaussianGuide` (Sec. 3.5);
* ``scorevae+``: the ``scorevae`` encoder of the same beta, frozen, plus a corrector network trained with
  ``ScoreVAE_ELBO(train_corrector=True)`` (Sec. 3.6);
* ``vae``: our :class:`~pyro_diffvi.guides.GaussianGuide` with a Gaussian MLP decoder
  :math:`\mathcal N(\mu(z), \sigma^2 I)`, one learnable :math:`\sigma` (a calibrated decoder, the paper's
  footnote 2), beta-weighted KL;
* ``diffdecoder``: the Gaussian guide and a conditional score model :math:`s(x_t, z, t)` (the prior's network
  with the latent as context) trained jointly (Sec. 3.2), at beta 0.01 and 0.

Reported per (method, beta, seed) on ``--test-size`` test images: ``l2`` (the mean Euclidean distance
:math:`\|x - \hat x\|_2` per image, pixels in [0, 1]; the paper's L2), ``ssim``
(:func:`~pyro_diffvi.metrics.ssim`; the paper reports LPIPS, which needs a pretrained network we do not
have), ``bound_nats`` (a lower bound on :math:`\log p(x)` in nats per dequantized image in :math:`[0, 1]^{784}`,
:func:`~pyro_diffvi.metrics.elbo` of the trained model at beta = 1, with ``bound_se``, its Monte-Carlo
standard error; subtract :math:`784 \log 256` for a bound on the 8-bit images), ``knn_acc`` (20-nearest-
neighbour accuracy of the test posterior means against 5,000 training posterior means) and ``seconds``
(wall time to decode the test reconstructions). Reconstructions decode the posterior mean :math:`z`:
``scorevae``, ``scorevae+`` and ``diffdecoder`` by the conditional reverse SDE (``--sample-steps`` Euler-
Maruyama steps; ``ssim_ode`` by the probability-flow ODE), ``vae`` by :math:`\mu(z)`. Writes
``--out``/results.json (the records), table.md and reconstructions.png (test images, each method's
reconstructions and samples :math:`z \sim \mathcal N(0, I)`). Finished cells are saved in ``--out``/cells, and a
rerun resumes.

Scales. ``--quick`` (one thread: about 5 minutes of CPU time per seed for all eight cells, more wall time on
shared cores; the per-cell wall and CPU seconds are in results.json, their per-seed sums in table.md). Against the
paper's setting it reduces: the networks (MLP score networks, :class:`~pyro_diffvi.nn.ScoreMLP` with 2 x 512 units
and a (16, 16) per-pixel branch, and MLP encoders, where the paper has a DDPM U-Net prior and convolutional
encoders); the training (the prior 2,000 steps at learning rate 1e-3 with EMA rate 0.995, where the paper trains it
to convergence; encoders, the VAE and DiffDecoder 1,000 steps each, where the paper trains 1.4M (CIFAR-10) or 300K
(CelebA) iterations; the corrector 200; one (t, eps) draw per image and step); the evaluation (100 reverse-SDE
steps instead of 1,000, 256 test images for the metrics and the bound, no probability-flow ODE metric:
``ssim_ode`` is left out, ``--ode-metrics`` puts it back); and the data (28x28 greyscale digits instead of 32x32 /
64x64 colour images). Every quick value is a default that an explicit option overrides. ``--device cuda`` without
``--quick`` selects the paper's architecture (``--network unet``, 128 base channels, attention at 14x14 here for
28x28 images; ``--encoder conv``) with 100,000-step budgets (``--prior-steps``, ``--steps``; DiffDecoder, which has
no pretrained prior, their sum) and 1,000 sampler steps.
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
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402
from pyro.infer import SVI  # noqa: E402
from pyro.optim import Adam  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from pyro_diffvi.datasets import load_mnist  # noqa: E402
from pyro_diffvi.diffusion import ScoreModel, ScoreModelTrainer  # noqa: E402
from pyro_diffvi.distributions import DiffusionLikelihood  # noqa: E402
from pyro_diffvi.guides import GaussianGuide, TimeDependentGaussianGuide  # noqa: E402
from pyro_diffvi.infer import ScoreVAE_ELBO  # noqa: E402
from pyro_diffvi.metrics import elbo, knn_accuracy, l2_distance, ssim  # noqa: E402
from pyro_diffvi.nn import MLP, ConvGaussianTimeEncoder, GaussianTimeEncoder  # noqa: E402
from pyro_diffvi.plots import plot_image_grid  # noqa: E402
from pyro_diffvi.util import set_seed  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _cells import CellStore, mean_sd, start_run, write_results  # noqa: E402 (shared by the example scripts)

D = 784
GRID = (("scorevae", 0.01), ("scorevae", 1.0), ("scorevae+", 0.01), ("scorevae+", 1.0),
        ("vae", 0.01), ("vae", 1.0), ("diffdecoder", 0.01), ("diffdecoder", 0.0))
LOG_JACOBIAN = D * math.log(2.0)  # v = 2x - 1: log p_x(x) = log p_v(v) + 784 log 2


def dequantize(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Grey levels k / 256 to v = 2 (k + u) / 256 - 1 with u ~ U(0, 1), in [-1, 1)."""
    noise = torch.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return 2 * (images + noise / 256) - 1


def to_pixels(v: torch.Tensor) -> torch.Tensor:
    return ((v + 1) / 2).clamp(0, 1)


def network_options(args) -> dict:
    if args.network == "unet":
        return {"image_shape": [1, 28, 28], "base_channels": args.unet_channels, "num_res_blocks": args.unet_res_blocks,
                "dropout": 0.1}
    return {"global_hidden_dims": list(args.score_hidden), "pixel_hidden_dims": list(args.pixel_hidden)}


def make_encoder(args, device) -> nn.Module:
    if args.encoder == "conv":
        return ConvGaussianTimeEncoder((1, 28, 28), args.latent, channels=(32, 64, 128)).to(device)
    return GaussianTimeEncoder(D, args.latent, hidden_dims=args.hidden).to(device)


class ConvDecoder(nn.Module):
    """The beta-VAE's decoder mirroring :class:`~pyro_diffvi.nn.ConvGaussianTimeEncoder` (Appendix B.2): a linear map
    to 128 x 4 x 4, then stride-2 transposed convolutions with GELU to 64 x 7 x 7, 32 x 14 x 14 and 1 x 28 x 28."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(latent_dim, 128 * 4 * 4)
        self.deconv = nn.Sequential(
            nn.GELU(), nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1),                    # 4 -> 7
            nn.GELU(), nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1),  # 7 -> 14
            nn.GELU(), nn.ConvTranspose2d(32, 1, 3, stride=2, padding=1, output_padding=1),   # 14 -> 28
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.linear(z.reshape(-1, z.shape[-1])).reshape(-1, 128, 4, 4)
        return self.deconv(h).reshape(z.shape[:-1] + (D,))


def standard_normal(like: torch.Tensor, k: int) -> dist.Distribution:
    return dist.Normal(like.new_zeros(k), 1.0).to_event(1)


def build(method: str, prior: ScoreModel | None, args, device):
    """The model, guide and the modules of one method (see the module docstring)."""
    k, encoder = args.latent, make_encoder(args, device)
    modules = {"encoder": encoder}
    if method in ("scorevae", "scorevae+"):
        corrector = None
        if method == "scorevae+":
            corrector = ScoreModel((D,), context_dim=k, network="mlp", zero_init=True, gaussian_skip=False,
                                   sde=prior.sde, network_options={"global_hidden_dims": list(args.hidden),
                                                                   "pixel_hidden_dims": list(args.pixel_hidden)})
            corrector = corrector.to(device)
            modules["corrector"] = corrector

        def model(x):
            if corrector is not None:
                pyro.module("corrector", corrector)
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", standard_normal(x, k))
                pyro.sample("x", DiffusionLikelihood(prior, z, encoder=encoder, corrector=corrector,
                                                     num_time_samples=args.time_samples,
                                                     num_steps=args.sample_steps), obs=x)

        return model, TimeDependentGaussianGuide(model, "z", "x", encoder=encoder), modules
    if method == "vae":
        if args.encoder == "conv":
            decoder = ConvDecoder(k).to(device)
        else:
            decoder = MLP(k, D, hidden_dims=args.score_hidden, activation="silu").to(device)
        log_sigma = nn.Parameter(torch.zeros((), device=device))
        modules.update(decoder=decoder, log_sigma=log_sigma)

        def model(x):
            pyro.module("decoder", decoder)
            scale = pyro.param("log_sigma", log_sigma).exp()
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", standard_normal(x, k))
                pyro.sample("x", dist.Normal(decoder(z), scale).to_event(1), obs=x)
    else:  # diffdecoder: a conditional score model of the prior's size, trained with the encoder
        decoder = ScoreModel((D,), context_dim=k, network=args.network, network_options=network_options(args),
                             zero_init=True).to(device)
        modules["decoder"] = decoder

        def model(x):
            pyro.module("decoder", decoder)
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", standard_normal(x, k))
                pyro.sample("x", DiffusionLikelihood(decoder, z, num_time_samples=args.time_samples,
                                                     num_steps=args.sample_steps), obs=x)
    return model, GaussianGuide(model, "z", "x", encoder=encoder), modules


def train_svi(model, guide, objective, x_train, steps: int, args, desc: str) -> list[float]:
    """``steps`` SVI steps on minibatches of freshly dequantized training images."""
    svi = SVI(model, guide, Adam({"lr": args.lr}), objective)
    losses = []
    for _ in tqdm(range(steps), desc=desc, leave=False, disable=None):
        rows = torch.randint(0, x_train.shape[0], (args.batch_size,), device=x_train.device)
        losses.append(svi.step(dequantize(x_train[rows])) / args.batch_size)
    return losses


def decode(method: str, modules: dict, prior, z: torch.Tensor, args, sampler: str = "sde") -> torch.Tensor:
    """Images in [0, 1] decoded from latents ``z``."""
    with torch.no_grad():
        if method == "vae":
            return to_pixels(modules["decoder"](z))
        score_model = modules["decoder"] if method == "diffdecoder" else prior
        encoder = None if method == "diffdecoder" else modules["encoder"]
        return to_pixels(torch.cat([
            DiffusionLikelihood(score_model, chunk, encoder=encoder, corrector=modules.get("corrector"),
                                sampler=sampler, num_steps=args.sample_steps).sample()
            for chunk in z.split(256)
        ]))


def evaluate(method: str, model, guide, modules: dict, prior, data: dict, args) -> tuple[dict, dict]:
    """The test metrics of one trained method, and images for the figure."""
    encoder = modules["encoder"]
    with torch.no_grad():
        z_test, z_train = encoder(data["v_test"])[0], encoder(data["v_ref"])[0]
    start = time.time()
    recon = decode(method, modules, prior, z_test, args)
    seconds = time.time() - start
    x_test = data["x_test"]
    record = {
        "l2": l2_distance(recon, x_test).mean().item(), "ssim": ssim(recon, x_test, image_shape=(28, 28)).mean().item(),
        "seconds": seconds, "knn_acc": knn_accuracy(z_train, data["y_ref"], test_latents=z_test,
                                                    test_labels=data["y_test"], k=20),
    }
    if method != "vae" and args.ode_metrics:
        ode = decode(method, modules, prior, z_test, args, "ode")
        record["ssim_ode"] = ssim(ode, x_test, image_shape=(28, 28)).mean().item()
    n = args.bound_size
    est = elbo(model, guide, data["v_test"][:n], num_particles=args.bound_particles)
    record.update(bound_nats=est.mean + LOG_JACOBIAN, bound_se=est.stderr)
    samples = decode(method, modules, prior, torch.randn(8, args.latent, device=z_test.device), args)
    return record, {"recon": recon[:8].cpu(), "samples": samples.cpu()}


def run_cell(method: str, beta: float, seed: int, data: dict, cells: CellStore, args, device) -> tuple[dict, dict]:
    pyro.clear_param_store()
    set_seed(seed)
    prior = ScoreModel.load(prior_path(args, seed), map_location=device) if method.startswith("scorevae") else None
    model, guide, modules = build(method, prior, args, device)
    guide(data["v_test"][:2])  # build the guide's networks from the model's shapes
    start = time.time()
    if method == "scorevae+":  # the scorevae encoder of the same beta, frozen; the corrector learns
        modules["encoder"].load_state_dict(cells.tensors(cell_key("scorevae", beta, seed))["encoder"])
        steps, objective = args.corrector_steps, ScoreVAE_ELBO(kl_weight=beta, train_corrector=True)
    else:
        steps = args.diffdecoder_steps if method == "diffdecoder" else args.steps
        objective = ScoreVAE_ELBO(kl_weight=beta)
    losses = train_svi(model, guide, objective, data["x_train"], steps, args, f"{method} beta={beta} seed {seed}")
    train_seconds = time.time() - start
    record, images = evaluate(method, model, guide, modules, prior, data, args)
    parts = list(modules.values()) + ([prior] if prior is not None else [])  # the frozen prior counts too
    num_params = sum(p.numel() for m in parts for p in (m.parameters() if isinstance(m, nn.Module) else [m]))
    record.update(method=method, beta=beta, seed=seed, train_seconds=train_seconds, num_params=num_params,
                  final_loss=sum(losses[-50:]) / len(losses[-50:]))
    images["encoder"] = {k: v.cpu() for k, v in modules["encoder"].state_dict().items()}
    return record, images


def prior_path(args, seed: int) -> str:
    return os.path.join(args.out, f"prior_seed{seed}.pt")


def cell_key(method: str, beta: float, seed: int) -> str:
    return f"{method.replace('+', 'plus')}_beta{beta:g}_seed{seed}"


PRIOR_TIMES = (0.01, 0.1, 0.3, 0.6)


@torch.no_grad()
def noise_errors(score_model: ScoreModel, v: torch.Tensor) -> dict:
    """The prior's noise-prediction error per pixel, E|eps - eps_hat(x_t, t)|^2 / 784, at a few times (1 for the
    trivial prediction 0 at small t; how far the prior resolves the images' fine detail)."""
    errors = {}
    for t in PRIOR_TIMES:
        times = torch.full(v.shape[:1], t, device=v.device)
        noise = torch.randn_like(v)
        eps_hat = score_model.noise(score_model.sde.perturb(v, times, noise), times)
        errors[f"noise_mse_t{t:g}"] = (noise - eps_hat).pow(2).mean().item()
    return errors


def pretrain_prior(seed: int, x_train: torch.Tensor, v_test: torch.Tensor, cells: CellStore, args, device) -> None:
    """Train the unconditional score model (simple weighting, EMA) and save its checkpoint file."""
    key = f"prior_seed{seed}"
    if cells.done(key) and os.path.exists(prior_path(args, seed)):
        return
    set_seed(seed)
    model = ScoreModel((D,), network=args.network, network_options=network_options(args), zero_init=True).to(device)
    trainer = ScoreModelTrainer(model, lr=args.prior_lr, weighting="simple", ema_rate=args.ema_rate)
    start, cpu = time.time(), time.process_time()
    losses = []
    for _ in tqdm(range(args.prior_steps), desc=f"prior seed {seed}", leave=False, disable=None):
        rows = torch.randint(0, x_train.shape[0], (args.batch_size,), device=device)
        losses.append(trainer.step(dequantize(x_train[rows])))
    trainer.averaged_model.save(prior_path(args, seed))
    record = {"seed": seed, "seconds": time.time() - start, "cpu_seconds": time.process_time() - cpu,
              "final_loss": sum(losses[-50:]) / len(losses[-50:])}
    cells.save(key, {**record, **noise_errors(trainer.averaged_model, v_test)})


def summarize(records: list[dict]) -> str:
    lines = ["| method | beta | seeds | L2 | SSIM | SSIM (ODE) | bound (nats/image) | kNN acc | sampling s | params |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for method, beta in GRID:
        rows = [r for r in records if r["method"] == method and r["beta"] == beta]
        if not rows:
            continue
        cols = [mean_sd([r.get(k) for r in rows], digits) for k, digits in
                (("l2", 3), ("ssim", 3), ("ssim_ode", 3), ("bound_nats", 1), ("knn_acc", 3), ("seconds", 1))]
        lines.append(f"| {method} | {beta:g} | {len(rows)} | " + " | ".join(cols) + f" | {rows[0]['num_params']:,} |")
    return "\n".join(lines)


def prior_summary(priors: list[dict]) -> str:
    if not priors:
        return ""
    cols = " | ".join(mean_sd([r[f"noise_mse_t{t:g}"] for r in priors]) for t in PRIOR_TIMES)
    return ("\n\nThe pretrained prior's noise-prediction error per pixel (0 predicts the noise of clean images' pixels "
            "perfectly, 1 is no better than predicting 0 at small t):\n\n| "
            + " | ".join(f"t = {t:g}" for t in PRIOR_TIMES) + " | train s |\n|" + "---|" * (len(PRIOR_TIMES) + 1)
            + f"\n| {cols} | {mean_sd([r['seconds'] for r in priors], 0)} |")


def seed_times(records: list[dict], priors: list[dict]) -> str:
    """The wall and CPU seconds of one seed's cells and its prior, over the seeds that have all of them."""
    rows = []
    for seed in sorted({r["seed"] for r in records}):
        cells = [r for r in records if r["seed"] == seed and "cell_cpu_seconds" in r]
        prior = [r for r in priors if r["seed"] == seed and "cpu_seconds" in r]
        if len(cells) == len(GRID) and prior:
            rows.append((sum(r["cell_seconds"] for r in cells) + prior[0]["seconds"],
                         sum(r["cell_cpu_seconds"] for r in cells) + prior[0]["cpu_seconds"]))
    if not rows:
        return ""
    wall, cpu = zip(*rows)
    return (f"\n\nOne seed of all cells (the prior's training included), over {len(rows)} seeds: "
            f"{mean_sd(list(wall), 0)} s wall, {mean_sd(list(cpu), 0)} s CPU.")


def plot(records: list[dict], cells: CellStore, x_test: torch.Tensor, path: str) -> None:
    seed = min(r["seed"] for r in records)
    panels = [("test images", x_test[:8].cpu())]
    for method, beta in GRID:
        images = cells.tensors(cell_key(method, beta, seed))
        if images is not None:
            label = f"{method} b={beta:g}"
            panels += [(f"{label} recon", images["recon"]), (f"{label} samples", images["samples"])]
    fig, axes = plt.subplots(len(panels), 1, figsize=(6, 0.9 * len(panels)))
    for ax, (title, images) in zip(axes, panels):
        plot_image_grid(ax, images, nrow=8)
        ax.set_ylabel(title, rotation=0, ha="right", fontsize=7)
    fig.suptitle(f"MNIST test images, reconstructions and samples (seed {seed})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


QUICK = dict(prior_steps=2000, steps=1000, diffdecoder_steps=1000, corrector_steps=200, sample_steps=100, lr=1e-3,
             prior_lr=1e-3, ema_rate=0.995, time_samples=1, score_hidden=[512, 512], pixel_hidden=[16, 16],
             test_size=256, bound_size=256, ode_metrics=False)
"""``--quick``'s defaults (module docstring, Scales)."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__[__doc__.index("Scales."):],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="CPU minutes: MLP networks, short training, a cheaper evaluation (see Scales above)")
    methods = sorted({m for m, _ in GRID})
    parser.add_argument("--methods", nargs="+", default=methods, choices=methods)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train-size", type=int, default=60000)
    parser.add_argument("--test-size", type=int, default=1000, help="test images for the reconstruction metrics")
    parser.add_argument("--bound-size", type=int, default=1000, help="test images for the likelihood bound")
    parser.add_argument("--bound-particles", type=int, default=4)
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--network", default=None, choices=["mlp", "unet"],
                        help="score networks (default: unet on cuda)")
    parser.add_argument("--encoder", default=None, choices=["mlp", "conv"], help="encoder (default: conv on cuda)")
    parser.add_argument("--score-hidden", type=int, nargs="+", default=[512, 512, 512], help="MLP score net widths")
    parser.add_argument("--pixel-hidden", type=int, nargs="*", default=[32, 32],
                        help="widths of the MLP score net's per-pixel branch (none: no branch)")
    parser.add_argument("--unet-channels", type=int, default=128)
    parser.add_argument("--unet-res-blocks", type=int, default=2)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="MLP encoder widths")
    parser.add_argument("--prior-steps", type=int, default=100000)
    parser.add_argument("--steps", type=int, default=100000, help="encoder / VAE steps (DiffDecoder: + prior steps)")
    parser.add_argument("--diffdecoder-steps", type=int, default=None,
                        help="DiffDecoder steps (default: --prior-steps + --steps)")
    parser.add_argument("--corrector-steps", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--prior-lr", type=float, default=2e-4)
    parser.add_argument("--ema-rate", type=float, default=0.999)
    parser.add_argument("--time-samples", type=int, default=4, help="(t, eps) draws per image in the objective")
    parser.add_argument("--sample-steps", type=int, default=1000, help="reverse-SDE / ODE steps")
    parser.add_argument("--ode-metrics", action=argparse.BooleanOptionalAction, default=True,
                        help="ssim_ode, reconstructions by the probability-flow ODE (default: on, off with --quick)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/score_vae")
    if parser.parse_known_args(argv)[0].quick:  # the quick scale as defaults: explicit options still win
        parser.set_defaults(**QUICK)
    args = parser.parse_args(argv)
    on_cuda = args.device.startswith("cuda") and not args.quick
    args.network = args.network or ("unet" if on_cuda else "mlp")
    args.encoder = args.encoder or ("conv" if on_cuda else "mlp")
    if args.diffdecoder_steps is None:
        args.diffdecoder_steps = args.prior_steps + args.steps
    args.hidden, args.score_hidden = tuple(args.hidden), tuple(args.score_hidden)
    args.pixel_hidden = tuple(args.pixel_hidden)
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    device = start_run(args)
    x_train, y_train = load_mnist("train", device=device)
    x_test, y_test = load_mnist("test", device=device)
    x_train, y_train = x_train[: args.train_size], y_train[: args.train_size]
    generator = torch.Generator(device=device).manual_seed(1234)
    v_test = dequantize(x_test[: args.test_size], generator)
    n_ref = min(5000, x_train.shape[0])
    data = {"x_train": x_train, "v_test": v_test, "x_test": to_pixels(v_test), "y_test": y_test[: args.test_size],
            "v_ref": dequantize(x_train[:n_ref], generator), "y_ref": y_train[:n_ref]}
    cells = CellStore(args.out)
    start = time.time()
    for seed in args.seeds:
        if any(m.startswith("scorevae") for m in args.methods):
            pretrain_prior(seed, x_train, v_test, cells, args, device)
        for method, beta in GRID:
            key = cell_key(method, beta, seed)
            if method not in args.methods or cells.done(key):
                continue
            if method == "scorevae+" and not cells.done(cell_key("scorevae", beta, seed)):
                continue  # needs the scorevae encoder of the same beta
            wall, cpu = time.time(), time.process_time()
            record, images = run_cell(method, beta, seed, data, cells, args, device)
            record.update(cell_seconds=time.time() - wall, cell_cpu_seconds=time.process_time() - cpu)
            cells.save(key, record, images)
            print(json.dumps(record), flush=True)
    records = [r for r in cells.records(lambda key: not key.startswith("prior")) if r["seed"] in args.seeds]
    priors = [r for r in cells.records(lambda key: key.startswith("prior")) if r["seed"] in args.seeds]
    plot(records, cells, data["x_test"], os.path.join(args.out, "reconstructions.png"))
    table = summarize(records) + prior_summary(priors) + seed_times(records, priors)
    settings = dict(vars(args), seconds=round(time.time() - start, 1))
    write_results(args.out, records, table, settings)
    print(f"total {time.time() - start:.0f} s; mean ± sd over seeds {args.seeds}")
    return records


if __name__ == "__main__":
    main()
