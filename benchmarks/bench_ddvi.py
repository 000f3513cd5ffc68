"""Seconds per SVI step: Pyro DDVI (both sleep variants), the pure-PyTorch reference, and a Gaussian guide.

Paper's MNIST architecture: encoder 784-1000-1000, decoder 2-1000-1000-784, denoiser 4x128, T = 20,
batch 128, 2 threads. Run ``python benchmarks/bench_ddvi.py [--steps N]``.
"""

import argparse
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch import nn
from torch.nn.functional import softplus

from pyro_diffvi.guides import DiffusionGuide, GaussianGuide
from pyro_diffvi.infer import DDVI_ELBO
from pyro_diffvi.infer.reference import ddvi_loss


def setup(seed=0):
    pyro.clear_param_store()
    torch.manual_seed(seed)
    decoder = nn.Sequential(nn.Linear(2, 1000), nn.LeakyReLU(0.2), nn.Linear(1000, 1000), nn.LeakyReLU(0.2),
                            nn.Linear(1000, 784))

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    return model, decoder


def time_steps(step, n):
    step()
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(2)
    x = torch.bernoulli(torch.rand(128, 784))
    common = dict(hidden_dims=(1000, 1000), activation="leaky_relu")
    results = {}
    model, _ = setup()
    guide = GaussianGuide(model, "z", "x", **common)
    svi = SVI(model, guide, Adam({"lr": 1e-3}), Trace_ELBO())
    results["gaussian (Trace_ELBO)"] = time_steps(lambda: svi.step(x), args.steps)
    for sleep in ("simplified", "wake-sleep"):
        model, _ = setup()
        guide = DiffusionGuide(model, "z", "x", num_steps=20, **common)
        svi = SVI(model, guide, Adam({"lr": 1e-3}), DDVI_ELBO(sleep=sleep))
        results[f"pyro ddvi ({sleep})"] = time_steps(lambda: svi.step(x), args.steps)
    for sleep in ("simplified", "wake-sleep"):
        model, decoder = setup()
        guide = DiffusionGuide(model, "z", "x", num_steps=20, **common)
        guide(x)
        params = [*guide.parameters(), *decoder.parameters()]
        opt = torch.optim.Adam(params, lr=1e-3)

        def head(c, h=guide.heads[0]):
            loc, raw = h(c).chunk(2, -1)
            return loc, softplus(raw) + guide.min_scale

        zeros = torch.zeros(128, 2)

        def step():
            out = ddvi_loss(
                x, encoder=guide.context, head=head, denoiser=guide.denoisers[0],
                log_likelihood=lambda x, z: torch.distributions.Bernoulli(logits=decoder(z)).log_prob(x).sum(-1),
                prior_log_prob=lambda z: torch.distributions.Normal(zeros, 1.0).log_prob(z).sum(-1),
                sample_prior=lambda n: torch.randn(n, 2),
                sample_likelihood=lambda z: torch.distributions.Bernoulli(logits=decoder(z)).sample(),
                betas=guide.process.betas, sleep=sleep)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()

        results[f"torch reference ({sleep})"] = time_steps(step, args.steps)
    base = results["gaussian (Trace_ELBO)"]
    print(f"{'method':34s} {'s/step':>8s} {'vs gaussian':>12s} {'vs reference':>13s}")
    for name, sec in results.items():
        sleep = name[name.index("(") + 1 : -1]
        ref = results.get(f"torch reference ({sleep})")
        rel = f"{sec / ref:12.2f}" if ref and name.startswith("pyro") else f"{'':>12s}"
        print(f"{name:34s} {sec:8.4f} {sec / base:12.2f} {rel}")


if __name__ == "__main__":
    main()
