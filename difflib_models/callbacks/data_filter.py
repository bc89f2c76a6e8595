"""DataFilterCallback: score the training set with the persona filter before fit and train on the kept subset.

A callback cannot drop samples from a batch in flight, so filtering happens on the data set: wrap your chat rows in
:class:`FilterableDataset` (map-style; ``transform`` turns a row into model inputs) and expose it as an attribute
of the LightningModule or DataModule (``dataset_attr``, default ``train_dataset``) that ``train_dataloader()``
uses. In ``on_fit_start`` (before the dataloader is built) every row is scored by projection difference onto the
persona vector (persona/filtering/scoring.py; ``proxy`` by default, through the base model) and the flagged rows are
hidden from the wrapper. With ``rescore_every_n_epochs`` the current model re-scores the full set at the end of
those epochs; the next epoch sees the new subset when the Trainer reloads its dataloaders
(``Trainer(reload_dataloaders_every_n_epochs=1)``, checked up front).

Nothing is dropped silently: each round writes ``scores.jsonl``, ``summary.json``, ``kept.jsonl`` and
``flagged.jsonl`` to ``<out_dir>/round-<k>-epoch-<e>/`` (default out_dir
``<default_root_dir>/difflib_models/data_filter``) and logs ``data_filter/n_flagged``. Under DDP every rank scores
(FSDP needs the forward on all ranks) and rank 0's flags are broadcast, so every rank keeps the same subset.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from difflib_models.callbacks import _core
from difflib_models.errors import ConfigError, bad_value
from difflib_models.files import load_jsonl
from difflib_models.models.hookpoints import check_layers
from difflib_models.persona.extraction.vectors import PersonaVectorSet, vector_paths
from difflib_models.persona.filtering.journal import ScoreJournal
from difflib_models.persona.filtering.readout import readout_of
from difflib_models.persona.filtering.scoring import (
    FilterConfig,
    default_method,
    filter_samples,
    read_chat_jsonl,
    samples_from_rows,
    write_outputs,
)

log = logging.getLogger(__name__)

STATE_VERSION = 1


class FilterableDataset(torch.utils.data.Dataset):
    """Map-style view of chat rows (``{"messages": [...], "id": ...}``) with a mutable set of hidden rows.

    ``len()`` and indexing cover the kept rows only; ``transform(row)`` (e.g. tokenization) is applied per item.
    ``set_flagged(flags)`` replaces the hidden set; ``kept_indices`` are positions in ``rows``."""

    def __init__(self, rows: Sequence[dict[str, Any]], transform: Callable[[dict[str, Any]], Any] | None = None
                 ) -> None:
        if not rows:
            raise ConfigError(bad_value("rows", [], "at least one chat row"))
        self.rows = list(rows)
        self.transform = transform
        self.kept_indices: list[int] = list(range(len(self.rows)))

    def set_flagged(self, flagged: Sequence[bool]) -> None:
        if len(flagged) != len(self.rows):
            raise ConfigError(bad_value("flagged", f"{len(flagged)} values", f"{len(self.rows)} (one per row)"))
        self.kept_indices = [i for i, f in enumerate(flagged) if not f]

    def __len__(self) -> int:
        return len(self.kept_indices)

    def __getitem__(self, i: int) -> Any:
        row = self.rows[self.kept_indices[i]]
        return self.transform(row) if self.transform is not None else row


class _CurrentModel:
    """A LoadedModel-like view that scores with the model as it is now (LoRA active, no base view)."""

    def __init__(self, loaded: Any) -> None:
        self.model, self.tokenizer, self.identity = loaded.model, loaded.tokenizer, loaded.identity
        self.d_model = loaded.d_model
        self.is_peft = False


class DataFilterCore:
    """Filter the training set by persona projection difference before fit (and optionally every N epochs).

    Args:
        vectors: persona vector file of THIS model.
        layer: block (default: the file's filter-validated readout, one block or a stacked span of blocks, else
            its selected layer).
        method: ``proxy`` (no generation), ``exact`` or ``raw`` (default: the file's filter-validated method,
            else ``proxy``).
        mode: ``report`` (default: flag nothing, write the scores; like ``persona filter`` without a selection
            option), ``threshold`` (drop rows above the percentile of ``reference``, or of the data itself without
            one), ``top_k`` or ``top_frac``. Rows are dropped only when a dropping mode is asked for.
        percentile, top_k, top_frac: selection parameters (see persona/filtering/scoring.py).
        reference: chat JSONL of clean reference data for ``threshold`` mode.
        dataset_attr: attribute of the LightningModule or DataModule holding the FilterableDataset.
        rescore_every_n_epochs: re-score with the current model at the end of every N-th epoch (None: once).
        batch_size, max_length: scoring batch size and token budget.
        out_dir, model_attr, tokenizer: as for ActivationSnapshot.
    """

    def __init__(
        self,
        vectors: str,
        layer: int | None = None,
        method: str | None = None,
        mode: str = "report",
        percentile: float = 95.0,
        top_k: int | None = None,
        top_frac: float | None = None,
        reference: str | None = None,
        dataset_attr: str = "train_dataset",
        rescore_every_n_epochs: int | None = None,
        batch_size: int = 8,
        max_length: int = 256,
        out_dir: str | None = None,
        model_attr: str | None = None,
        tokenizer: str | None = None,
    ) -> None:
        if not vectors or not vector_paths(vectors)[0].exists():
            raise ConfigError(bad_value("vectors", vectors, "an existing persona vector file"))
        self.vectors = vectors
        self.layer = layer
        self.method = method
        self.config = FilterConfig(method=method or "proxy", mode=mode, percentile=percentile, top_k=top_k, top_frac=top_frac,
                                   batch_size=batch_size, max_length=max_length)
        self.reference = reference
        self._reference = read_chat_jsonl(reference) if reference else None
        self.dataset_attr = dataset_attr
        self.rescore_every_n_epochs = _core.check_positive_int("rescore_every_n_epochs", rescore_every_n_epochs)
        self.out_dir = out_dir
        self.model_attr = model_attr
        self.tokenizer_spec = tokenizer
        self.rounds: list[dict[str, Any]] = []
        self.run_dir: Path | None = None
        self.dataset: FilterableDataset | None = None
        self._vs: Any = None
        self._loaded: Any = None
        self._model: Any = None

    @property
    def state_key(self) -> str:
        return _core.generate_state_key(self, vectors=self.vectors, layer=self.layer, dataset_attr=self.dataset_attr)

    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "rounds": [dict(r) for r in self.rounds]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rounds = [dict(r) for r in state_dict.get("rounds", [])]

    # ------------------------------------------------------------------------------------------------- hooks
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        self._model = _core.find_hf_model(pl_module, self.model_attr)
        tokenizer = _core.find_tokenizer(pl_module, self.tokenizer_spec)
        self._loaded = _core.loaded_view(self._model, tokenizer)
        self._vs = PersonaVectorSet.load(self.vectors, expect_model=self._loaded)
        if trainer.is_global_zero:
            _report_validation(self._vs)
        if self.method is None:
            self.config = dataclasses.replace(self.config, method=default_method(self._vs))
        if self.layer is not None:
            self.layer = check_layers([self.layer], self._loaded.n_layers, argument="layer")[0]
        else:  # the file's readout (filter_samples resolves it); its blocks must exist in this model
            check_layers(readout_of(self._vs).layers, self._loaded.n_layers, argument="layer")
        self.dataset = self._find_dataset(trainer, pl_module)
        reload_n = int(getattr(trainer, "reload_dataloaders_every_n_epochs", 0) or 0)
        if self.rescore_every_n_epochs and (reload_n < 1 or self.rescore_every_n_epochs % reload_n):
            raise ConfigError(bad_value(
                "rescore_every_n_epochs", self.rescore_every_n_epochs,
                hint=f"the Trainer reloads dataloaders every {reload_n} epochs (0 = never), so a new subset would "
                     "not be used: pass Trainer(reload_dataloaders_every_n_epochs=1)."))
        self.run_dir = _core.run_dir(trainer, self.out_dir, "data_filter")

    def _find_dataset(self, trainer: Any, pl_module: Any) -> FilterableDataset:
        for owner in (getattr(trainer, "datamodule", None), pl_module):
            ds = getattr(owner, self.dataset_attr, None) if owner is not None else None
            if isinstance(ds, FilterableDataset):
                return ds
        raise ConfigError(bad_value(
            "dataset_attr", self.dataset_attr,
            hint="neither the DataModule nor the LightningModule has that attribute holding a FilterableDataset; "
                 "wrap your chat rows: `self.train_dataset = FilterableDataset(rows, transform=tokenize)` and "
                 "build train_dataloader() from it."))

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        assert self.dataset is not None
        if self.rounds:  # resumed: re-apply the last round's selection (the scores are on disk)
            self.dataset.set_flagged(_read_flags(Path(self.rounds[-1]["dir"]) / "scores.jsonl"))
            return
        self._round(trainer, base=True)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        n = self.rescore_every_n_epochs
        epoch = int(trainer.current_epoch)
        if n and (epoch + 1) % n == 0 and not any(r["epoch"] == epoch + 1 for r in self.rounds):
            self._round(trainer, base=False)
            pl_module.log("data_filter/n_flagged", float(self.rounds[-1]["n_flagged"]), on_epoch=True)

    # ------------------------------------------------------------------------------------------------- rounds
    def _round(self, trainer: Any, *, base: bool) -> dict[str, Any]:
        assert self.dataset is not None and self.run_dir is not None
        samples = samples_from_rows(self.dataset.rows, name=self.dataset_attr)
        loaded = self._loaded if base else _CurrentModel(self._loaded)
        epoch = 0 if base else int(trainer.current_epoch) + 1
        out = self.run_dir / f"round-{len(self.rounds)}-epoch-{epoch}"
        # the base round keeps finished chunks of scores (a restart after a crash scores only the rest), in one
        # process only: with several ranks every rank must run the same forwards (FSDP gathers shards in each),
        # which a rank reading saved chunks would not; later rounds score weights the journal key cannot name (the
        # view's identity is the base's), so none
        journal = out / ".partial" if base and _core.world_size(trainer) == 1 else None
        with _core.probe_mode(self._model):
            result = filter_samples(loaded, self._vs, samples, self.config, layer=self.layer,
                                    reference=self._reference, journal=journal)
        flagged = [bool(f) for f in _core.broadcast(trainer, [bool(f) for f in result.flagged])]
        self.dataset.set_flagged(flagged)
        if _core.is_global_zero(trainer):
            write_outputs(result, out)
        if journal is not None:
            ScoreJournal.remove(journal)
        entry = {"round": len(self.rounds), "epoch": epoch, "model": "base" if base else "current",
                 "n": len(flagged), "n_flagged": int(sum(flagged)), "dir": str(out),
                 "mean_delta_p": result.summary.mean_delta_p, "threshold": result.summary.threshold}
        self.rounds.append(entry)
        log.info("data filter round %d (epoch %d): %d of %d rows flagged", entry["round"], epoch,
                 entry["n_flagged"], entry["n"])
        _core.barrier(trainer, "difflib_data_filter")
        return entry


def _report_validation(vs: Any) -> None:
    """Log the file's filter validation as ``persona filter`` prints it: a warning when it is missing, LOW or
    WORDING (the filter still runs: a training run is not the place to refuse), info otherwise."""
    from difflib_models.persona.filtering.validation import describe, is_low

    record = vs.filter_validation
    doubtful = is_low(record) or record.reads_wording
    (log.warning if doubtful else log.info)("DataFilterCallback(%s): %s", vs.trait_id, describe(record))


def _read_flags(path: Path) -> list[bool]:
    return [bool(r.value["flagged"]) for r in load_jsonl(path, what="scores")]


def __getattr__(name: str) -> Any:
    """``DataFilterCallback`` (the ``lightning.pytorch`` class of :mod:`difflib_models.callbacks.lightning`), kept importable from
    this module; Lightning is imported on first use."""
    if name == "DataFilterCallback":
        from difflib_models.callbacks.lightning import DataFilterCallback

        return DataFilterCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
