"""The package's declared runtime dependencies are exactly what it imports, and the suite runs against
the newest releases of pyro-ppl and of ArviZ's stats package that pyproject.toml allows.

The second check asks pip (and so the package index, as a fresh CI install does) which release of each
requirement it would install now; run after ``pip install --upgrade``, a passing suite shows that the
newest allowed versions work.
"""

import ast
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pyro_diffvi"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements(group: str | None = None) -> list[Requirement]:
    project = _pyproject()["project"]
    specs = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [Requirement(spec) for spec in specs]


def _applies(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate()


def _distribution_of(module: str) -> set[str]:
    """Normalized names of the installed distributions providing top-level module ``module``."""
    return {name.lower().replace("_", "-") for name in importlib.metadata.packages_distributions().get(module, [])}


def _imports(module_level_only: bool) -> dict[str, set[str]]:
    """``{top-level module: {files importing it}}`` over pyro_diffvi's source, absolute imports only."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        if module_level_only:  # module-level statements, with imports nested in try/if blocks
            scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
            nodes = [n for top in tree.body if not isinstance(top, scopes) for n in ast.walk(top)]
        else:
            nodes = list(ast.walk(tree))
        for node in nodes:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def _third_party(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: f for m, f in imports.items() if m not in sys.stdlib_module_names and m != "pyro_diffvi"}


def _normalized(requirements: list[Requirement]) -> set[str]:
    return {r.name.lower().replace("_", "-") for r in requirements}


def test_module_level_imports_are_runtime_dependencies():
    declared = _normalized([r for r in _requirements() if _applies(r)])
    undeclared = {
        module: sorted(files)
        for module, files in _third_party(_imports(module_level_only=True)).items()
        if not _distribution_of(module) & declared
    }
    assert not undeclared, f"imported at module level but not in [project] dependencies: {undeclared}"


def test_every_import_is_declared_somewhere():
    # lazy imports (inside functions) may come from an optional extra or a fallback for other Pythons
    project = _pyproject()["project"]
    declared = _normalized(_requirements()) | {
        name for group in project.get("optional-dependencies", {}) for name in _normalized(_requirements(group))
    }
    undeclared = {
        module: sorted(files)
        for module, files in _third_party(_imports(module_level_only=False)).items()
        if not (_distribution_of(module) & declared or module.replace("_", "-") in declared)
    }
    assert not undeclared, f"imported but declared neither as a dependency nor in an extra: {undeclared}"


def test_every_runtime_dependency_is_imported():
    imported = set()
    for module in _third_party(_imports(module_level_only=False)):
        imported |= _distribution_of(module) | {module.replace("_", "-")}
    unused = sorted(r.name for r in _requirements() if _applies(r) and r.name.lower() not in imported)
    assert not unused, f"declared in [project] dependencies but never imported by pyro_diffvi: {unused}"


def _newest_allowed(requirement: Requirement) -> str:
    """The version pip would install for ``requirement`` from the package index now."""
    command = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed", "--no-deps",
        "--disable-pip-version-check", "--report", "-", str(requirement).split(";")[0],
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"pip could not resolve {requirement} from the package index:\n{result.stderr[-2000:]}")
    (item,) = json.loads(result.stdout)["install"]
    return item["metadata"]["version"]


def _version_checked() -> list[Requirement]:
    """pyro-ppl and the ArviZ package that applies to this Python (arviz-stats, or arviz 0.x on 3.10)."""
    names = ("pyro-ppl", "arviz-stats", "arviz")
    return [r for r in _requirements() if r.name in names and _applies(r)]


def test_the_versions_checked_are_pyro_and_one_arviz_package():
    assert sorted(r.name for r in _version_checked()) in (["arviz-stats", "pyro-ppl"], ["arviz", "pyro-ppl"])


@pytest.mark.parametrize("requirement", _version_checked(), ids=lambda r: r.name)
def test_installed_version_is_newest_allowed(requirement):
    name = requirement.name
    installed = importlib.metadata.version(name)
    newest = _newest_allowed(requirement)
    assert installed == newest, (
        f"{name} {installed} is installed but pyproject allows {newest} ({requirement}): "
        "install with `pip install --upgrade` so that the suite tests the newest allowed release"
    )
