"""The public API is static: IDEs and type checkers see the real names and signatures, and ``import
difflib_models`` stays free of torch, Lightning and MLflow."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import jedi

ROOT = Path(__file__).resolve().parents[1]
LAZY_PACKAGES = ["difflib_models", "difflib_models.callbacks", "difflib_models.crosscoder", "difflib_models.demo",
                 "difflib_models.diffing", "difflib_models.integrations", "difflib_models.models",
                 "difflib_models.persona", "difflib_models.report", "difflib_models.training"]
EXPECTED = {
    "ActivationSnapshot": {"prompts", "layers", "every_n_steps", "out_dir", "tokenizer", "hook_override"},
    "PersonaMonitor": {"vectors", "traits", "every_n_steps", "fail_z", "stop_on_fail"},
    "load_model": {"spec", "adapter", "tokenizer", "dtype", "device", "device_map"},
}


def test_import_is_light() -> None:
    code = ("import difflib_models, sys; heavy = [m for m in ('lightning', 'pytorch_lightning', 'mlflow', 'torch') "
            "if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_signatures_are_the_real_ones() -> None:
    import difflib_models

    for name, params in EXPECTED.items():
        sig = inspect.signature(getattr(difflib_models, name))
        assert params <= set(sig.parameters), (name, sorted(sig.parameters))


def test_jedi_resolves_the_public_names_statically() -> None:
    project = jedi.Project(ROOT, added_sys_path=[str(ROOT)])
    for name, params in EXPECTED.items():
        src = f"import difflib_models\ndifflib_models.{name}("
        script = jedi.Script(src, path=ROOT / "probe.py", project=project)
        sigs = script.get_signatures(2, len(f"difflib_models.{name}("))
        assert sigs, f"jedi finds no signature for difflib_models.{name}"
        found = {p.name for p in sigs[0].params}
        assert params <= found, (name, sorted(found))
        defs = script.infer(2, len("difflib_models.") + 1)
        assert defs and defs[0].name == name and defs[0].module_path.is_relative_to(ROOT / "difflib_models")


def test_callbacks_are_ordinary_classes_per_namespace() -> None:
    import lightning.pytorch as L  # noqa: N812
    import pytorch_lightning as pl

    from difflib_models import callbacks
    from difflib_models.callbacks import lightning as lt
    from difflib_models.callbacks import pl as pl_alias
    from difflib_models.callbacks import pytorch_lightning as ptl
    from difflib_models.callbacks.persona_monitor import PersonaMonitor

    for name in ("ActivationSnapshot", "PersonaMonitor", "DataFilterCallback"):
        a, b = getattr(lt, name), getattr(ptl, name)
        assert issubclass(a, L.Callback) and not issubclass(a, pl.Callback)
        assert issubclass(b, pl.Callback) and not issubclass(b, L.Callback)
        assert getattr(callbacks, name) is a and getattr(pl_alias, name) is b
        # defined by a class statement in the module that exports it (not built with type() at runtime)
        tree = ast.parse(Path(inspect.getfile(a)).read_text())
        assert name in {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert PersonaMonitor is lt.PersonaMonitor


def _type_checking_names(module: str) -> set[str]:
    path = Path(importlib.import_module(module).__file__)
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                names |= {a.asname or a.name for a in imp.names}
    return names


def test_every_lazy_name_is_in_all_and_statically_imported() -> None:
    for module in LAZY_PACKAGES:
        mod = importlib.import_module(module)
        lazy = set(mod._LAZY)
        assert lazy <= set(mod.__all__), module
        assert lazy <= _type_checking_names(module), (module, sorted(lazy - _type_checking_names(module)))
        for name in mod.__all__:  # each resolves to an object defined where the static import says
            assert getattr(mod, name) is not None


def test_every_library_package_lists_its_public_names() -> None:
    import pkgutil

    import difflib_models

    packages = [m.name for m in pkgutil.walk_packages(difflib_models.__path__, "difflib_models.") if m.ispkg]
    assert set(LAZY_PACKAGES) - {"difflib_models"} <= set(packages)
    for name in packages:
        if name == "difflib_models.cli":  # the command line: no Python API
            continue
        assert isinstance(importlib.import_module(name).__all__, list), name
