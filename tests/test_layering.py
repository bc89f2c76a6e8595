"""Import rules: the package layering of docs/architecture.md, read from the source with ``ast``.

A package may import only from packages in LOWER layers (packages of one layer are independent of each other);
the same holds for the rooms of ``difflib_models.persona``. Every import counts: module level, inside functions
and under ``TYPE_CHECKING``. No underscore-prefixed module or name is imported across packages (or rooms), except
the root package's own helpers in ALLOWED_PRIVATE. The package facades (``difflib_models/__init__.py``,
``difflib_models/persona/__init__.py``) re-export everything and are exempt from the layer order; nothing inside
imports a facade name. Imports inside a package have no cycles either.

The checker works on a ``{module: source}`` map, so the tests below also run it on synthetic trees with planted
violations.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: bottom to top; a package imports only from packages of lower layers
LAYERS: tuple[tuple[str, ...], ...] = (
    ("_version", "_lazy", "errors", "finite"),
    ("files", "io", "paths", "progress", "outputs", "stats"),
    ("datasets", "stages"),
    ("models",),
    ("hooks",),
    ("store",),
    ("capture",),
    ("persona", "crosscoder"),
    ("diffing",),
    ("report",),
    ("gate", "integrations", "training"),
    ("callbacks",),
    ("demo",),
    ("cli",),
    ("__main__",),
)

#: the rooms of difflib_models.persona, bottom to top
PERSONA_ROOMS: tuple[tuple[str, ...], ...] = (
    ("contracts",),
    ("traits",),
    ("shift",),
    ("extraction",),
    ("steering",),
    ("validation",),
    ("filtering",),
)

#: private modules of the root package that every package may import, and why
ALLOWED_PRIVATE = {
    "difflib_models._version": "the version string (public as difflib_models.__version__)",
    "difflib_models._lazy": "the lazy-export helper of every package's __init__",
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (the deepest known module the statement names)
    name: str  # the imported name ('' for ``import a.b``)
    line: int
    lazy: bool = False  # inside a module-level ``__getattr__`` (a lazy re-export)


@dataclass(frozen=True)
class Layering:
    package: str
    layers: Sequence[Sequence[str]]


def read_tree(root: Path, package: str) -> dict[str, str]:
    """``{dotted module name: source}`` for every .py file of ``package`` under ``root``."""
    out = {}
    for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path.read_text(encoding="utf-8")
    return out


def _is_package(module: str, modules: Mapping[str, str]) -> bool:
    return any(m.startswith(module + ".") for m in modules)


def find_imports(modules: Mapping[str, str], package: str) -> list[Import]:
    """Every import of a ``package`` module by a module of ``modules`` (relative imports resolved)."""
    found = []
    for source, text in modules.items():
        base = source if _is_package(source, modules) else source.rpartition(".")[0]
        tree = ast.parse(text)
        lazy = {id(n) for top in tree.body if isinstance(top, ast.FunctionDef) and top.name == "__getattr__"
                for n in ast.walk(top)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [Import(source, a.name, "", node.lineno, id(node) in lazy) for a in node.names
                          if a.name == package or a.name.startswith(package + ".")]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base.split(".")[: len(base.split(".")) - node.level + 1]
                    module = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                if module != package and not module.startswith(package + "."):
                    continue
                for a in node.names:
                    sub = f"{module}.{a.name}"
                    found.append(Import(source, sub if sub in modules else module, a.name, node.lineno,
                                        id(node) in lazy))
    return found


def _unit(module: str, package: str) -> str | None:
    """The unit (sub-package or module directly under ``package``) of ``module``; None for the facade itself."""
    if module == package:
        return None
    return module[len(package) + 1:].split(".")[0]


def check_layering(modules: Mapping[str, str], spec: Layering, allowed_private: Mapping[str, str] = ALLOWED_PRIVATE
                   ) -> list[str]:
    """Violations of ``spec`` by the imports between units of ``spec.package`` (one message each)."""
    rank = {u: i for i, layer in enumerate(spec.layers) for u in layer}
    problems = []
    units = {_unit(m, spec.package) for m in modules if m.startswith(spec.package + ".")}
    problems += [f"{spec.package}.{u}: not in a declared layer" for u in sorted(units - set(rank) - {None})]
    graph: dict[str, set[str]] = {}
    for imp in find_imports(modules, spec.package):
        if imp.source != spec.package and not imp.source.startswith(spec.package + "."):
            continue
        src, dst = _unit(imp.source, spec.package), _unit(imp.target, spec.package)
        where = f"{imp.source}:{imp.line}"
        what = f"{imp.target}" + (f".{imp.name}" if imp.name and not imp.target.endswith("." + imp.name) else "")
        if dst is None:
            if src is not None:
                problems.append(f"{where} imports the facade name {what} (import it from its package)")
            continue
        if src is None or src == dst:
            continue
        private = [p for p in imp.target[len(spec.package) + 1:].split(".") if p.startswith("_")]
        if imp.target not in allowed_private and (private or imp.name.startswith("_")):
            problems.append(f"{where} imports the private {what} across packages")
        if src in rank and dst in rank and rank[dst] >= rank[src]:
            relation = "the same layer as" if rank[dst] == rank[src] else "a layer above"
            problems.append(f"{where}: {spec.package}.{src} imports {what}, in {relation} {spec.package}.{src}")
        graph.setdefault(src, set()).add(dst)
    problems += [f"import cycle between packages: {', '.join(c)}" for c in cycles(graph)]
    return problems


def module_cycles(modules: Mapping[str, str], package: str) -> list[list[str]]:
    """Import cycles between the modules of ``package``. Not edges: a package's __init__ importing its own modules
    (importing a submodule runs the __init__ first by definition) and a module-level ``__getattr__`` that
    re-exports a name lazily from the module that builds on this one (callbacks/*.py -> callbacks/lightning.py)."""
    graph: dict[str, set[str]] = {}
    for imp in find_imports(modules, package):
        if imp.lazy:
            continue
        if imp.target in modules and imp.target != imp.source and not imp.source.startswith(imp.target + "."):
            if not (imp.target.startswith(imp.source + ".") and _is_package(imp.source, modules)):
                graph.setdefault(imp.source, set()).add(imp.target)
    return cycles(graph)


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The node sets of the import cycles: strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
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
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


SPECS = (Layering("difflib_models", LAYERS), Layering("difflib_models.persona", PERSONA_ROOMS))


def all_problems(modules: Mapping[str, str]) -> list[str]:
    problems = [p for spec in SPECS for p in check_layering(modules, spec)]
    cyc = module_cycles(modules, "difflib_models")
    return problems + [f"import cycle between modules: {', '.join(c)}" for c in cyc]


# ---------------------------------------------------------------------------------------------------------- the repo
def test_the_package_follows_the_layering() -> None:
    problems = all_problems(read_tree(ROOT, "difflib_models"))
    assert not problems, "\n".join(problems)


def test_every_package_is_declared_once() -> None:
    declared = [u for layer in LAYERS for u in layer]
    assert len(declared) == len(set(declared))
    on_disk = {p.stem if p.is_file() else p.name for p in (ROOT / "difflib_models").iterdir()
               if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
               or (p.is_dir() and any(p.glob("*.py")))}
    assert on_disk == set(declared)
    rooms = {p.name for p in (ROOT / "difflib_models/persona").iterdir() if (p / "__init__.py").is_file()}
    assert rooms == {r for layer in PERSONA_ROOMS for r in layer}


def test_a_violation_planted_in_the_real_tree_is_found() -> None:
    modules = dict(read_tree(ROOT, "difflib_models"))
    modules["difflib_models.store.batch"] += "\nfrom difflib_models.capture.capture import capture_batch\n"
    modules["difflib_models.persona.traits.schema"] += "\nfrom difflib_models.persona.shift.core import _x\n"
    problems = all_problems(modules)
    assert any("store.batch" in p and "a layer above" in p for p in problems), problems
    assert any("import cycle between packages" in p and "capture" in p and "store" in p for p in problems)
    assert any("persona.traits.schema" in p and "private" in p for p in problems)
    assert any("persona.traits imports" in p and "a layer above" in p for p in problems)


# ------------------------------------------------------------------------------------------------ synthetic trees
SYNTH = Layering("pkg", (("_util", "base"), ("mid", "side"), ("top",)))


def _tree(**sources: str) -> dict[str, str]:
    modules = {"pkg": "", "pkg.base": "", "pkg.mid": "", "pkg.mid.a": "", "pkg.side": "", "pkg.top": "",
               "pkg._util": "", "pkg.base._impl": ""}
    modules.update({k.replace("__", "."): v for k, v in sources.items()})
    return modules


def test_a_clean_synthetic_tree_passes() -> None:
    modules = _tree(pkg__top="from pkg.mid.a import f\nfrom pkg import base\n",
                    pkg__mid__a="from pkg.base import g\nfrom . import b\n", pkg__mid__b="import pkg.base\n")
    assert check_layering(modules, SYNTH, {}) == []
    assert module_cycles(modules, "pkg") == []


@pytest.mark.parametrize(("sources", "expected"), [
    ({"pkg__base": "from pkg.mid.a import f\n"}, "a layer above"),
    ({"pkg__base": "def f():\n    from pkg.top import g\n"}, "a layer above"),  # inside a function
    ({"pkg__base": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.mid import X\n"},
     "a layer above"),
    ({"pkg__mid": "from pkg.side import h\n"}, "the same layer as"),
    ({"pkg__mid__a": "from ..side import h\n"}, "the same layer as"),  # relative import across packages
    ({"pkg__top": "from pkg.base import _hidden\n"}, "private"),
    ({"pkg__top": "from pkg.base._impl import visible\n"}, "private"),
    ({"pkg__top": "from pkg._util import helper\n"}, "private"),
    ({"pkg__mid__a": "from pkg import THING\n"}, "facade"),
    ({"pkg__extra": "x = 1\n"}, "not in a declared layer"),
    ({"pkg__base": "import pkg.top\n", "pkg__top": "import pkg.base\n"}, "import cycle between packages"),
])
def test_a_planted_violation_is_found(sources: dict[str, str], expected: str) -> None:
    problems = check_layering(_tree(**sources), SYNTH, {})
    assert any(expected in p for p in problems), problems


def test_a_lazy_module_getattr_is_no_cycle_edge() -> None:
    modules = _tree(pkg__mid__a="from pkg.mid.b import f\n",
                    pkg__mid__b="def __getattr__(name):\n    from pkg.mid.a import h\n    return h\n")
    assert module_cycles(modules, "pkg") == []


def test_allowed_private_modules_pass() -> None:
    modules = _tree(pkg__top="from pkg._util import helper\n")
    assert check_layering(modules, SYNTH, {"pkg._util": "shared helper"}) == []


def test_a_module_cycle_inside_a_package_is_found() -> None:
    modules = _tree(pkg__mid__a="from pkg.mid.b import f\n", pkg__mid__b="def g():\n    from pkg.mid.a import h\n")
    assert module_cycles(modules, "pkg") == [["pkg.mid.a", "pkg.mid.b"]]
    assert check_layering(modules, SYNTH, {}) == []  # inside one package: only the module-cycle rule sees it


def test_docs_architecture_lists_the_same_layers() -> None:
    """docs/architecture.md's layer table is this test's LAYERS, in the same order."""
    import re

    text = (ROOT / "docs/architecture.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| ((?:`[\w.]+`(?:, )?)+) \|", text, flags=re.M)
    assert [int(n) for n, _ in rows] == list(range(len(LAYERS)))
    assert [tuple(sorted(re.findall(r"`([\w.]+)`", cells))) for _, cells in rows] == [tuple(sorted(x)) for x in LAYERS]
