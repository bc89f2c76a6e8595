"""Where the gate saves the vectors it extracts: ``<out>/vectors/<trait id>``, never a policy path or an input."""

from __future__ import annotations

from pathlib import Path

import torch

from difflib_models.gate.runner import _save_vectors
from difflib_models.persona.extraction.vectors import PersonaVectorSet


def _vs(trait: str) -> PersonaVectorSet:
    return PersonaVectorSet(trait_id=trait, vectors={1: torch.ones(4)}, model={"weight_hash": "ab" * 32},
                            mode="test")


def test_vectors_saved_under_the_trait_id_without_clobbering(tmp_path: Path) -> None:
    out = tmp_path / "out" / "vectors"
    taken: set[str] = set()
    first = _save_vectors(_vs("my_trait"), out, "my_trait", taken)
    assert first == (out / "my_trait.safetensors").resolve() and (out / "my_trait.json").is_file()
    # a second trait with the same id (another file) gets its own name; a dotted id keeps its dot
    assert _save_vectors(_vs("my_trait"), out, "my_trait", taken).name == "my_trait-2.safetensors"
    assert _save_vectors(_vs("evil.v2"), out, "evil.v2", taken).name == "evil.v2.safetensors"
    # an input vector file that lives in the vectors folder is never replaced
    given = _vs("evil").save(out / "evil")
    before = given.read_bytes()
    saved = _save_vectors(_vs("evil"), out, "evil", set(), {given.resolve(), given.with_suffix(".json").resolve()})
    assert saved.name == "evil-2.safetensors" and given.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == [
        "evil-2.json", "evil-2.safetensors", "evil.json", "evil.safetensors", "evil.v2.json",
        "evil.v2.safetensors", "my_trait-2.json", "my_trait-2.safetensors", "my_trait.json",
        "my_trait.safetensors"]
