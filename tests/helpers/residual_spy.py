"""Record which layers the persona extractor reads residuals at (a test that a procedure reads one layer only)."""

from __future__ import annotations

from typing import Any

import pytest


def spy_read_layers(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Patch the extractor's ``read_residuals`` to append the layers of every call to the returned list."""
    import difflib_models.persona.extraction.extractor as extractor_module

    seen: list[list[int]] = []
    orig = extractor_module.read_residuals

    def spy(model: Any, ids: Any, mask: Any, layers: Any, **kw: Any) -> Any:
        seen.append(list(layers))
        return orig(model, ids, mask, layers, **kw)

    monkeypatch.setattr(extractor_module, "read_residuals", spy)
    return seen
