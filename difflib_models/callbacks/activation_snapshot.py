"""ActivationSnapshot: activation stores of a fixed probe set taken during training.

One snapshot before the first optimizer step (the true base), every ``every_n_steps`` optimizer steps (keyed on
``trainer.global_step``, so gradient accumulation does not multiply snapshots), every ``every_n_epochs`` epochs and
at the end of training. Each snapshot is an activation store (``store/``) under one run directory::

    <out_dir>/index.json              # steps, kinds, paths, token counts (written after every snapshot)
    <out_dir>/step-00000000/          # store taken before the first optimizer step
    <out_dir>/step-00000004/ ...

The probe forward runs in eval mode (dropout off; LoRA adapters stay active) under ``no_grad`` and restores each
submodule's training flag. Under DDP/FSDP the probe forward runs on every rank and only global rank 0 writes; a
barrier follows every snapshot. ``state_dict`` holds the done steps only, so resuming from a checkpoint continues
with no duplicate and no missing snapshot (stores of steps the checkpoint does not know about are retaken).

Use ``ActivationSnapshot`` (``lightning.pytorch``) from :mod:`difflib_models.callbacks`, or the
``pytorch_lightning`` twin from :mod:`difflib_models.callbacks.pytorch_lightning`.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from difflib_models.callbacks import _core
from difflib_models.capture.capture import iter_capture
from difflib_models.capture.positions import parse_positions
from difflib_models.capture.prompts import PromptRecord, load_prompt_records, render_messages
from difflib_models.errors import ConfigError, bad_value
from difflib_models.integrations import loggers as tracking
from difflib_models.io import atomic_write_json
from difflib_models.models.compat import tokenizer_name, vocab_hash
from difflib_models.models.hookpoints import LAYER_CONVENTION, parse_layers, resolve_blocks
from difflib_models.store.writer import ActivationStoreWriter

log = logging.getLogger(__name__)

STATE_VERSION = 1
INDEX_FILE = "index.json"


class ActivationSnapshotCore:
    """Take activation snapshots of a probe set before, during and after training.

    Args:
        prompts: built-in prompt set name, a ``.txt``/``.jsonl`` file, or a list of texts. Chat records of a
            ``.jsonl`` (``messages``) are rendered with the tokenizer's chat template at ``setup`` (with the
            generation prompt when the last message is not the assistant's); a tokenizer without a template falls
            back to ``role: content`` lines, with a warning.
        layers: decoder blocks to capture (default ``"mid"``; ``"all"``, ``"0,2"``, ``-1`` or a list of ints).
        positions: token positions (``"all"``, ``"first_k:K"``; see ``capture.positions``).
        every_n_steps: snapshot every N optimizer steps (None: off).
        every_n_epochs: snapshot at the end of every N-th epoch (None: off).
        at_start: snapshot before the first optimizer step.
        at_end: snapshot when training ends.
        out_dir: run directory (default ``<default_root_dir>/difflib_models/snapshots``).
        batch_size: probe batch size.
        max_length: probe truncation length in tokens.
        model_attr: attribute of the LightningModule holding the transformers/peft model (default ``model``).
        tokenizer: tokenizer path or hub id (default: the LightningModule's ``tokenizer`` attribute).
        hook_override: dotted path of the decoder block list, when it cannot be found automatically.
    """

    def __init__(
        self,
        prompts: str | list[str] = "generic",
        layers: str | int | list[int] = "mid",
        positions: str = "all",
        every_n_steps: int | None = None,
        every_n_epochs: int | None = None,
        at_start: bool = True,
        at_end: bool = True,
        out_dir: str | None = None,
        batch_size: int = 8,
        max_length: int = 64,
        model_attr: str | None = None,
        tokenizer: str | None = None,
        hook_override: str | None = None,
    ) -> None:
        self.every_n_steps = _core.check_positive_int("every_n_steps", every_n_steps)
        self.every_n_epochs = _core.check_positive_int("every_n_epochs", every_n_epochs)
        self.batch_size = _core.check_positive_int("batch_size", batch_size, allow_none=False)
        self.max_length = _core.check_positive_int("max_length", max_length, allow_none=False)
        if not (at_start or at_end or self.every_n_steps or self.every_n_epochs):
            raise ConfigError(
                bad_value("every_n_steps", every_n_steps, hint="with at_start=False, at_end=False and no "
                          "every_n_steps/every_n_epochs the callback would never take a snapshot.")
            )
        parse_positions(positions)  # validates
        self.positions = positions
        self.records = _load_records(prompts)
        self.texts = [r.render(None) for r in self.records]  # re-rendered with the tokenizer in setup()
        self.prompts_spec = prompts if isinstance(prompts, str) else f"<list of {len(self.texts)}>"
        self.layers_spec = layers
        self.at_start = bool(at_start)
        self.at_end = bool(at_end)
        self.out_dir = out_dir
        self.model_attr = model_attr
        self.tokenizer_spec = tokenizer
        self.hook_override = hook_override
        # runtime state
        self.layers: list[int] = []
        self.run_dir: Path | None = None
        self._done: dict[int, dict[str, Any]] = {}
        self._model: Any = None
        self._tokenizer: Any = None
        self._loaded: Any = None
        self._vocab: tuple[str, str] | None = None
        self._probe_tokenizer: ProbeTokenizer | None = None

    # ---------------------------------------------------------------------------------------------- identity
    @property
    def state_key(self) -> str:
        return _core.generate_state_key(
            self, prompts=self.prompts_spec, layers=self.layers_spec, positions=self.positions,
            every_n_steps=self.every_n_steps, every_n_epochs=self.every_n_epochs, out_dir=self.out_dir,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "done": [dict(v) for _, v in sorted(self._done.items())],
            "run_dir": str(self.run_dir) if self.run_dir is not None else None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version = state_dict.get("version", 0)
        if version > STATE_VERSION:
            log.warning("ActivationSnapshot state version %s is newer than %s; loading what is known",
                        version, STATE_VERSION)
        self._done = {int(e["step"]): dict(e) for e in state_dict.get("done", []) if "step" in e}

    @property
    def done_steps(self) -> list[int]:
        return sorted(self._done)

    # ------------------------------------------------------------------------------------------------- hooks
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        self._model = _core.find_hf_model(pl_module, self.model_attr)
        self._tokenizer = _core.find_tokenizer(pl_module, self.tokenizer_spec)
        self.texts, templated = render_records(self.records, self._tokenizer)
        self._probe_tokenizer = ProbeTokenizer(self._tokenizer, self.texts, templated)
        n_layers = resolve_blocks(self._model, override=self.hook_override).n_layers
        self.layers = parse_layers(self.layers_spec, n_layers)
        self.run_dir = _core.run_dir(trainer, self.out_dir, "snapshots")

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.at_start and trainer.global_step == 0:
            self._snapshot(trainer, "start")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0:
            self._snapshot(trainer, "step")

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._snapshot(trainer, "epoch")

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.at_end:
            self._snapshot(trainer, "end")
        if _core.is_global_zero(trainer) and self.run_dir is not None:
            self._log_to_mlflow(trainer)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if _core.is_global_zero(trainer) and self.run_dir is not None and self._done:
            self._write_index()

    # ---------------------------------------------------------------------------------------------- snapshot
    def take_snapshot(self, trainer: Any, kind: str = "manual") -> dict[str, Any]:
        """Take a snapshot now (all ranks must call it). Returns its index entry."""
        return self._snapshot(trainer, kind)

    def _snapshot(self, trainer: Any, kind: str) -> dict[str, Any]:
        step = int(trainer.global_step)
        entry = self._done.get(step)
        if entry is not None:
            if kind not in entry["kinds"]:
                entry["kinds"].append(kind)
                if _core.is_global_zero(trainer):
                    self._write_index()
            return entry
        assert self.run_dir is not None, "setup() was not called"
        rank0 = _core.is_global_zero(trainer)
        rel = f"step-{step:08d}"
        t0 = time.perf_counter()
        loaded = self._loaded_model(rank0)
        with _core.probe_mode(self._model):
            if rank0:
                path = self.run_dir / rel
                if path.exists():  # a store of a crashed run the checkpoint knows nothing about: retake it
                    shutil.rmtree(path)
                n_tokens = self._write_store(loaded, path, step, kind)
            else:
                n_tokens = 0
                for _ids, batch in iter_capture(self._probe_view(loaded), self.texts, self.layers, batch_size=self.batch_size,
                                                max_length=self.max_length, positions=self.positions):
                    n_tokens += int(batch.token_ids.numel())
        entry = {
            "step": step,
            "epoch": int(trainer.current_epoch),
            "kinds": [kind],
            "path": rel,
            "n_tokens": n_tokens,
            "seconds": round(time.perf_counter() - t0, 4),
        }
        self._done[step] = entry
        if rank0:
            self._write_index()
            log.info("activation snapshot at step %d (%s): %d tokens -> %s", step, kind, n_tokens, rel)
        _core.barrier(trainer, "difflib_activation_snapshot")
        return entry

    def _loaded_model(self, rank0: bool) -> Any:
        if self._loaded is None:
            self._loaded = _core.loaded_view(self._model, self._tokenizer, hook_override=self.hook_override)
        else:  # weights changed since the last snapshot; every rank hashes (under FSDP the hash gathers the
            self._loaded.refresh_identity()  # sharded weights: a collective), only rank 0 records it
        return self._loaded

    def _probe_view(self, loaded: Any) -> Any:
        """What ``iter_capture`` needs: the model, its hook points and the caching probe tokenizer."""
        assert self._probe_tokenizer is not None, "setup() was not called"
        return SimpleNamespace(model=loaded.model, tokenizer=self._probe_tokenizer, hook_points=loaded.hook_points)

    def _write_store(self, loaded: Any, path: Path, step: int, kind: str) -> int:
        if self._vocab is None:
            self._vocab = (tokenizer_name(loaded.tokenizer), vocab_hash(loaded.tokenizer))
        n_tokens = 0
        with ActivationStoreWriter(
            path, sides=["model"], layers=self.layers, d_model=loaded.d_model,
            identities={"model": loaded.identity.to_dict()}, tokenizer_name=self._vocab[0],
            vocab_hash=self._vocab[1], hook_points=loaded.hook_points.to_dict(),
            extra={"callback": "ActivationSnapshot", "step": step, "kind": kind, "positions": self.positions},
        ) as writer:
            for ids, batch in iter_capture(self._probe_view(loaded), self.texts, self.layers, batch_size=self.batch_size,
                                           max_length=self.max_length, positions=self.positions):
                writer.add(ids, {"model": batch})
                n_tokens += int(batch.token_ids.numel())
        return n_tokens

    def index(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "kind": "activation_snapshots",
            "prompts": self.prompts_spec,
            "n_prompts": len(self.texts),
            "layers": self.layers,
            "positions": self.positions,
            "layer_convention": LAYER_CONVENTION,
            "snapshots": [dict(v) for _, v in sorted(self._done.items())],
        }

    def _write_index(self) -> Path:
        assert self.run_dir is not None
        return atomic_write_json(self.run_dir / INDEX_FILE, self.index())

    def _log_to_mlflow(self, trainer: Any) -> None:
        loggers = _core.artifact_loggers(trainer)
        if not loggers or not self._done:
            return
        steps = self.done_steps
        note = (f"**Activation snapshots**: {len(steps)} stores at steps {', '.join(map(str, steps))}; "
                f"layers {self.layers}, {len(self.texts)} probe prompts. Run dir: `{self.run_dir}`.")
        for lg in loggers:
            tracking.log_artifact(lg, self.run_dir / INDEX_FILE, artifact_path="difflib_models/snapshots")
            tracking.set_tags(lg, {"difflib.snapshots.dir": str(self.run_dir),
                              "difflib.snapshots.steps": ",".join(map(str, steps))})
            tracking.append_run_note(lg, "activation_snapshot", note)


def _load_records(prompts: str | list[str]) -> list[Any]:
    if isinstance(prompts, str):
        records = list(load_prompt_records(prompts))
    elif isinstance(prompts, list | tuple):
        records = [PromptRecord(text=str(p)) for p in prompts]
    else:
        raise ConfigError(bad_value("prompts", prompts, "a built-in prompt set name, a .txt/.jsonl file, or a list "
                                    "of texts"))
    records = [r for r in records if r.text is None or r.text.strip()]
    if not records:
        raise ConfigError(bad_value("prompts", prompts, hint="the probe set is empty; give at least one prompt."))
    return records


def render_records(records: list[Any], tokenizer: Any) -> tuple[list[str], list[bool]]:
    """Probe texts and, per text, whether it was rendered by the chat template.

    Plain texts are kept as given; chat records go through the tokenizer's chat template (its text already holds
    the special tokens it wants, such as BOS). Without a chat template, chat records become ``role: content``
    lines (a warning says so) and count as plain texts.
    """
    n_chat = sum(r.messages is not None for r in records)
    templated = n_chat > 0 and bool(getattr(tokenizer, "chat_template", None))
    if n_chat and not templated:
        log.warning("ActivationSnapshot: %d chat probe prompts but the tokenizer has no chat template; rendering "
                    "them as 'role: content' lines (set tokenizer.chat_template to probe the chat format)", n_chat)
    texts = [r.text if r.messages is None else render_messages(list(r.messages), tokenizer if templated else None)
             for r in records]
    return texts, [templated and r.messages is not None for r in records]


class ProbeTokenizer:
    """The training tokenizer as the capture sees it: ids cached per probe text (the probe set is tokenised once
    per run, not at every snapshot), and no extra special tokens on chat-templated texts (so their ids equal the
    chat template's ids; the capture otherwise tokenises with special tokens, which would add a second BOS).
    Every other attribute is the wrapped tokenizer's."""

    def __init__(self, tokenizer: Any, texts: list[str], templated: list[bool]) -> None:
        self._tokenizer = tokenizer
        self._templated = {t for t, flag in zip(texts, templated, strict=True) if flag}
        self._cache: dict[tuple[str, bool, int | None], list[int]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)

    def __call__(self, texts: str | list[str], *, truncation: bool = False, max_length: int | None = None,
                 **kwargs: Any) -> dict[str, Any]:
        single = isinstance(texts, str)
        out = []
        for text in [texts] if single else texts:
            special = text not in self._templated and bool(kwargs.get("add_special_tokens", True))
            key = (text, special, max_length if truncation else None)
            ids = self._cache.get(key)
            if ids is None:
                ids = list(self._tokenizer(text, add_special_tokens=special, truncation=truncation,
                                           max_length=max_length)["input_ids"])
                self._cache[key] = ids
            out.append(list(ids))
        return {"input_ids": out[0] if single else out}


def __getattr__(name: str) -> Any:
    """``ActivationSnapshot`` (the ``lightning.pytorch`` class of :mod:`difflib_models.callbacks.lightning`), kept importable from
    this module; Lightning is imported on first use."""
    if name == "ActivationSnapshot":
        from difflib_models.callbacks.lightning import ActivationSnapshot

        return ActivationSnapshot
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
