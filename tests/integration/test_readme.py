"""Every Python code block of README.md, docs/index.md and docs/guide.md runs as written.

The README's and the index page's blocks run in order in one namespace, so a block may use what an earlier one
defined; the user guide's blocks are independent recipes, each run on the README's model and a trained guide.
The names a page leaves to the reader (the README's ``batches`` and ``x_test``, the guide's model and data)
are supplied by the test, small, so that the pages run in seconds. A block that cannot run on its own is
marked, on the line before its fence, with ``<!-- no-run: reason -->``; only those are skipped.
"""

import re
from pathlib import Path

import pyro
import pytest
import torch

from pyro_diffvi.datasets import Minibatches, load_mnist

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, ROOT / "docs" / "index.md", ROOT / "docs" / "guide.md"]
NO_RUN = re.compile(r"<!--\s*no-run:\s*(\S.*?)\s*-->\s*$")


def python_blocks(path: Path) -> list[tuple[int, str, str | None]]:
    """``(line, code, no_run_reason)`` of every ```python block of ``path``, in order."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i
            end = lines.index("```", i + 1) if "```" in lines[i + 1:] else len(lines)
            previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            match = NO_RUN.search(previous)
            blocks.append((start + 1, "\n".join(lines[start + 1:end]) + "\n", match and match.group(1)))
            i = end
        i += 1
    return blocks


def run_page(path: Path, namespace: dict, *, each_block_alone: bool = False) -> dict:
    """Run the page's blocks in order, in ``namespace``; with ``each_block_alone``, each block in its own
    copy of ``namespace`` (for a page whose blocks are independent recipes on a common set-up), with an
    empty Pyro param store, as a fresh process would have.
    """
    for line, code, reason in python_blocks(path):
        if reason is not None:
            continue
        if each_block_alone:
            pyro.clear_param_store()
        # the line numbers of a failing block point into the page itself
        exec(compile("\n" * line + code, str(path), "exec"), dict(namespace) if each_block_alone else namespace)
    return namespace


def small_images(num_samples: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((num_samples, 784), 0.3), generator=generator)


def test_pages_have_python_blocks_and_marked_skips_only():
    for page in PAGES:
        blocks = python_blocks(page)
        assert blocks, f"{page} has no python block"
        assert sum(reason is None for _, _, reason in blocks) >= 1
    usage = [code for _, code, _ in python_blocks(README)]
    assert "DiffusionGuide(model, latent=\"z\", observed=\"x\")" in usage[0] and "DDVI_ELBO()" in usage[0]


def test_readme_blocks_run():
    batches = [small_images(32, seed) for seed in range(3)]  # three SVI steps
    x_test = small_images(8, 10)
    namespace = run_page(README, {"batches": batches, "x_test": x_test})
    est, ll = namespace["est"], namespace["ll"]
    # the importance-weighted bound is no looser than the ELBO (up to Monte-Carlo error)
    assert est.mean < 0 and est.stderr > 0
    assert ll.mean > est.mean - 3 * est.stderr


def test_index_block_runs():
    namespace = run_page(ROOT / "docs" / "index.md", {})
    x = small_images(16, 0)
    assert torch.isfinite(torch.as_tensor(namespace["svi"].step(x)))


def test_guide_blocks_run(tmp_path, monkeypatch):
    """docs/guide.md's blocks, in order, given the README's model and small data."""
    monkeypatch.chdir(tmp_path)  # the checkpoint recipe writes checkpoint.pt
    prelude = [code for _, code, _ in python_blocks(README)][0].split("svi = SVI(")[0]
    setup = prelude + (
        "import torch\n"
        "import lightning as L\n"
        "from pyro_diffvi.guides import GaussianGuide, FlowGuide, HierarchicalGuide, DiffusionGuide\n"
        "optim = Adam({'lr': 1e-3})\n"
    )
    x_train = small_images(64, 0)
    namespace = {"x_train": x_train, "x_batch": x_train[:16], "batches": [x_train[:32], x_train[32:]]}
    exec(compile(setup, "guide prelude", "exec"), namespace)
    # a trained guide and optimizer before the checkpoint recipe
    guide = namespace["DiffusionGuide"](namespace["model"], latent="z", observed="x")
    pyro.infer.SVI(namespace["model"], guide, namespace["optim"], loss=namespace["DDVI_ELBO"]()).step(x_train)
    namespace["guide"] = guide
    # each recipe on the README's model; the resume recipe loads the file the checkpoint recipe wrote
    run_page(ROOT / "docs" / "guide.md", namespace, each_block_alone=True)
    assert (tmp_path / "checkpoint.pt").exists()


@pytest.mark.slow
def test_readme_usage_snippet_trains_on_mnist():
    x_train, _ = load_mnist("train", binarize="static", seed=0)
    x_test, _ = load_mnist("test", binarize="static", seed=0)
    batches = list(Minibatches(x_train[:12800], batch_size=128, shuffle=True, seed=0))  # 100 steps
    x_test = x_test[:500]
    code = python_blocks(README)[0][1]

    def run_snippet(code: str) -> dict:
        namespace = {"batches": batches, "x_test": x_test}
        exec(compile(code, str(README), "exec"), namespace)
        return namespace

    torch.manual_seed(0)
    pyro.clear_param_store()
    ddvi = run_snippet(code)
    # the one-line swap of the README: the Gaussian guide with Trace_ELBO, same data and steps
    swapped = code.replace("DiffusionGuide(", "GaussianGuide(").replace("DDVI_ELBO()", "Trace_ELBO()")
    swapped = swapped.replace("from pyro_diffvi.guides import DiffusionGuide",
                              "from pyro_diffvi.guides import GaussianGuide")
    torch.manual_seed(0)
    pyro.clear_param_store()
    gaussian = run_snippet(swapped)

    untrained = -784 * torch.log(torch.tensor(2.0)).item()  # about the bound of a decoder at init
    for result in (ddvi, gaussian):
        assert untrained + 150 < result["elbo"] / len(x_test) < 0
    # MEASURED (100 steps, 500 test images, 16 particles): DDVI -217.7, Gaussian guide -217.2 nats per
    # image (the ELBO's Monte-Carlo SE at 16 particles is ~0.2); the snippet's DDVI is level with the
    # Gaussian guide, not behind it by more than 2 nats
    assert ddvi["elbo"] / len(x_test) > gaussian["elbo"] / len(x_test) - 2.0
