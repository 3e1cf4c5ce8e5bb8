"""The import rules of ``docs/design.md`` ("Layers and who may import whom"), checked on the source with ``ast``.

Every ``import`` / ``from ... import`` in every module of ``diffbio_prob`` counts, at module level and inside
functions alike (a lazy import is still a dependency). The checker is tested on a small synthetic package that
breaks each rule once, so a rule that stops detecting its violation fails here too.
"""

from __future__ import annotations

import ast
import dataclasses
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "diffbio_prob"

# what each layer may import from the package (by layer name; see layer_of)
ALLOWED_INTERNAL = {
    "cores": {"cores"},
    "operators": {"cores", "operators", "parallel"},
    "models": {"cores", "models", "parallel"},
    "inference": {"cores", "operators", "models", "inference", "io", "parallel"},
    "parallel": {"compile_queue"},
    "compile_queue": set(),
    "distributed": set(),
    "compile_cache": set(),
    "io": {"io"},
    "plots": {"plots", "io"},
    "workflows": {
        "cores", "operators", "models", "inference", "io", "plots", "parallel", "workflows", "workflows.demo", "root"
    },
    "workflows.demo": {"workflows", "workflows.demo", "io", "plots", "root"},
    "cli": {"workflows", "workflows.demo", "io", "compile_cache", "compile_queue", "distributed", "root"},
    "main": {"cli"},
    "root": {"operators", "compile_cache"},
}
# third-party packages a layer must not import (the standard library is always allowed)
JAX_STACK = {"jax", "jaxlib", "flax", "numpyro", "optax"}
FORBIDDEN_EXTERNAL = {
    "cores": None,  # None: only ALLOWED_EXTERNAL_CORES
    "operators": {"numpyro"},
    "models": {"flax", "optax"},
    "io": JAX_STACK,
}
ALLOWED_EXTERNAL_CORES = {"jax", "numpy"}
NUMPYRO_COMPAT = "inference._numpyro_compat"


@dataclasses.dataclass(frozen=True)
class Import:
    importer: str  # module, relative to the package ("io.salmon")
    target: str  # dotted name as imported ("diffbio_prob.io.base", "numpy")
    line: int
    private_names: tuple[str, ...] = ()  # underscore names taken from a numpyro module


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def collect_imports(root: Path, package: str = "diffbio_prob") -> tuple[set[str], list[Import]]:
    """All modules under ``root`` and every import statement in them (package names made relative)."""
    modules, imports = set(), []
    for path in sorted(root.rglob("*.py")):
        mod = module_name(path, root)
        modules.add(mod)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_pkg = path.name == "__init__.py"
        numpyro_aliases: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    imports.append(Import(mod, alias.name, node.lineno,
                                          tuple(p for p in alias.name.split(".") if _is_private(p))
                                          if alias.name.split(".")[0] == "numpyro" else ()))
                    if alias.name.split(".")[0] == "numpyro":
                        numpyro_aliases.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ([package] + mod.split(".")) if mod else [package]
                    if not is_pkg:
                        base = base[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                private = ()
                if target.split(".")[0] == "numpyro":
                    private = tuple(p for p in target.split(".") if _is_private(p))
                    private += tuple(a.name for a in node.names if _is_private(a.name))
                    numpyro_aliases.update(a.asname or a.name for a in node.names)
                for alias in node.names:
                    # "from pkg import submodule" depends on the submodule
                    imports.append(Import(mod, f"{target}.{alias.name}", node.lineno, private))
        # attribute chains on numpyro names reaching private members (numpyro.infer.mcmc._sample_fn)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _is_private(node.attr):
                root_node = node.value
                while isinstance(root_node, ast.Attribute):
                    root_node = root_node.value
                if isinstance(root_node, ast.Name) and root_node.id in numpyro_aliases:
                    imports.append(Import(mod, "numpyro", node.lineno, (node.attr,)))
    return modules, imports


def internal_target(target: str, modules: set[str], package: str = "diffbio_prob") -> str | None:
    """The package module an import refers to (longest existing prefix), or ``None`` for third-party."""
    parts = target.split(".")
    if parts[0] != package:
        return None
    parts = parts[1:]
    while parts and ".".join(parts) not in modules:
        parts = parts[:-1]
    return ".".join(parts)  # "" is the package itself


def layer_of(mod: str) -> str:
    if mod == "":
        return "root"
    if mod == "__main__":
        return "main"
    if mod == "cli":
        return "cli"
    if mod == "workflows.demo" or mod.startswith("workflows.demo."):
        return "workflows.demo"
    return mod.split(".")[0]


def _stdlib(name: str) -> bool:
    return name in sys.stdlib_module_names or name == "__future__"


def check(root: Path, package: str = "diffbio_prob") -> dict[str, list[str]]:
    """Violations per rule: ``{rule: ["importer:line imports target", ...]}``."""
    modules, imports = collect_imports(root, package)
    out: dict[str, list[str]] = {r: [] for r in ("layers", "external", "cli", "numpyro_internals", "cycles")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        where = f"{imp.importer}:{imp.line} imports {imp.target}"
        src = layer_of(imp.importer)
        dst_mod = internal_target(imp.target, modules, package)
        if dst_mod is not None:
            if dst_mod != imp.importer:
                graph[imp.importer].add(dst_mod)
            dst = layer_of(dst_mod)
            if dst_mod == "cli" and imp.importer != "__main__":
                out["cli"].append(where)
            elif dst != src and dst not in ALLOWED_INTERNAL.get(src, set()):
                out["layers"].append(f"{where} ({src} -> {dst})")
            continue
        top = imp.target.split(".")[0]
        if imp.private_names and imp.importer != NUMPYRO_COMPAT:
            out["numpyro_internals"].append(f"{where} (private: {', '.join(imp.private_names)})")
        if _stdlib(top):
            continue
        if src in ("cores", "parallel", "distributed", "compile_cache"):
            if top not in ALLOWED_EXTERNAL_CORES:
                out["external"].append(f"{where} ({src} imports only {sorted(ALLOWED_EXTERNAL_CORES)})")
        elif top in (FORBIDDEN_EXTERNAL.get(src) or ()):
            out["external"].append(f"{where} ({src} must not import {top})")
    out["cycles"] = [" -> ".join(c) for c in _cycles(graph)]
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, comps = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


# ---- the package itself -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def violations():
    return check(PACKAGE)


def test_every_module_is_in_a_known_layer():
    modules, _ = collect_imports(PACKAGE)
    unknown = sorted(m for m in modules if layer_of(m) not in ALLOWED_INTERNAL)
    assert not unknown, f"modules outside the layers of docs/design.md: {unknown}"
    assert {"cores.hmm", "io.salmon", "io.base", "workflows.quant", "cli"} <= modules  # the walk found the tree


def test_layers_point_down(violations):
    """cores <- operators, models <- inference <- workflows <- cli; io and plots beside; demo calls workflows."""
    assert not violations["layers"], "\n".join(violations["layers"])


def test_third_party_per_layer(violations):
    """cores: jax/numpy only; operators: no numpyro; models: no flax/optax; io: no JAX stack."""
    assert not violations["external"], "\n".join(violations["external"])


def test_nothing_imports_the_cli(violations):
    assert not violations["cli"], "\n".join(violations["cli"])


def test_numpyro_internals_only_in_the_compat_module(violations):
    assert not violations["numpyro_internals"], "\n".join(violations["numpyro_internals"])


def test_no_import_cycles(violations):
    assert not violations["cycles"], "\n".join(violations["cycles"])


# ---- the checker catches each kind of violation -----------------------------------------------------
BAD_PACKAGE = {
    "__init__.py": "",
    "cli.py": "from pkg.workflows import run\n",
    "__main__.py": "from pkg.cli import main\n",
    "cores/__init__.py": "",
    "cores/hmm.py": "import jax\nimport numpy as np\nimport flax\nfrom pkg.models import m\n",
    "operators/__init__.py": "",
    "operators/op.py": "from ..cores import hmm\nfrom pkg.models.m import f\nimport numpyro\n",
    "models/__init__.py": "",
    "models/m.py": "from pkg.cores import hmm\nfrom flax import nnx\n",
    "inference/__init__.py": "",
    "inference/fit.py": (
        "import numpyro\nfrom numpyro.infer.mcmc import _sample_fn\nfrom numpyro.infer import _private_mod\n"
        "def f():\n    return numpyro.infer.hmc._hmc_next\n"
    ),
    "inference/_numpyro_compat.py": "from numpyro.infer.mcmc import _sample_fn\n",
    "io/__init__.py": "",
    "io/a.py": "import jax.numpy as jnp\nfrom pkg.io import b\n",
    "io/b.py": "def g():\n    from pkg.io.a import x\n    from pkg.workflows.wf import y\n",
    "plots/__init__.py": "",
    "plots/p.py": "from pkg.inference.fit import f\n",
    "workflows/__init__.py": "",
    "workflows/wf.py": "from pkg.cores import hmm\nfrom pkg import cli\n",
    "workflows/demo/__init__.py": "",
    "workflows/demo/hmm.py": "from pkg.workflows.wf import run\nfrom pkg.inference.fit import f\n",
}


def test_checker_finds_each_violation(tmp_path):
    for rel, text in BAD_PACKAGE.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    found = check(tmp_path / "pkg", package="pkg")
    layers = "\n".join(found["layers"])
    for expected in ("cores.hmm:4 imports pkg.models.m (cores -> models)",
                     "operators.op:2 imports pkg.models.m.f (operators -> models)",
                     "io.b:3 imports pkg.workflows.wf.y (io -> workflows)",
                     "plots.p:1 imports pkg.inference.fit.f (plots -> inference)",
                     "workflows.demo.hmm:2 imports pkg.inference.fit.f (workflows.demo -> inference)"):
        assert expected in layers
    assert "operators.op:1" not in layers and "models.m:1" not in layers  # relative and absolute core imports
    assert "workflows.wf:1" not in layers and "workflows.demo.hmm:1" not in layers
    assert len(found["layers"]) == 5, layers
    external = "\n".join(found["external"])
    assert "cores.hmm:3 imports flax" in external and "cores.hmm:1" not in external and "cores.hmm:2" not in external
    assert "operators.op:3 imports numpyro" in external and "models.m:2 imports flax.nnx" in external
    assert "io.a:1 imports jax.numpy" in external and len(found["external"]) == 4
    assert found["cli"] == ["workflows.wf:2 imports pkg.cli"]
    private = "\n".join(found["numpyro_internals"])
    assert "inference.fit:2" in private and "inference.fit:3" in private and "inference.fit:5" in private
    assert "_numpyro_compat" not in private and len(found["numpyro_internals"]) == 3
    # the lazy import in io.b closes a circle; so does the forbidden cores -> models import
    assert found["cycles"] == ["cores.hmm -> models.m", "io.a -> io.b"]
