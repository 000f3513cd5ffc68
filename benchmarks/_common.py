"""Timing helpers shared by the benchmark scripts (interleaved repeats, fastest and median times)."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm


def parse_setting(description: str) -> tuple[argparse.Namespace, torch.device, torch.Tensor]:
    """The benchmarks' common options; sets threads and seed, and returns ``(args, device, x)`` with ``x``
    a batch of random binary images of MNIST shape (timing only)."""
    from pyro_diffvi.util import resolve_device, set_seed

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=10, help="training steps per timing")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timings per configuration")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="directory for results.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    set_seed(args.seed)
    x = torch.bernoulli(torch.full((args.batch_size, 784), 0.2, device=device))
    return args, device, x


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(step: Callable[[], object], steps: int, device: torch.device) -> float:
    """Mean wall-clock seconds of ``step()`` over ``steps`` calls (device work included)."""
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return (time.perf_counter() - start) / steps


def interleaved_timings(
    runs: dict[str, Callable[[], object]], steps: int, repeats: int, warmup: int, device: torch.device
) -> dict[str, dict[str, float]]:
    """Time every run ``repeats`` times, interleaving the runs so that a disturbance of a shared
    machine hits all of them alike; returns ``{name: {"min": s, "median": s, "max": s}}``."""
    for step in runs.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in tqdm(range(repeats), desc="repeats"):
        for name, step in runs.items():
            times[name].append(seconds_per_step(step, steps, device))
    return {n: {"min": min(t), "median": statistics.median(t), "max": max(t)} for n, t in times.items()}


def print_table(timings: dict[str, dict[str, float]], baselines: dict[str, str | None]) -> list[dict]:
    """Print seconds per step with ratios (fastest and median) against each row's baseline row."""
    rows = []
    print(
        f"{'configuration':<40} {'min s/step':>10} {'median':>8} {'baseline':>28} {'ratio (min)':>11} {'(median)':>9}"
    )
    for name, t in timings.items():
        base = baselines.get(name)
        row = {"name": name, **{f"{k}_s_per_step": v for k, v in t.items()}, "baseline": base}
        if base is not None:
            row["ratio_min"] = t["min"] / timings[base]["min"]
            row["ratio_median"] = t["median"] / timings[base]["median"]
        ratio = f"{row['ratio_min']:>10.2f}x {row['ratio_median']:>8.2f}x" if base else f"{'':>20}"
        print(f"{name:<40} {t['min']:>10.4f} {t['median']:>8.4f} {base or '':>28} {ratio}")
        rows.append(row)
    return rows


def write_json(out: str | None, setting: dict, rows: list[dict]) -> None:
    if out:
        path = Path(out)
        path.mkdir(parents=True, exist_ok=True)
        (path / "results.json").write_text(json.dumps({"setting": setting, "rows": rows}, indent=2))
        print(f"wrote {path / 'results.json'}")
