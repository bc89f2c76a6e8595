"""Persona vector files: round trip, sidecar contents, identity checks."""

from __future__ import annotations

import json

import pytest
import torch

from difflib_models.errors import ConfigError, IdentityMismatchError
from difflib_models.models.hookpoints import LAYER_CONVENTION
from difflib_models.models.identity import ModelIdentity
from difflib_models.persona.extraction.vectors import PersonaVectorSet
from tests.helpers.validation import summary

IDENT = ModelIdentity(name="m", source="in_memory", path=None, weight_hash="sha256:aaaa")


def _set(**kw) -> PersonaVectorSet:
    g = torch.Generator().manual_seed(0)
    vecs = {i: torch.randn(16, generator=g) * (i + 1) for i in range(3)}
    base = dict(trait_id="evil", vectors=vecs, model=IDENT.to_dict(), mode="ab", trait_hash="t1", n_pos=40,
                n_neg=40, gap={0: 1.0, 1: 2.5, 2: 3.0}, base_std={0: 0.5, 1: 0.7, 2: 0.9}, selected_layer=1,
                selection_reason="best AUROC", validation=summary({1: 0.9, 2: 0.7}, selected=1))
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
    assert isinstance(back.model, ModelIdentity) and back.model == IDENT and back.weight_hash == "sha256:aaaa"
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


# ---------------------------------------------------------------- the typed, versioned validation summary
def _full_summary():
    """A summary with every kind of row (layers, both nulls, steering), as validate_vectors writes it."""
    import dataclasses

    from difflib_models.persona.contracts import NullSummary, SteeringSummary

    null = NullSummary(name="label_permutation", n=200, max_over_layers=True, observed=0.91,
                       quantiles=((0.5, 0.52), (0.95, 0.7), (0.99, 0.78)), q95=0.7, p_value=0.005, d_observed=1.8,
                       d_q95=0.9, d_p_value=0.005, align_observed=0.6, align_q95=0.2, align_p_value=0.005,
                       saturated=False, test="auroc", passes=True)
    rand = dataclasses.replace(null, name="random_direction", q95=0.995, saturated=True, test="alignment")
    steer = SteeringSummary(layer=1, readout="text", monotone=True, effect=0.12, alphas=(-0.3, 0.0, 0.3),
                            p_matching=(0.4, 0.45, 0.52), coherent=(True, True, False), beats_control=True,
                            control_max_abs_effect=0.03)
    return dataclasses.replace(summary({0: 0.61, 1: 0.91, 2: 0.55}, selected=1, level="full"),
                               nulls=(null, rand), steering=(steer,), warnings=("w1",), model_weight_hash="sha256:aaaa")


def test_validation_summary_round_trip(tmp_path):
    """write -> read gives an equal frozen dataclass; the sidecar holds JSON only (no repr of Python objects)."""
    from difflib_models.persona.contracts import VALIDATION_SCHEMA_VERSION, ValidationSummary

    want = _full_summary()
    _set(validation=want).save(tmp_path / "v")
    meta = json.loads((tmp_path / "v.json").read_text())
    assert meta["format_version"] == 2 and meta["validation"]["schema_version"] == VALIDATION_SCHEMA_VERSION
    assert meta["validation_level"] == "full"
    back = PersonaVectorSet.load(tmp_path / "v").validation
    assert isinstance(back, ValidationSummary) and back == want
    assert back.auroc_at(2) == 0.55 and back.auroc_at(1) == 0.91 and back.auroc_at(5) is None
    assert back.null("random_direction").saturated and back.steering_at(1).beats_control
    assert ValidationSummary.from_json(json.loads(json.dumps(want.to_json())), source="x") == want
    with pytest.raises(AttributeError):  # frozen
        back.selected_layer = 2
    unvalidated = _set(validation=None)
    unvalidated.save(tmp_path / "n")
    assert PersonaVectorSet.load(tmp_path / "n").validation is None and unvalidated.validation_level == "none"


def _with_validation(tmp_path, record) -> None:
    _set(validation=_full_summary()).save(tmp_path / "v")
    meta = json.loads((tmp_path / "v.json").read_text())
    meta["validation"] = record(meta["validation"])
    (tmp_path / "v.json").write_text(json.dumps(meta))


def test_untyped_validation_of_an_older_file_is_refused_with_the_fix(tmp_path):
    """A validation dict without schema_version (written before the typed summary) is not guessed at: the error
    names the file and says to re-extract."""
    _with_validation(tmp_path, lambda v: {"selected_layer": 1, "auroc": 0.9, "auroc_by_layer": {"1": 0.9}})
    with pytest.raises(ConfigError, match=r"v\.json.*re-extract") as exc:
        PersonaVectorSet.load(tmp_path / "v")
    assert "schema_version" in str(exc.value)


@pytest.mark.parametrize(("change", "message"), [
    (lambda v: {**v, "schema_version": 99}, "newer difflib_models"),
    (lambda v: {**v, "schema_version": "1"}, "schema_version"),
    (lambda v: {**v, "layers": [{**v["layers"][0], "auroc": "high"}]}, "re-extract"),
    (lambda v: {k: x for k, x in v.items() if k != "nulls"}, "re-extract"),
    (lambda v: {**v, "selected_layer": 7}, "selected_layer"),
    (lambda v: {**v, "level": "fast"}, "level"),
    (lambda v: [v], "re-extract"),
])
def test_bad_validation_record_is_a_config_error_naming_the_file(tmp_path, change, message):
    _with_validation(tmp_path, change)
    with pytest.raises(ConfigError, match=message) as exc:
        PersonaVectorSet.load(tmp_path / "v")
    assert "v.json" in str(exc.value)


def test_validation_must_be_typed_and_about_this_files_layers():
    with pytest.raises(ConfigError, match="ValidationSummary"):
        _set(validation={"auroc": {"1": 0.9}})
    with pytest.raises(ConfigError, match="validation.layers"):
        _set(validation=summary({1: 0.9, 7: 0.8}))


def test_annotations_are_typed_fields_and_unknown_ones_survive_a_resave(tmp_path):
    s = _set(gap_source="prompt_contrast_last_token", assistant_prefix="Sure,", cache_key="k1",
             extra={"note": "kept"})
    s.save(tmp_path / "v")
    meta = json.loads((tmp_path / "v.json").read_text())
    assert meta["extra"] == {"note": "kept", "gap_source": "prompt_contrast_last_token", "assistant_prefix": "Sure,",
                             "gate_cache_key": "k1"}
    back = PersonaVectorSet.load(tmp_path / "v")
    assert (back.gap_source, back.assistant_prefix, back.cache_key) == ("prompt_contrast_last_token", "Sure,", "k1")
    assert back.extra == {"note": "kept"}
    back.save(tmp_path / "v")  # a re-save writes the same sidecar
    again = json.loads((tmp_path / "v.json").read_text())
    assert {k: v for k, v in again.items() if k != "library_version"} == {
        k: v for k, v in meta.items() if k != "library_version"}
