"""Persona vector exports read back with the formats' own readers (gguf.GGUFReader, safetensors)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from difflib_models.cli.app import main
from difflib_models.errors import ConfigError
from difflib_models.persona.extraction.export import export_vectors
from difflib_models.persona.extraction.vectors import PersonaVectorSet


@pytest.fixture
def vs() -> PersonaVectorSet:
    gen = torch.Generator().manual_seed(5)
    vecs = {i: torch.randn(16, generator=gen) * (i + 1) for i in (0, 2, 3, 7)}
    return PersonaVectorSet(trait_id="evil", vectors=vecs, mode="prompt_contrast", selected_layer=3,
                            model={"name": "tiny-llama", "weight_hash": "sha256:" + "ab" * 32,
                                   "extra": {"model_type": "llama"}})


def _gguf(path):
    import gguf

    reader = gguf.GGUFReader(path)

    def field(name):
        f = reader.get_field(name)
        return f.parts[f.data[0]] if f is not None else None

    arch = bytes(field("general.architecture")).decode()
    hint = bytes(field("controlvector.model_hint")).decode()
    count = int(field("controlvector.layer_count")[0])
    tensors = {t.name: np.asarray(t.data) for t in reader.tensors}
    return arch, hint, count, tensors


def test_repeng_gguf_holds_unit_directions_keyed_by_block(tmp_path, vs):
    (path,) = export_vectors(vs, tmp_path / "evil", fmt="repeng")
    assert path.name == "evil.gguf"
    arch, hint, count, tensors = _gguf(path)
    assert (arch, hint, count) == ("controlvector", "llama", 4)
    assert sorted(tensors) == ["direction.0", "direction.2", "direction.3", "direction.7"]
    for i in vs.layers:
        got = torch.from_numpy(tensors[f"direction.{i}"].copy())
        torch.testing.assert_close(got, vs.unit(i))
        assert got.norm() == pytest.approx(1.0, abs=1e-5)


def test_repeng_raw_and_layer_subset(tmp_path, vs):
    (path,) = export_vectors(vs, tmp_path / "evil.gguf", fmt="repeng", layers=[7, 2], unit=False, hint="smol")
    _, hint, count, tensors = _gguf(path)
    assert hint == "smol" and count == 2 and sorted(tensors) == ["direction.2", "direction.7"]
    torch.testing.assert_close(torch.from_numpy(tensors["direction.7"].copy()), vs.vector(7))


def test_steering_vectors_file_and_sidecar(tmp_path, vs):
    path, sidecar = export_vectors(vs, tmp_path / "evil", fmt="steering-vectors")
    tensors = load_file(path)
    assert sorted(tensors) == [f"layer_activations.{i}" for i in (0, 2, 3, 7)]
    for i in vs.layers:
        assert torch.equal(tensors[f"layer_activations.{i}"], vs.vector(i))  # raw by default
    meta = json.loads(sidecar.read_text())
    assert meta["layer_type"] == "decoder_block" and meta["layers"] == [0, 2, 3, 7] and meta["unit"] is False
    assert meta["weight_hash"] == vs.weight_hash and "block i" in meta["layer_convention"]
    # the snippet of docs/interop.md: the dict a SteeringVector takes
    layer_activations = {int(k.rsplit(".", 1)[1]): v for k, v in load_file(path).items()}
    assert set(layer_activations) == set(vs.layers)


def test_plain_safetensors(tmp_path, vs):
    (path,) = export_vectors(vs, tmp_path / "evil.safetensors", fmt="safetensors", unit=True)
    tensors = load_file(path)
    assert sorted(tensors, key=int) == ["0", "2", "3", "7"]
    for i in vs.layers:
        torch.testing.assert_close(tensors[str(i)], vs.unit(i))
    with safe_open(path, "pt") as fh:
        meta = fh.metadata()
    assert meta["trait"] == "evil" and meta["unit"] == "True" and "0-indexed" in meta["layer_convention"]


def test_refusals(tmp_path, vs):
    with pytest.raises(ConfigError, match="format"):
        export_vectors(vs, tmp_path / "x", fmt="onnx")
    with pytest.raises(ConfigError, match="layers"):
        export_vectors(vs, tmp_path / "x", fmt="safetensors", layers=[1])


def _cli(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, _ = capsys.readouterr()
    return int(exc.value.code or 0), out


def test_cli_export(tmp_path, vs, capsys, monkeypatch):
    monkeypatch.setenv("DIFFLIB_MODELS_NO_PROGRESS", "1")
    src = vs.save(tmp_path / "evil")
    code, out = _cli(["persona", "export", "--vectors", str(src), "--format", "repeng", "--out",
                      str(tmp_path / "cv"), "--layers", "selected"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["layers"] == [3] and doc["files"] == [str(tmp_path / "cv.gguf")]
    _, _, count, tensors = _gguf(tmp_path / "cv.gguf")
    assert count == 1 and list(tensors) == ["direction.3"]
    code, out = _cli(["persona", "export", "--vectors", str(src), "--format", "steering-vectors", "--out",
                      str(tmp_path / "sv"), "--layers", "2-3", "--unit"], capsys)
    assert code == 0
    tensors = load_file(tmp_path / "sv.safetensors")
    assert sorted(tensors) == ["layer_activations.2", "layer_activations.3"]
    torch.testing.assert_close(tensors["layer_activations.2"], vs.unit(2))
    code, _ = _cli(["persona", "export", "--vectors", str(src), "--format", "pickle", "--out",
                    str(tmp_path / "p")], capsys)
    assert code == 2
