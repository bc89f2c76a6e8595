"""Crosscoder <-> dictionary_learning folders: exact round trip, and the file read with dictionary_learning's own
formulas (CrossCoder einsums of its crosscoder branch; AutoEncoder / AutoEncoderTopK / BatchTopKSAE of 0.1.0)."""

from __future__ import annotations

import json

import pytest
import torch

from difflib_models.crosscoder.config import CrosscoderConfig
from difflib_models.crosscoder.interop import (
    CONFIG_FILE,
    SCALES_FILE,
    WEIGHTS_FILE,
    export_dictionary_learning,
    import_dictionary_learning,
)
from difflib_models.crosscoder.model import Crosscoder
from difflib_models.errors import ConfigError


def _trained_like(activation: str, *, n_models: int = 2, n_layers: int = 1, exclusive: int = 0) -> Crosscoder:
    """A crosscoder with non-trivial weights, biases, normalisation scalars and threshold."""
    cfg = CrosscoderConfig(d_model=6, n_sources=n_models * n_layers, n_models=n_models, dict_size=24,
                           activation=activation, k=3, exclusive_latents=exclusive, exclusive_penalty=2.0, seed=3)
    cc = Crosscoder(cfg)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        cc.W_enc.add_(0.3 * torch.randn(cc.W_enc.shape, generator=gen))
        cc.W_dec.mul_(torch.rand(cc.W_dec.shape[0], 1, 1, generator=gen) * 5 + 0.5)
        cc.b_enc.copy_(0.2 * torch.randn(cfg.dict_size, generator=gen))
        cc.b_dec.copy_(torch.randn(cc.b_dec.shape, generator=gen))
        cc.norm_scale.copy_(torch.rand(cfg.n_sources, generator=gen) * 3 + 0.2)
        cc.theta.fill_(0.05)
    return cc.eval()


def _raw(cc: Crosscoder, batch: int = 50) -> torch.Tensor:
    gen = torch.Generator().manual_seed(11)
    return torch.randn(batch, cc.config.n_sources, cc.config.d_model, generator=gen) * 4


def _ours(cc: Crosscoder, x_raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        f = cc.encode(cc.normalize(x_raw))
        return f, cc.denormalize(cc.decode(f))


@pytest.mark.parametrize(("layout", "activation", "exclusive"), [
    ("crosscoder", "l1", 0), ("crosscoder", "l1", 2), ("sae", "l1", 0), ("sae", "topk", 0),
    ("sae", "batchtopk", 0), ("sae", "batchtopk", 2),
])
def test_round_trip_gives_the_same_encode_and_decode(tmp_path, layout, activation, exclusive):
    cc = _trained_like(activation, exclusive=exclusive)
    export_dictionary_learning(cc, tmp_path, layout=layout)
    back = import_dictionary_learning(tmp_path).eval()
    assert back.config == cc.config
    x = _raw(cc)
    f0, y0 = _ours(cc, x)
    f1, y1 = _ours(back, x)
    assert torch.equal(f0 > 0, f1 > 0)  # the same latents fire
    torch.testing.assert_close(f1, f0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(back.norm_scale, cc.norm_scale)
    if activation == "batchtopk":
        torch.testing.assert_close(back.theta, cc.theta)
    if exclusive:  # dedicated latents keep exactly-zero weights to the other model
        assert torch.count_nonzero(back.enc_weight()[1, :, :2]) == 0
        assert torch.count_nonzero(back.dec_weight()[2:4, 0]) == 0


def test_crosscoder_layout_is_what_dictionary_learning_crosscoder_computes(tmp_path):
    cc = _trained_like("l1", n_models=2, n_layers=2)
    export_dictionary_learning(cc, tmp_path)
    state = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)
    assert sorted(state) == ["decoder.bias", "decoder.weight", "encoder.bias", "encoder.weight"]
    assert state["encoder.weight"].shape == (4, 6, 24) and state["decoder.weight"].shape == (4, 24, 6)
    assert state["decoder.bias"].shape == (4, 6) and state["encoder.bias"].shape == (24,)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert meta["trainer"]["dict_class"] == "CrossCoder" and meta["trainer"]["num_layers"] == 4
    x = _raw(cc)  # RAW activations: the normalisation is folded into the weights
    f = torch.relu(torch.einsum("bld,ldf->bf", x, state["encoder.weight"]) + state["encoder.bias"])
    x_hat = torch.einsum("bf,lfd->bld", f, state["decoder.weight"]) + state["decoder.bias"]
    f0, y0 = _ours(cc, x)
    torch.testing.assert_close(f, f0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x_hat, y0, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation", ["l1", "topk", "batchtopk"])
def test_sae_layout_is_what_dictionary_learning_010_computes(tmp_path, activation):
    cc = _trained_like(activation)
    export_dictionary_learning(cc, tmp_path, layout="sae")
    state = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    x = _raw(cc)
    flat = x.reshape(x.shape[0], -1)
    bias = state["bias" if activation == "l1" else "b_dec"]
    post = torch.relu((flat - bias) @ state["encoder.weight"].T + state["encoder.bias"])
    if activation == "l1":
        assert meta["trainer"]["dict_class"] == "AutoEncoder"
        f = post
    elif activation == "topk":
        assert meta["trainer"]["dict_class"] == "AutoEncoderTopK" and int(state["k"]) == 3
        top = post.topk(3, dim=-1)
        f = torch.zeros_like(post).scatter_(-1, top.indices, top.values)
    else:
        assert meta["trainer"]["dict_class"] == "BatchTopKSAE" and meta["trainer"]["k"] == 3
        f = post * (post > state["threshold"])
    x_hat = f @ state["decoder.weight"].T + bias
    f0, y0 = _ours(cc, x)
    assert torch.equal(f > 0, f0 > 0)
    torch.testing.assert_close(x_hat.reshape_as(x), y0, rtol=1e-4, atol=1e-4)


def test_foreign_folder_without_our_sidecar_imports_with_unit_scales(tmp_path):
    cc = _trained_like("l1")
    export_dictionary_learning(cc, tmp_path)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    del meta["difflib_models"]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))
    (tmp_path / SCALES_FILE).unlink()
    back = import_dictionary_learning(tmp_path)
    assert back.config.n_sources == 2 and back.config.activation == "l1"
    assert torch.equal(back.norm_scale, torch.ones(2))
    x = _raw(cc)
    with torch.no_grad():
        y1 = back.decode(back.encode(x))  # reads raw activations directly
    torch.testing.assert_close(y1, _ours(cc, x)[1], rtol=1e-5, atol=1e-5)


def test_refusals(tmp_path):
    with pytest.raises(ConfigError, match="activation"):
        export_dictionary_learning(_trained_like("batchtopk"), tmp_path / "a", layout="crosscoder")
    with pytest.raises(ConfigError, match="layout"):
        export_dictionary_learning(_trained_like("l1"), tmp_path / "b", layout="hub")
    with pytest.raises(ConfigError, match="ae.pt"):
        import_dictionary_learning(tmp_path / "missing")
    export_dictionary_learning(_trained_like("l1"), tmp_path / "c")
    meta = json.loads((tmp_path / "c" / CONFIG_FILE).read_text())
    meta["trainer"]["dict_class"] = "GatedAutoEncoder"
    (tmp_path / "c" / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="dict_class"):
        import_dictionary_learning(tmp_path / "c")
    export_dictionary_learning(_trained_like("l1"), tmp_path / "d")
    (tmp_path / "d" / WEIGHTS_FILE).write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="ae.pt"):
        import_dictionary_learning(tmp_path / "d")


@pytest.mark.parametrize("dict_class", ["AutoEncoderTopK", "BatchTopKSAE"])
def test_sae_trained_by_dictionary_learning_imports(tmp_path, dict_class):
    """A unit-norm-decoder SAE as dictionary_learning's trainers save it (no sidecar) encodes as there."""
    gen = torch.Generator().manual_seed(2)
    n, dim, k = 40, 12, 3
    w_dec = torch.randn(dim, n, generator=gen)
    w_dec = w_dec / w_dec.norm(dim=0, keepdim=True)
    state = {"encoder.weight": torch.randn(n, dim, generator=gen), "encoder.bias": torch.randn(n, generator=gen) * 0.1,
             "decoder.weight": w_dec, "b_dec": torch.randn(dim, generator=gen), "k": torch.tensor(k, dtype=torch.int32),
             "threshold": torch.tensor(0.8)}
    torch.save(state, tmp_path / WEIGHTS_FILE)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"trainer": {"dict_class": dict_class, "k": k}}))
    cc = import_dictionary_learning(tmp_path).eval()
    assert (cc.config.n_sources, cc.config.d_model, cc.config.dict_size, cc.config.k) == (1, dim, n, k)
    x = torch.randn(30, dim, generator=gen)
    post = torch.relu((x - state["b_dec"]) @ state["encoder.weight"].T + state["encoder.bias"])
    if dict_class == "AutoEncoderTopK":
        top = post.topk(k, dim=-1)
        f = torch.zeros_like(post).scatter_(-1, top.indices, top.values)
    else:
        f = post * (post > state["threshold"])
    with torch.no_grad():
        f_ours = cc.encode(x[:, None, :])
        y_ours = cc.decode(f_ours)[:, 0]
    assert torch.equal(f_ours > 0, f > 0)
    torch.testing.assert_close(f_ours, f, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y_ours, f @ w_dec.T + state["b_dec"], rtol=1e-5, atol=1e-5)


def test_cli_export(tmp_path, capsys):
    from difflib_models.cli.app import main

    cc = _trained_like("batchtopk")
    cc.save(tmp_path / "run" / "crosscoder")

    def run(*argv):
        with pytest.raises(SystemExit) as exc:
            main(["crosscoder", "export", "-c", str(tmp_path / "run"), *argv])
        return int(exc.value.code or 0), capsys.readouterr().out

    code, out = run("-o", str(tmp_path / "dl"), "--layout", "sae")
    assert code == 0 and json.loads(out)["dict_class"] == "BatchTopKSAE"
    back = import_dictionary_learning(tmp_path / "dl").eval()
    x = _raw(cc)
    torch.testing.assert_close(_ours(back, x)[1], _ours(cc, x)[1], rtol=1e-5, atol=1e-5)
    code, _ = run("-o", str(tmp_path / "dl2"))  # CrossCoder layout: ReLU only
    assert code == 2 and not (tmp_path / "dl2" / WEIGHTS_FILE).exists()
