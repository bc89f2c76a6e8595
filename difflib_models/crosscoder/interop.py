"""Crosscoders to and from dictionary_learning's on-disk format (``ae.pt`` + ``config.json`` in one folder).

dictionary_learning saves a dictionary as ``ae.pt`` (``torch.save`` of a plain tensor state dict, read back with
``torch.load``) and ``config.json`` whose ``trainer.dict_class`` names the class; ``utils.load_dictionary(folder)``
dispatches on it. Two layouts are written:

- ``layout="crosscoder"``: the ``CrossCoder`` class of dictionary_learning's crosscoder branch (PR #28, the
  science-of-finetuning fork): ``encoder.weight [L, d, n]``, ``encoder.bias [n]``, ``decoder.weight [L, n, d]``,
  ``decoder.bias [L, d]``; ``CrossCoder.from_pretrained(folder / "ae.pt")`` infers the shape from
  ``encoder.weight``. Its "layers" axis is our sources axis (models x layers, source = model * n_layers + layer).
  ReLU only, so an ``l1`` crosscoder; TopK / BatchTopK are refused (use the ``sae`` layout).
- ``layout="sae"``: a flat SAE over the concatenated sources ``x.reshape(B, M * d)``, in the classes of the PyPI
  release 0.1.0: ``AutoEncoder`` (l1), ``AutoEncoderTopK`` (topk), ``BatchTopKSAE`` (batchtopk, with its
  ``threshold``). The latents' ranking weight (summed decoder norm / sparsity price) is folded into the
  encoder, so their codes are ours times that weight and their top-k / threshold picks the same latents.

In both layouts the per-source normalisation scalars are folded into the weights: the exported dictionary reads
RAW activations and reconstructs raw activations. ``difflib_models.safetensors`` beside ``ae.pt`` keeps the
scalars that were folded (and our config in ``config.json["difflib_models"]``), so
:func:`import_dictionary_learning` restores the crosscoder exactly; a folder without it (trained by
dictionary_learning) is imported with unit scalars.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from difflib_models.crosscoder.config import CrosscoderConfig
from difflib_models.crosscoder.model import Crosscoder
from difflib_models.errors import ConfigError, IdentityMismatchError, bad_value
from difflib_models.io import atomic_write, atomic_write_json

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "ae.pt"
CONFIG_FILE = "config.json"
SCALES_FILE = "difflib_models.safetensors"
FORMAT = "difflib_models.crosscoder.dictionary_learning/1"
LAYOUTS = ("crosscoder", "sae")
SAE_CLASSES = {"l1": "AutoEncoder", "topk": "AutoEncoderTopK", "batchtopk": "BatchTopKSAE"}
_ACTIVATION_OF = {**{v: k for k, v in SAE_CLASSES.items()}, "CrossCoder": "l1"}


# ------------------------------------------------------------------------------------------------ export
def _effective(cc: Crosscoder) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Raw-activation weights in float64: enc [M, d, n], b_enc [n], dec [n, M, d], b_dec [M, d], code scale [n]."""
    with torch.no_grad():
        s = cc.norm_scale.double()
        enc = cc.enc_weight().double() * s[:, None, None]
        dec = cc.dec_weight().double() / s[None, :, None]
        b_dec = cc.b_dec.double() / s[:, None]
        code = cc._score_weight().double() if cc.config.activation != "l1" else torch.ones(cc.n_latents).double()
    return enc, cc.b_enc.detach().double(), dec, b_dec, code


def _state_crosscoder(cc: Crosscoder) -> dict[str, Tensor]:
    if cc.config.activation != "l1":
        raise ConfigError(
            bad_value("activation", cc.config.activation, ["l1"],
                      "dictionary_learning's CrossCoder is ReLU-only; export TopK / BatchTopK crosscoders with "
                      "layout='sae' (AutoEncoderTopK / BatchTopKSAE over the concatenated sources)")
        )
    enc, b_enc, dec, b_dec, _ = _effective(cc)
    return {
        "encoder.weight": enc,
        "encoder.bias": b_enc,
        "decoder.weight": dec.permute(1, 0, 2),
        "decoder.bias": b_dec,
    }


def _state_sae(cc: Crosscoder) -> dict[str, Tensor]:
    enc, b_enc, dec, b_dec, code = _effective(cc)
    n = cc.n_latents
    w_enc = enc.reshape(-1, n).T * code[:, None]  # [n, D]
    w_dec = (dec.reshape(n, -1) / code[:, None]).T  # [D, n]
    bias = b_dec.reshape(-1)
    # dictionary_learning encodes relu(W (x - b_dec) + b): fold b_dec back into the encoder bias
    state = {"encoder.weight": w_enc, "encoder.bias": code * b_enc + w_enc @ bias, "decoder.weight": w_dec}
    if cc.config.activation == "l1":
        state["bias"] = bias
        return state
    state["b_dec"] = bias
    state["k"] = torch.tensor(cc.config.k, dtype=torch.int32)
    state["threshold"] = cc.theta.detach().float().clone()
    return state


def export_dictionary_learning(cc: Crosscoder, directory: str | Path, *, layout: str = "crosscoder") -> Path:
    """Write ``cc`` into ``directory`` as dictionary_learning's ``ae.pt`` + ``config.json`` (see module doc)."""
    from safetensors.torch import save_file

    if layout not in LAYOUTS:
        raise ConfigError(bad_value("layout", layout, LAYOUTS))
    cfg = cc.config
    if layout == "crosscoder":
        state = _state_crosscoder(cc)
        trainer: dict[str, Any] = {"dict_class": "CrossCoder", "activation_dim": cfg.d_model,
                                   "dict_size": cfg.dict_size, "num_layers": cfg.n_sources}
    else:
        state = _state_sae(cc)
        trainer = {"dict_class": SAE_CLASSES[cfg.activation], "activation_dim": cfg.d_model * cfg.n_sources,
                   "dict_size": cfg.dict_size}
        if cfg.activation != "l1":
            trainer["k"] = cfg.k
    if cfg.activation == "batchtopk" and float(cc.theta) < 0:
        logger.warning("exporting a BatchTopK crosscoder whose threshold was never estimated (theta < 0): "
                       "dictionary_learning's BatchTopKSAE will keep every positive latent")
    state = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    _, _, _, _, code = _effective(cc)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / WEIGHTS_FILE, lambda p: torch.save(state, p))
    scales = {"norm_scale": cc.norm_scale.detach().float().cpu().contiguous(),
              "code_scale": (code if layout == "sae" else torch.ones_like(code)).float().contiguous()}
    atomic_write(directory / SCALES_FILE, lambda p: save_file(scales, str(p), metadata={"format": FORMAT}))
    atomic_write_json(directory / CONFIG_FILE, {
        "trainer": trainer,
        "difflib_models": {"format": FORMAT, "layout": layout, "config": cfg.to_dict(),
                           "source_order": "source = model * n_layers + layer"},
    })
    return directory


# ------------------------------------------------------------------------------------------------ import
def _read(directory: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise ConfigError(bad_value("directory", str(directory), f"a folder with {WEIGHTS_FILE} and {CONFIG_FILE}",
                                    "pass a dictionary_learning save_dir or an export_dictionary_learning folder"))
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
        state = torch.load(w_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # bad JSON, truncated file, or not a weights-only tensor state dict
        raise ConfigError(bad_value(str(directory), type(exc).__name__, "a readable ae.pt + config.json",
                                    str(exc)[:200])) from exc
    if not isinstance(meta, dict) or not isinstance(state, dict):
        raise ConfigError(bad_value(str(directory), "not a mapping", "a state dict and a JSON object"))
    state = {k.split("_orig_mod.")[-1]: v for k, v in state.items()}  # saved from a torch.compile'd module
    return meta, state


def _need(state: dict[str, Tensor], *names: str) -> list[Tensor]:
    missing = [n for n in names if n not in state]
    if missing:
        raise ConfigError(bad_value("ae.pt keys", sorted(state), f"containing {', '.join(names)}"))
    return [state[n].detach().double() for n in names]


def import_dictionary_learning(directory: str | Path) -> Crosscoder:
    """Load a dictionary_learning folder (ours or one it trained) as a :class:`Crosscoder`.

    Our exports come back exactly. A folder dictionary_learning trained has no scalars to unfold: a
    ``CrossCoder`` becomes an l1 crosscoder over ``L`` models (one source each), an SAE a one-source crosscoder;
    TopK / BatchTopK pick the same latents as there when the decoder columns have unit norm (as its trainers
    keep them), since we rank by activation x decoder norm."""
    from safetensors.torch import load_file

    directory = Path(directory)
    meta, state = _read(directory)
    dict_class = (meta.get("trainer") or {}).get("dict_class")
    if dict_class not in _ACTIVATION_OF:
        raise ConfigError(bad_value("trainer.dict_class", dict_class, sorted(_ACTIVATION_OF)))
    ours = meta.get("difflib_models") if isinstance(meta.get("difflib_models"), dict) else None
    scales = load_file(str(directory / SCALES_FILE)) if ours and (directory / SCALES_FILE).is_file() else {}

    if dict_class == "CrossCoder":
        enc, b_enc, dec_l, b_dec = _need(state, "encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias")
        m, d, n = enc.shape
        dec = dec_l.permute(1, 0, 2)
        guess = {"d_model": d, "n_sources": m, "n_models": m, "dict_size": n, "activation": "l1"}
        theta = None
    else:
        bias_key = "bias" if dict_class == "AutoEncoder" else "b_dec"
        w_enc, b_e, w_dec, bias = _need(state, "encoder.weight", "encoder.bias", "decoder.weight", bias_key)
        n, big_d = w_enc.shape
        guess = {"d_model": big_d, "n_sources": 1, "n_models": 1, "dict_size": n,
                 "activation": _ACTIVATION_OF[dict_class]}
        if dict_class != "AutoEncoder":
            guess["k"] = int(state["k"]) if "k" in state else int(meta["trainer"].get("k", 1))
        theta = state.get("threshold")
        enc, b_enc, dec, b_dec = w_enc.T, b_e - w_enc @ bias, w_dec.T, bias
    config = CrosscoderConfig.from_dict(ours["config"]) if ours else CrosscoderConfig(**guess)
    m, d, n = config.n_sources, config.d_model, config.dict_size
    if enc.numel() != m * d * n or b_enc.shape != (n,) or dec.numel() != n * m * d or b_dec.numel() != m * d:
        raise IdentityMismatchError(bad_value("ae.pt shapes", tuple(enc.shape), [(m, d, n)],
                                              "the weights do not match the config stored beside them"))
    s = scales["norm_scale"].double() if "norm_scale" in scales else torch.ones(m, dtype=torch.float64)
    code = scales["code_scale"].double() if "code_scale" in scales else torch.ones(n, dtype=torch.float64)
    enc = enc.reshape(m, d, n) / code / s[:, None, None]
    dec = dec.reshape(n, m, d) * code[:, None, None] * s[None, :, None]
    b_dec = b_dec.reshape(m, d) * s[:, None]
    model = Crosscoder(config)
    with torch.no_grad():
        model.W_enc.copy_(enc)
        model.W_dec.copy_(dec)
        model.b_enc.copy_(b_enc / code)
        model.b_dec.copy_(b_dec)
        model.norm_scale.copy_(s)
        if theta is not None and config.activation == "batchtopk":
            model.theta.copy_(theta.float())
    return model
