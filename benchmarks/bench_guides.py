"""Seconds per SVI step of each guide, relative to GaussianGuide, in the DDVI paper's MNIST setting.

Setting (the main demo's, from :mod:`pyro_diffvi.demo`): encoder 784-1000-1000 (LeakyReLU), decoder
2-1000-1000-784 with a Bernoulli likelihood, 2-D latent with a Pinwheel prior of radius 10, batch 128, random binary
data of MNIST shape (timing
only). All configurations run in one process, interleaved over repeats; the table reports the fastest
(least disturbed) and the median step time, with ratios against the Gaussian guide.

Usage::

    python benchmarks/bench_guides.py --steps 10 --repeats 3 --out results/bench_guides
"""

from __future__ import annotations

import torch
from _common import interleaved_timings, parse_setting, print_table, write_json
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_diffvi.demo import DDVI_KWARGS, DIFFUSION_KWARGS, ENCODER_KWARGS, PRIOR_KWARGS, make_decoder, make_model
from pyro_diffvi.guides import DiffusionGuide, FlowGuide, GaussianGuide, HierarchicalGuide
from pyro_diffvi.infer import DDVI_ELBO, AdversarialAutoencoderLoss
from pyro_diffvi.priors import Pinwheel

BASELINE = "Gaussian (AEVB)"
# name -> (guide class, guide keyword arguments, loss class)
CONFIGURATIONS = {
    BASELINE: (GaussianGuide, {}, Trace_ELBO),
    "IAF flow, 4 layers (AEVB-IAF)": (FlowGuide, {"num_transforms": 4}, Trace_ELBO),
    "spline flow, 4 layers": (FlowGuide, {"num_transforms": 4, "flow": "spline"}, Trace_ELBO),
    "hierarchical (H-AEVB)": (HierarchicalGuide, {}, Trace_ELBO),
    "Gaussian + adversarial (AAEB)": (GaussianGuide, {}, AdversarialAutoencoderLoss),
    "diffusion, T=20 (Trace_ELBO)": (DiffusionGuide, DIFFUSION_KWARGS, Trace_ELBO),
    "diffusion, T=20 (DDVI_ELBO)": (DiffusionGuide, DIFFUSION_KWARGS, lambda: DDVI_ELBO(**DDVI_KWARGS)),
}


def main() -> None:
    args, device, x = parse_setting(__doc__.split("\n")[0])

    runs = {}
    for i, (name, (guide_class, guide_kwargs, loss_class)) in enumerate(CONFIGURATIONS.items()):
        # distinct parameter names, so that the configurations do not share networks in the param store
        model = make_model(make_decoder(2, device=device), Pinwheel(**PRIOR_KWARGS, device=device), name=f"decoder{i}")
        guide = guide_class(model, "z", "x", name=f"guide{i}", **guide_kwargs, **ENCODER_KWARGS)
        svi = SVI(model, guide, Adam({"lr": 1e-4}), loss_class())
        runs[name] = lambda svi=svi: svi.step(x)
    timings = interleaved_timings(runs, args.steps, args.repeats, args.warmup, device)
    print(f"\nMNIST setting: batch {args.batch_size}, Pinwheel prior, device {device}, "
          f"{torch.get_num_threads()} threads, {args.repeats} interleaved repeats x {args.steps} steps")
    rows = print_table(timings, {name: BASELINE for name in timings if name != BASELINE})
    write_json(args.out, vars(args), rows)


if __name__ == "__main__":
    main()
