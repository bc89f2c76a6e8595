"""Hook registration happens only in difflib_models/hooks/; a HookSet removes what it registered."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from difflib_models.hooks import HookSet
from difflib_models.models.hookpoints import get_block
from tests.helpers.tiny_models import make_tiny

PACKAGE = Path(__file__).resolve().parents[2] / "difflib_models"
REGISTRATIONS = {
    "register_forward_hook",
    "register_forward_pre_hook",
    "register_full_backward_hook",
    "register_full_backward_pre_hook",
    "register_module_forward_hook",
    "register_module_forward_pre_hook",
    "register_module_full_backward_hook",
}


def _registrations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else None
            if name in REGISTRATIONS:
                found.append(f"{path}:{node.lineno} {name}")
    return found


def test_no_hook_registration_outside_the_hooks_layer() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50  # the scan sees the package
    inside = [f for f in files if f.is_relative_to(PACKAGE / "hooks")]
    assert any(_registrations(f) for f in inside)  # the scan does find registrations where they belong
    outside = [hit for f in files if f not in inside for hit in _registrations(f)]
    assert outside == []


def test_the_scan_catches_every_form_of_registration(tmp_path: Path) -> None:
    src = tmp_path / "mod.py"
    src.write_text(
        "from torch.nn.modules.module import register_module_forward_hook\n"
        "def f(model, block, fn):\n"
        "    block.register_forward_hook(fn)\n"
        "    model.model.register_forward_pre_hook(fn, with_kwargs=True)\n"
        "    block.register_full_backward_hook(fn)\n"
        "    register_module_forward_hook(fn)\n"
        "    block.register_buffer('x', None)\n",
        encoding="utf-8",
    )
    hits = sorted(h.rsplit(" ", 1)[1] for h in _registrations(src))
    assert hits == sorted(["register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
                           "register_module_forward_hook"])


def test_hookset_removes_every_hook_on_error() -> None:
    model = make_tiny("llama")
    block = get_block(model, 1)
    seen: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), HookSet() as hooks:
        hooks.forward(block, lambda *a: seen.append(1))
        hooks.pre(model, lambda m, args, kwargs: None, with_kwargs=True)
        assert len(hooks) == 2 and block._forward_hooks and model._forward_pre_hooks
        model(input_ids=torch.tensor([[1, 2, 3]]))
        raise RuntimeError("boom")
    assert seen == [1]
    assert not block._forward_hooks and not model._forward_pre_hooks and not hooks.active
    hooks.remove()  # idempotent
