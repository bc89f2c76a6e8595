"""Persona vector files: round trip, sidecar contents, identity checks."""

from __future__ import annotations

import json

import pytest
import torch

from difflib_models.errors import ConfigError, IdentityMismatchError
from difflib_models.models.hookpoints import LAYER_CONVENTION
from difflib_models.models.identity import ModelIdentity
from difflib_models.persona.extraction.vectors import PersonaVectorSet

IDENT = ModelIdentity(name="m", source="in_memory", path=None, weight_hash="sha256:aaaa")


def _set(**kw) -> PersonaVectorSet:
    g = torch.Generator().manual_seed(0)
    vecs = {i: torch.randn(16, generator=g) * (i + 1) for i in range(3)}
    base = dict(trait_id="evil", vectors=vecs, model=IDENT.to_dict(), mode="ab", trait_hash="t1", n_pos=40,
                n_neg=40, gap={0: 1.0, 1: 2.5, 2: 3.0}, base_std={0: 0.5, 1: 0.7, 2: 0.9}, selected_layer=1,
                selection_reason="best AUROC", validation={"auroc": {"1": 0.9}})
    base.update(kw)
    return PersonaVectorSet(**base)


def test_round_trip(tmp_path):
    s = _set()
    out = s.save(tmp_path / "evil")
    assert out.name == "evil.safetensors" and (tmp_path / "evil.json").exists()
    back = PersonaVectorSet.load(tmp_path / "evil.safetensors", expect_model=IDENT)
    for k in range(3):
        torch.testing.assert_close(back.vectors[k], s.vectors[k], rtol=0, atol=0)
    assert back.selected_layer == 1 and back.gap == s.gap and back.base_std == s.base_std
    assert back.n_pos == 40 and back.trait_hash == "t1" and back.mode == "ab"
    torch.testing.assert_close(back.unit().norm(), torch.tensor(1.0))
    torch.testing.assert_close(back.unit(), s.vectors[1] / s.vectors[1].norm())


def test_sidecar_contents(tmp_path):
    s = _set()
    s.save(tmp_path / "v.safetensors")
    meta = json.loads((tmp_path / "v.json").read_text())
    assert meta["layer_convention"] == LAYER_CONVENTION
    assert meta["model"]["weight_hash"] == "sha256:aaaa"
    assert meta["trait"] == {"id": "evil", "hash": "t1", "polarity": "undesirable"}
    assert meta["norms"]["2"] == pytest.approx(float(s.vectors[2].norm()))
    assert meta["selected_layer"] == 1 and meta["selection_reason"] == "best AUROC"
    assert len(meta["sha256"]) == 64


def test_identity_mismatch(tmp_path):
    _set().save(tmp_path / "v")
    other = ModelIdentity(name="other", source="in_memory", path=None, weight_hash="sha256:bbbb")
    with pytest.raises(IdentityMismatchError, match="weight_hash"):
        PersonaVectorSet.load(tmp_path / "v", expect_model=other)
    with pytest.raises(IdentityMismatchError):
        PersonaVectorSet.load(tmp_path / "v", expect_model="sha256:cccc")
    # a fine-tuned model whose base is the extraction model is accepted
    tuned = ModelIdentity(name="ft", source="peft", path=None, weight_hash="sha256:dddd", base=IDENT)
    assert PersonaVectorSet.load(tmp_path / "v", expect_model=tuned).trait_id == "evil"
    assert PersonaVectorSet.load(tmp_path / "v").trait_id == "evil"  # no check requested


def test_identity_of_loaded_model(tmp_path):
    from transformers import PreTrainedTokenizerFast

    from difflib_models.models.loading import from_pretrained_objects
    from tests.helpers.tiny_models import make_tiny

    a = from_pretrained_objects(make_tiny("llama", seed=0), PreTrainedTokenizerFast, name="a")
    b = from_pretrained_objects(make_tiny("llama", seed=1), PreTrainedTokenizerFast, name="b")
    _set(model=a.identity.to_dict()).save(tmp_path / "v")
    PersonaVectorSet.load(tmp_path / "v", expect_model=a)
    with pytest.raises(IdentityMismatchError):
        PersonaVectorSet.load(tmp_path / "v", expect_model=b)


def test_corrupt_and_bad_input(tmp_path):
    _set().save(tmp_path / "v")
    data = bytearray((tmp_path / "v.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "v.safetensors").write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="checksum"):
        PersonaVectorSet.load(tmp_path / "v")
    with pytest.raises(ConfigError, match="vector file"):
        PersonaVectorSet.load(tmp_path / "missing")
    with pytest.raises(ConfigError, match="selected_layer"):
        _set(selected_layer=7)
    with pytest.raises(ConfigError, match="layer"):
        _set().vector(5)
    with pytest.raises(ConfigError, match="polarity"):
        _set(polarity="bad")


def test_save_never_writes_over_other_files(tmp_path):
    """A trait file or model weights at the target are refused (nothing written); an earlier vector file is
    replaced; a dotted stem keeps its dot and round-trips."""
    trait = tmp_path / "my_trait.json"
    trait.write_text('[{"question": "q"}]', encoding="utf-8")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights")
    for target in (tmp_path / "my_trait", trait, tmp_path / "model"):
        with pytest.raises(ConfigError, match="is not a persona vector file"):
            _set().save(target)
    assert trait.read_text(encoding="utf-8") == '[{"question": "q"}]' and weights.read_bytes() == b"weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "my_trait.json"]
    first = _set().save(tmp_path / "evil.v2")
    assert first.name == "evil.v2.safetensors" and (tmp_path / "evil.v2.json").is_file()
    again = _set(selected_layer=None).save(tmp_path / "evil.v2.safetensors")  # replaces its own earlier file
    assert again == first and PersonaVectorSet.load(tmp_path / "evil.v2").selected_layer is None

@pytest.mark.parametrize(("field", "value"), [("format_version", "1"), ("n_pos", "many"), ("gap", [1, 2]),
                                              ("trait", "evil")])
def test_sidecar_with_wrong_types_is_a_config_error(tmp_path, field, value):
    _set().save(tmp_path / "v")
    sidecar = tmp_path / "v.json"
    meta = json.loads(sidecar.read_text())
    meta[field] = value
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"v.json|format_version"):
        PersonaVectorSet.load(tmp_path / "v")


def test_truncated_vector_tensor_file_is_a_config_error(tmp_path):
    _set().save(tmp_path / "v")
    sidecar = tmp_path / "v.json"
    meta = json.loads(sidecar.read_text())
    meta.pop("sha256", None)  # no checksum to catch it first: the safetensors reader must
    sidecar.write_text(json.dumps(meta))
    tensor = tmp_path / "v.safetensors"
    tensor.write_bytes(tensor.read_bytes()[:40])
    with pytest.raises(ConfigError, match=r"v.safetensors.*a readable .safetensors file"):
        PersonaVectorSet.load(tmp_path / "v")
