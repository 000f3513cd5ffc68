r"""Where ScoreVAE's reconstructions lose to the beta-VAE's at a small scale: diagnostics of one seed of a finished
``examples/score_vae.py`` run (its saved prior ``prior_seed<s>.pt`` and its ``scorevae`` beta = 0.01 encoder).

Run with the options of that run, e.g. ``python examples/score_vae_diagnostics.py --quick`` after
``python examples/score_vae.py --quick``. On that seed's test images (dequantized as there) it measures:

1. **sampler**: the SSIM of the ScoreVAE reconstructions (posterior-mean :math:`z`) by 100, 300 and 1,000
   reverse-SDE steps;
2. **restoration from noise**: each test image noised to time :math:`t_0`,
   :math:`x_{t_0} = \alpha(t_0) x + \sigma(t_0)\epsilon`, and decoded by the reverse SDE from :math:`t_0`
   (:func:`~pyro_diffvi.diffusion.reverse_sde_sample` with ``t_start``), with the prior's score alone and with the
   encoder's latent score added: the SSIM. With the prior alone it is what the prior restores of an image it is
   given up to noise level :math:`t_0`, an upper limit for a decoder whose latent fixes the image down to
   :math:`t_0` and leaves the rest to the prior;
3. **noise-prediction error per pixel** :math:`\mathbb E|\epsilon - \hat\epsilon(x_t, t)|^2/784` by time: the prior,
   the prior plus the encoder's latent score (ScoreVAE's conditional score), and the conditional score implied by
   the beta-VAE's Gaussian decoder :math:`\mathcal N(\mu(z), s^2 I)`: :math:`x_t|z \sim
   \mathcal N(\alpha\mu(z), (\alpha^2 s^2 + \sigma^2) I)`, :math:`\hat\epsilon = \sigma(x_t - \alpha\mu)/(\alpha^2 s^2
   + \sigma^2)`. The VAE is retrained exactly as in its cell (same seed, steps and code; its SSIM is checked
   against the cell's record). The DSM term of the bound is this error weighted over time, so the rows say at
   which noise levels each decoder knows the image;
4. the VAE's SSIM of the mean :math:`\mu(z)` (what the table reports) and of a draw :math:`x \sim \mathcal N(\mu(z),
   s^2 I)` (what the diffusion decoders' rows are);
5. **encoder budget**: the beta = 0.01 encoder retrained on the same prior, SSIM and kNN accuracy after each of
   ``--encoder-steps`` (at the run's own ``--steps`` its parameters are checked to equal the cell's).

Writes ``--out``/diagnostics.json and prints a markdown summary (also in ``--out``/diagnostics.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import pyro
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from pyro_diffvi.datasets import load_mnist
from pyro_diffvi.diffusion import ScoreModel, reverse_sde_sample
from pyro_diffvi.distributions import DiffusionLikelihood
from pyro_diffvi.infer import ScoreVAE_ELBO
from pyro_diffvi.metrics import knn_accuracy, ssim
from pyro_diffvi.util import set_seed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import score_vae as ex  # noqa: E402 (the experiment's own builders and data handling)
from _cells import CellStore  # noqa: E402

START_TIMES = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
ERROR_TIMES = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)


def ssim_of(images: torch.Tensor, x: torch.Tensor) -> float:
    return ssim(images, x, image_shape=(28, 28)).mean().item()


def noise_fns(prior: ScoreModel, encoder, z: torch.Tensor) -> dict:
    """The prior's noise prediction alone and ScoreVAE's (the prior plus the encoder's latent score at ``z``)."""
    return {"prior": prior.noise, "prior + encoder": DiffusionLikelihood(prior, z, encoder=encoder).noise_fn(z)}


def restore(prior: ScoreModel, noise_fn, v: torch.Tensor, t0: float) -> torch.Tensor:
    """Test images ``v`` noised to ``t0`` and decoded by the reverse SDE from ``t0`` (100 steps per unit time)."""
    sde = prior.sde
    alpha, sigma = sde.marginal_coefficients(torch.full(v.shape[:1], t0, dtype=v.dtype))
    x_t = alpha[:, None] * v + sigma[:, None] * torch.randn_like(v)
    steps = max(1, round(100 * t0))
    with torch.no_grad():
        return ex.to_pixels(reverse_sde_sample(sde, noise_fn, x_t, event_dim=1, num_steps=steps, t_start=t0))


def fresh(method: str, data: dict, args) -> tuple:
    """``method``'s model, guide and modules (with ``"prior"``, loaded from the run's file, for ScoreVAE), built as
    in its cell of score_vae.py: the same seed and the same calls, so the same initial parameters."""
    pyro.clear_param_store()
    set_seed(args.seeds[0])
    prior = ScoreModel.load(ex.prior_path(args, args.seeds[0])) if method == "scorevae" else None
    model, guide, modules = ex.build(method, prior, args, "cpu")
    guide(data["v_test"][:2])
    return model, guide, {**modules, "prior": prior}


def train_in_stages(model, guide, data: dict, args, checkpoints):
    """SVI steps at beta = 0.01 as in score_vae.py's ``train_svi``, one optimizer throughout; yields the step
    count at each of ``checkpoints``."""
    svi, done = SVI(model, guide, Adam({"lr": args.lr}), ScoreVAE_ELBO(kl_weight=0.01)), 0
    for c in checkpoints:
        for _ in range(c - done):
            rows = torch.randint(0, data["x_train"].shape[0], (args.batch_size,))
            svi.step(ex.dequantize(data["x_train"][rows]))
        done = c
        yield c


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder-steps", type=int, nargs="*", default=[1000, 2000, 4000, 8000])
    own, rest = parser.parse_known_args(argv)
    args = ex.parse_args(rest)
    torch.set_num_threads(args.threads)
    seed = args.seeds[0]
    x_train, y_train = load_mnist("train")
    x_test, y_test = load_mnist("test")
    generator = torch.Generator().manual_seed(1234)  # the test images of score_vae.py's main
    v = ex.dequantize(x_test[: args.test_size], generator)
    x_train, y_train = x_train[: args.train_size], y_train[: args.train_size]
    data = {"x_train": x_train, "v_test": v}
    n_ref = min(5000, x_train.shape[0])
    v_ref, y_ref = ex.dequantize(x_train[:n_ref], generator), y_train[:n_ref]
    x, y = ex.to_pixels(v), y_test[: args.test_size]
    cells = CellStore(args.out)
    out: dict = {"seed": seed}
    # the run's ScoreVAE: its saved prior and encoder
    _, _, modules = fresh("scorevae", data, args)
    prior, encoder = modules["prior"], modules["encoder"]
    encoder.load_state_dict(cells.tensors(ex.cell_key("scorevae", 0.01, seed))["encoder"])
    with torch.no_grad():
        z, scale = encoder(v)
    out["encoder_scale_median"] = scale.median().item()
    fns = noise_fns(prior, encoder, z)
    set_seed(seed)
    out["ssim_by_sampler_steps"] = {}
    for steps in (100, 300, 1000):
        options = argparse.Namespace(**{**vars(args), "sample_steps": steps})
        out["ssim_by_sampler_steps"][steps] = ssim_of(ex.decode("scorevae", modules, prior, z, options), x)
    out["ssim_restored_from_t0"] = {f"{t0:g}": {k: ssim_of(restore(prior, f, v, t0), x) for k, f in fns.items()}
                                    for t0 in START_TIMES}
    # the beta-VAE of the cell, and the conditional noise prediction its Gaussian decoder implies
    model, guide, vae = fresh("vae", data, args)
    ex.train_svi(model, guide, ScoreVAE_ELBO(kl_weight=0.01), data["x_train"], args.steps, args, "vae")
    with torch.no_grad():
        mu, s2 = vae["decoder"](vae["encoder"](v)[0]), (2 * vae["log_sigma"]).exp().item()
    record = json.load(open(os.path.join(cells.dir, ex.cell_key("vae", 0.01, seed) + ".json")))
    out["vae"] = {"decoder_sd": s2**0.5, "ssim_mean": ssim_of(ex.to_pixels(mu), x), "ssim_cell": record["ssim"],
                  "ssim_draw": ssim_of(ex.to_pixels(mu + s2**0.5 * torch.randn_like(mu)), x)}
    out["noise_mse_by_t"] = {}
    for t_ in ERROR_TIMES:
        alpha, sigma = (c[:, None] for c in prior.sde.marginal_coefficients(torch.full(v.shape[:1], t_)))
        eps = torch.randn_like(v)
        x_t = alpha * v + sigma * eps
        row = {k: (eps - f(x_t, alpha.new_full(v.shape[:1], t_)).detach()).pow(2).mean().item() for k, f in fns.items()}
        row["vae decoder"] = (eps - sigma * (x_t - alpha * mu) / (alpha**2 * s2 + sigma**2)).pow(2).mean().item()
        out["noise_mse_by_t"][f"{t_:g}"] = row
    # the encoder's budget
    out["encoder_budget"], start = [], time.process_time()
    model, guide, mods = fresh("scorevae", data, args)
    for steps in train_in_stages(model, guide, data, args, sorted(own.encoder_steps)):
        with torch.no_grad(), torch.random.fork_rng():  # the training's random stream stays the cell's
            z_b, z_ref = mods["encoder"](v)[0], mods["encoder"](v_ref)[0]
            out["encoder_budget"].append({
                "steps": steps, "cpu_seconds": time.process_time() - start,
                "ssim": ssim_of(ex.decode("scorevae", mods, prior, z_b, args), x),
                "knn_acc": knn_accuracy(z_ref, y_ref, test_latents=z_b, test_labels=y, k=20)})
        if steps == args.steps:  # the run's own budget: the encoder must be the cell's
            out["encoder_budget"][-1]["equals_cell"] = all(
                torch.equal(a, b) for a, b in zip(mods["encoder"].state_dict().values(), encoder.state_dict().values()))
    with open(os.path.join(args.out, "diagnostics.json"), "w") as f:
        json.dump(out, f, indent=1)
    text = summary(out)
    with open(os.path.join(args.out, "diagnostics.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    return out


def summary(out: dict) -> str:
    f = "{:.3f}".format
    lines = [f"Seed {out['seed']}; SSIM by reverse-SDE steps: "
             + ", ".join(f"{k}: {f(v)}" for k, v in out["ssim_by_sampler_steps"].items()), "",
             "| t0 | " + " | ".join(map("{:g}".format, START_TIMES)) + " |",
             "|---|" + "---|" * len(START_TIMES)]
    for name in ("prior", "prior + encoder"):
        lines.append(f"| SSIM restored, {name} | "
                     + " | ".join(f(out["ssim_restored_from_t0"][f"{t:g}"][name]) for t in START_TIMES) + " |")
    lines += ["", "| t | " + " | ".join(map("{:g}".format, ERROR_TIMES)) + " |", "|---|" + "---|" * len(ERROR_TIMES)]
    for name in ("prior", "prior + encoder", "vae decoder"):
        lines.append(f"| noise error, {name} | "
                     + " | ".join("{:.4f}".format(out["noise_mse_by_t"][f"{t:g}"][name]) for t in ERROR_TIMES) + " |")
    vae = out["vae"]
    lines += ["", f"beta-VAE: decoder sd {f(vae['decoder_sd'])}, SSIM of the mean {f(vae['ssim_mean'])} (cell "
              f"{f(vae['ssim_cell'])}), of a draw {f(vae['ssim_draw'])}", "",
              "| encoder steps | CPU s | SSIM | kNN acc |", "|---|---|---|---|"]
    lines += [f"| {r['steps']} | {r['cpu_seconds']:.0f} | {f(r['ssim'])} | {f(r['knn_acc'])} |"
              for r in out["encoder_budget"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
