"""Shared by the example scripts: resumable per-cell results and the summaries of their tables.

An experiment is a grid of cells (e.g. prior x method x seed). Each finished cell is written at once to
``<out>/cells/<key>.json`` (and its tensors to ``<key>.pt``), atomically, so an interrupted run resumes
where it stopped and runs of different parts of the grid can share one ``--out``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import torch

from pyro_diffvi.util import resolve_device


class CellStore:
    """The finished cells of an experiment under ``<out>/cells``.

    :param out: the experiment's output folder.
    """

    def __init__(self, out: str) -> None:
        self.dir = os.path.join(out, "cells")
        os.makedirs(self.dir, exist_ok=True)

    def _path(self, key: str, suffix: str) -> str:
        return os.path.join(self.dir, key + suffix)

    def done(self, key: str) -> bool:
        """Whether cell ``key`` finished in this or an earlier run."""
        return os.path.exists(self._path(key, ".json"))

    def save(self, key: str, record, tensors=None) -> None:
        """Write cell ``key``'s record (JSON) and tensors (``torch.save``), each replacing the file atomically."""
        if tensors is not None:
            torch.save(tensors, self._path(key, ".pt.tmp"))
            os.replace(self._path(key, ".pt.tmp"), self._path(key, ".pt"))
        with open(self._path(key, ".json.tmp"), "w") as f:
            json.dump(record, f)
        os.replace(self._path(key, ".json.tmp"), self._path(key, ".json"))

    def tensors(self, key: str):
        """Cell ``key``'s tensors, or ``None`` if it has none (or has not finished)."""
        path = self._path(key, ".pt")
        return torch.load(path) if os.path.exists(path) else None

    def records(self, keep: Callable[[str], bool] = lambda key: True) -> list:
        """The records of the finished cells whose key passes ``keep``, in key order."""
        keys = sorted(name[: -len(".json")] for name in os.listdir(self.dir) if name.endswith(".json"))
        records = []
        for key in filter(keep, keys):
            with open(self._path(key, ".json")) as f:
                records.append(json.load(f))
        return records


def start_run(args) -> torch.device:
    """The examples' start-up: torch's thread count from ``args.threads``, the device of ``args.device``
    (``cpu``, ``cuda``, ``auto``, ...) and the output folder ``args.out``, created if missing.

    :param args: the parsed command line, with ``threads``, ``device`` and ``out``.
    :return: the resolved device.
    """
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    return resolve_device(args.device)


def mean_sd(values: list, digits: int = 3) -> str:
    """``"mean ± sd"`` of the values that are not ``None`` (sample standard deviation; ``nan`` for one
    value), or ``"n/a"`` if there are none."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    t = torch.tensor(values, dtype=torch.float64)
    sd = t.std().item() if len(values) > 1 else float("nan")
    return f"{t.mean().item():.{digits}f} ± {sd:.{digits}f}"


def write_results(out: str, results, table: str, settings: dict) -> None:
    """Write ``results.json`` (``results``: the records, or any JSON-able summary) and ``table.md`` (the table
    and the settings) under ``out``, and print the table."""
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table + "\n\n" + json.dumps(settings, default=str) + "\n")
    print(table)
