"""The package's architecture holds: imports only point down the layers (deferred imports included), no import
cycles, importing the distributions loads no higher layer, no module over 500 lines, the tests mirror the package
one to one and import no private names.

The layers, bottom to top (docs/guide.md, "Architecture"): an import may point into its own layer or any layer
below, never above.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pyro_diffvi"
TESTS = ROOT / "tests"

LAYERS: list[tuple[str, ...]] = [
    ("pyro_diffvi", "pyro_diffvi._pyro_compat", "pyro_diffvi.errors", "pyro_diffvi.util", "pyro_diffvi.ops"),
    ("pyro_diffvi.nn",),
    ("pyro_diffvi.diffusion", "pyro_diffvi.samplers"),
    ("pyro_diffvi.distributions",),
    ("pyro_diffvi.priors",),
    ("pyro_diffvi.datasets",),
    ("pyro_diffvi.guides",),
    ("pyro_diffvi.infer",),
    ("pyro_diffvi.metrics",),
    ("pyro_diffvi.plots", "pyro_diffvi.demo", "pyro_diffvi.__main__"),
]
MAX_LINES = 500
# the one private module a test imports: it isolates the facts about Pyro's internals the package relies on,
# and its test pins them (tests/test_pyro_compat.py)
PRIVATE_MODULES_TESTED = {"pyro_diffvi._pyro_compat"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path) -> set[str]:
    """Every ``pyro_diffvi`` module ``path`` imports, at module level or inside a function (ast), relative imports
    resolved; ``from package import name`` counts as an import of ``package.name`` when that is a module."""
    modules = package_modules()
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names} & set(modules)
            found.update(submodules)
            if len(submodules) < len(node.names):  # names of the module itself, not (only) its submodules
                found.add(target)
    return {m for m in found if m == "pyro_diffvi" or m.startswith("pyro_diffvi.")}


def layer(module: str) -> int:
    best, best_length = None, -1
    for index, units in enumerate(LAYERS):
        for unit in units:
            if (module == unit or module.startswith(unit + ".")) and len(unit) > best_length:
                best, best_length = index, len(unit)
    assert best is not None, f"module {module} lies in no layer of LAYERS"
    return best


def unit(module: str) -> str:
    """The layer unit (subpackage or top-level module) a module belongs to."""
    return max((u for units in LAYERS for u in units if module == u or module.startswith(u + ".")), key=len)


def test_every_import_points_down_the_layers():
    violations = []
    for name, path in package_modules().items():
        for target in imported_modules(path):
            if layer(target) > layer(name):
                violations.append(f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})")
    assert not violations, "imports from a higher layer:\n" + "\n".join(sorted(violations))


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_between_modules_or_subpackages():
    modules = package_modules()
    graph = {name: imported_modules(path) - {name} for name, path in modules.items()}
    assert _cycle(graph) is None, f"import cycle between modules: {' -> '.join(_cycle(graph))}"
    units: dict[str, set[str]] = {}
    for name, targets in graph.items():
        units.setdefault(unit(name), set()).update(unit(t) for t in targets if unit(t) != unit(name))
    units.pop("pyro_diffvi", None)  # the root package imports one helper to re-export it
    assert _cycle(units) is None, f"import cycle between subpackages: {' -> '.join(_cycle(units))}"


def test_importing_the_distributions_loads_no_higher_layer():
    code = (
        "import sys, pyro_diffvi.distributions; print(' '.join(m for m in sys.modules if m.startswith('pyro_diffvi')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    above = [m for m in loaded.split() if unit(m) in {"pyro_diffvi.guides", "pyro_diffvi.infer", "pyro_diffvi.metrics",
                                                      "pyro_diffvi.datasets", "pyro_diffvi.priors"}]
    assert not above, f"importing pyro_diffvi.distributions loads {above}"


def test_no_module_over_500_lines():
    long = {
        name: n for name, path in package_modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def mirror_test_file(module: str, path: Path) -> Path:
    """``pyro_diffvi/<sub>/<module>.py`` -> ``tests/<sub>/test_<module>.py`` (underscores around the name dropped)."""
    rel = path.relative_to(PACKAGE)
    return TESTS.joinpath(*rel.parts[:-1], "test_" + rel.stem.strip("_") + ".py")


def test_every_module_has_its_test_file_and_every_test_file_its_module():
    expected = {
        mirror_test_file(name, path)
        for name, path in package_modules().items()
        if path.name != "__init__.py"
    }
    missing = sorted(str(p.relative_to(ROOT)) for p in expected if not p.is_file())
    assert not missing, f"modules without a test file of their own: {missing}"
    actual = {p for p in TESTS.rglob("test_*.py") if "integration" not in p.relative_to(TESTS).parts}
    orphans = sorted(str(p.relative_to(ROOT)) for p in actual - expected)
    assert not orphans, f"test files outside tests/integration/ that mirror no module: {orphans}"


@pytest.mark.parametrize("path", sorted(TESTS.rglob("*.py")), ids=lambda p: str(p.relative_to(TESTS)))
def test_tests_import_no_private_names(path):
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pyro_diffvi"):
            private_module = any(part.startswith("_") for part in node.module.split("."))
            if private_module and node.module not in PRIVATE_MODULES_TESTED:
                bad.append(node.module)
            bad += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            bad += [
                a.name for a in node.names
                if a.name.startswith("pyro_diffvi") and any(p.startswith("_") for p in a.name.split("."))
                and a.name not in PRIVATE_MODULES_TESTED
            ]
    assert not bad, f"{path.relative_to(ROOT)} imports private names: {bad}"


def _docstrings(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield getattr(node, "name", module_name(path)), doc


@pytest.mark.parametrize("name", sorted(package_modules()), ids=str)
def test_docstrings_follow_one_style(name):
    """reStructuredText with untyped ``:param name:``, ``:return:`` (never ``:returns:``), and every doctest block
    introduced by an ``Example:`` (or ``Example (caption):``) line."""
    bad = []
    for owner, doc in _docstrings(package_modules()[name]):
        lines = doc.splitlines()
        if ":returns:" in doc:
            bad.append(f"{owner}: ':returns:'")
        bad += [
            f"{owner}: typed {line.strip()[:40]!r}" for line in lines if re.match(r"^\s*:param [^\s:]+ [^\s:]+:", line)
        ]
        for i, line in enumerate(lines):  # a literal block ("::") holding a doctest
            if line.rstrip().endswith("::"):
                indent = len(line) - len(line.lstrip())
                block = []
                for following in lines[i + 1:]:
                    if following.strip() and len(following) - len(following.lstrip()) <= indent:
                        break
                    block.append(following)
                if any(b.lstrip().startswith(">>>") for b in block):
                    bad.append(f"{owner}: a doctest inside a literal block (after {line.strip()[:40]!r})")
        for i, line in enumerate(lines):
            if line.lstrip().startswith(">>>") and (i == 0 or not lines[i - 1].lstrip().startswith((">>>", "..."))):
                j = i - 1
                while j >= 0 and not lines[j].strip():
                    j -= 1
                previous = lines[j].strip() if j >= 0 else ""
                in_example = re.match(r"^Example( \(.*\))?:$", previous) or _after_doctest_output(lines, j)
                if not in_example:
                    bad.append(f"{owner}: a doctest block without an 'Example:' line (after {previous[:40]!r})")
    assert not bad, "\n".join(bad)


def _after_doctest_output(lines: list[str], j: int) -> bool:
    """Whether line ``j`` is the output of an earlier doctest line of the same example."""
    while j >= 0 and lines[j].strip():
        if lines[j].lstrip().startswith(">>>"):
            return True
        j -= 1
    return False
