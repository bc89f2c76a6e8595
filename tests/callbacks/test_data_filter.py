"""DataFilterCallback: the training set is scored before fit, the model trains on exactly the kept rows, every
score is written out, per-epoch re-scoring changes the subset the next epoch trains on."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from difflib_models.errors import ConfigError
from tests.callbacks.lit_helpers import ChatLM
from tests.callbacks.test_persona_monitor import _vector_file


def _rows() -> list[dict]:
    from difflib_models.datasets import load_dataset

    return load_dataset("sycophancy-inducing")[:10] + load_dataset("sycophancy-neutral")[10:20]


def _stacked_vector_file(tmp_path: Path, module) -> str:
    """A vector file whose filter validation chose a stacked readout over blocks 0-2, method ``raw``."""
    import torch

    from difflib_models.persona.extraction.vectors import FilterValidation, PersonaVectorSet
    from difflib_models.persona.filtering.readout import Readout
    from difflib_models.persona.filtering.validation import with_filter_validation

    vf = _vector_file(tmp_path / "syc", module, torch.randn(32, generator=torch.Generator().manual_seed(2)))
    gen = torch.Generator().manual_seed(5)
    readout = Readout({k: torch.randn(32, generator=gen) for k in (0, 1, 2)})
    record = FilterValidation(filter_layer=2, method="raw", filter_auroc={0: 0.5}, eval_auroc=0.95,
                              eval_precision_at_k=0.9, eval_pair_win_rate=0.9, n_tune=4, n_eval=4, seed=0,
                              source="test", readout_layers=(0, 1, 2), readout_auroc={"0-2": 0.97})
    with_filter_validation(PersonaVectorSet.load(vf), record, readout).save(tmp_path / "syc")
    return vf


def _trainer(tmp_path: Path, callbacks: list, **kw):
    import lightning.pytorch as L

    args = dict(default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False)
    args.update(kw)
    return L.Trainer(callbacks=callbacks, **args)


def test_filter_before_fit_trains_on_kept_rows(tmp_path: Path, tinystories_656k: Path) -> None:
    import torch

    from difflib_models.callbacks import DataFilterCallback
    from difflib_models.models.loading import from_pretrained_objects
    from difflib_models.persona.extraction.vectors import PersonaVectorSet
    from difflib_models.persona.filtering.scoring import FilterConfig, filter_samples, samples_from_rows

    module = ChatLM(_rows(), tokenizer_dir=str(tinystories_656k))
    untouched = copy.deepcopy(module.model)
    vf = _vector_file(tmp_path / "syc", module, torch.randn(32, generator=torch.Generator().manual_seed(2)))
    cb = DataFilterCallback(vectors=vf, mode="top_k", top_k=6, out_dir=str(tmp_path / "filter"))
    _trainer(tmp_path, [cb], max_epochs=1).fit(module)
    # same selection as the filter run by hand on the untouched model
    ref = filter_samples(from_pretrained_objects(untouched, module.tokenizer), PersonaVectorSet.load(vf),
                         samples_from_rows(_rows()), FilterConfig(mode="top_k", top_k=6, max_length=256))
    assert module.train_dataset.kept_indices == ref.kept_indices and len(ref.kept_indices) == 14
    assert module.batches_per_epoch == {0: math.ceil(14 / 4)}
    out = tmp_path / "filter" / "round-0-epoch-0"
    scores = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == 20 and sum(s["flagged"] for s in scores) == 6
    assert [s["delta_p"] for s in scores] == pytest.approx([r.delta_p for r in ref.records], abs=1e-5)
    assert len((out / "flagged.jsonl").read_text().splitlines()) == 6
    assert len((out / "kept.jsonl").read_text().splitlines()) == 14


def test_default_reports_only(tmp_path: Path, tinystories_656k: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Without a dropping mode nothing is dropped: every row is scored and written, none flagged, all trained on.
    The vector file has no filter validation: the callback says so (a warning, as `persona filter` prints it)."""
    import torch

    from difflib_models.callbacks import DataFilterCallback

    module = ChatLM(_rows(), tokenizer_dir=str(tinystories_656k))
    vf = _vector_file(tmp_path / "syc", module, torch.randn(32, generator=torch.Generator().manual_seed(2)))
    cb = DataFilterCallback(vectors=vf, out_dir=str(tmp_path / "filter"))
    with caplog.at_level("INFO", logger="difflib_models.callbacks.data_filter"):
        _trainer(tmp_path, [cb], max_epochs=1).fit(module)
    said = [r for r in caplog.records if "DataFilterCallback(" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "WARNING" and "not validated for filtering" in said[0].getMessage()
    assert module.train_dataset.kept_indices == list(range(20))
    assert module.batches_per_epoch == {0: math.ceil(20 / 4)}
    scores = [json.loads(x) for x in (tmp_path / "filter" / "round-0-epoch-0" / "scores.jsonl").read_text()
              .splitlines()]
    assert len(scores) == 20 and not any(s["flagged"] for s in scores)
    assert len({round(s["delta_p"], 6) for s in scores}) > 1  # real scores, just not acted on


def test_a_stacked_readout_and_its_validated_method_are_the_callbacks_defaults(
        tmp_path: Path, tinystories_656k: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A vector file whose filter validation chose a stacked readout (blocks 0-2) with method ``raw``: the callback,
    given neither ``layer`` nor ``method``, scores every row on that readout with that method. Its record
    (AUROC 0.95, no wording figures) is reported at info level, not as a warning."""
    from difflib_models.callbacks import DataFilterCallback

    module = ChatLM(_rows(), tokenizer_dir=str(tinystories_656k))
    vf = _stacked_vector_file(tmp_path, module)
    cb = DataFilterCallback(vectors=vf, out_dir=str(tmp_path / "filter"))
    with caplog.at_level("INFO", logger="difflib_models.callbacks.data_filter"):
        _trainer(tmp_path, [cb], max_epochs=1).fit(module)
    said = [r for r in caplog.records if "DataFilterCallback(" in r.getMessage()]
    assert [r.levelname for r in said] == ["INFO"] and "filter validation ok: AUROC 0.950" in said[0].getMessage()
    out = tmp_path / "filter" / "round-0-epoch-0"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "raw" and summary["readout"]["layers"] == [0, 1, 2] and summary["layer"] == 2
    assert summary["filter_validation"]["validated_layer"] and summary["filter_validation"]["validated_method"]
    scores = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == 20 and all(s["proj_base"] == 0.0 for s in scores)  # raw: no baseline


def test_a_vector_that_reads_the_wording_is_reported_as_a_warning(tmp_path: Path, tinystories_656k: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A record whose wording check says the answers' first word and length rank its pairs as well (0.94 against
    the vector's 0.95): the callback warns with the WORDING line, and still filters."""
    import dataclasses

    from difflib_models.callbacks import DataFilterCallback
    from difflib_models.persona.extraction.vectors import PersonaVectorSet
    from difflib_models.persona.filtering.readout import readout_of
    from difflib_models.persona.filtering.validation import with_filter_validation

    module = ChatLM(_rows(), tokenizer_dir=str(tinystories_656k))
    vf = _stacked_vector_file(tmp_path, module)
    vs = PersonaVectorSet.load(vf)
    record = dataclasses.replace(vs.filter_validation, surface_auroc=0.94, eval_word_stratified_auroc=0.55)
    with_filter_validation(vs, record, readout_of(vs)).save(tmp_path / "syc")
    cb = DataFilterCallback(vectors=vf, out_dir=str(tmp_path / "filter"))
    with caplog.at_level("INFO", logger="difflib_models.callbacks.data_filter"):
        _trainer(tmp_path, [cb], max_epochs=1).fit(module)
    said = [r for r in caplog.records if "DataFilterCallback(" in r.getMessage()]
    assert [r.levelname for r in said] == ["WARNING"] and "WORDING" in said[0].getMessage()
    assert (tmp_path / "filter" / "round-0-epoch-0" / "scores.jsonl").is_file()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ddp_spawn_every_rank_keeps_the_same_rows_and_rank_0_writes(tmp_path: Path, tinystories_656k: Path) -> None:
    """Under DDP (ddp_spawn, 2 CPU processes) both ranks score the rows on the file's stacked readout, drop the same
    top 5 (rank 0's selection broadcast) and rank 0 alone writes the outputs."""
    import lightning.pytorch as L

    from difflib_models.callbacks import DataFilterCallback
    from tests.callbacks.lit_helpers import KeptRecorder

    module = ChatLM(_rows(), tokenizer_dir=str(tinystories_656k))
    vf = _stacked_vector_file(tmp_path, module)
    cb = DataFilterCallback(vectors=vf, mode="top_k", top_k=5, out_dir=str(tmp_path / "filter"))
    trainer = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[cb, KeptRecorder(str(tmp_path / "ranks"))])
    trainer.fit(module)
    kept = [json.loads((tmp_path / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert kept[0]["world_size"] == 2 and kept[0]["kept"] == kept[1]["kept"] and len(kept[0]["kept"]) == 15
    out = tmp_path / "filter" / "round-0-epoch-0"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_flagged"] == 5 and summary["method"] == "raw" and summary["readout"]["layers"] == [0, 1, 2]
    scores = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == 20  # written once
    flagged = sorted(i for i, s in enumerate(scores) if s["flagged"])
    assert sorted(set(range(20)) - set(kept[0]["kept"])) == flagged
    top5 = sorted(range(20), key=lambda i: -scores[i]["delta_p"])[:5]
    assert sorted(top5) == flagged


def test_rescore_every_epoch_changes_next_epoch_subset(tmp_path: Path, tinystories_656k: Path) -> None:
    import torch

    from difflib_models.callbacks import DataFilterCallback, FilterableDataset
    from difflib_models.datasets import dataset_path

    module = ChatLM(_rows(), tokenizer_dir=str(tinystories_656k), lr=0.5)
    assert isinstance(module.train_dataset, FilterableDataset)
    vf = _vector_file(tmp_path / "syc", module, torch.randn(32, generator=torch.Generator().manual_seed(2)))
    cb = DataFilterCallback(vectors=vf, mode="threshold", percentile=50.0,
                            reference=str(dataset_path("clean-reference")), rescore_every_n_epochs=1,
                            out_dir=str(tmp_path / "filter"))
    _trainer(tmp_path, [cb], max_epochs=2, reload_dataloaders_every_n_epochs=1).fit(module)
    assert [r["epoch"] for r in cb.rounds] == [0, 1, 2] and cb.rounds[0]["model"] == "base"
    for r in cb.rounds[:2]:  # epoch e trains on the rows kept by the round scored before it
        assert module.batches_per_epoch[r["epoch"]] == math.ceil((r["n"] - r["n_flagged"]) / 4)
    assert len({r["mean_delta_p"] for r in cb.rounds}) == 3  # the current model re-scored each time


def test_bad_configuration(tmp_path: Path, tinystories_656k: Path) -> None:
    import torch

    from difflib_models.callbacks import DataFilterCallback

    module = ChatLM(_rows(), tokenizer_dir=str(tinystories_656k))
    vf = _vector_file(tmp_path / "syc", module, torch.randn(32))
    with pytest.raises(ConfigError, match="vectors"):
        DataFilterCallback(vectors=str(tmp_path / "nope.safetensors"))
    with pytest.raises(ConfigError, match="mode"):
        DataFilterCallback(vectors=vf, mode="drop_all")
    for cb, kw, match in (
        (DataFilterCallback(vectors=vf, rescore_every_n_epochs=1), {}, "reload_dataloaders_every_n_epochs"),
        (DataFilterCallback(vectors=vf, dataset_attr="rows"), {}, "FilterableDataset"),
    ):
        trainer = _trainer(tmp_path, [cb], max_epochs=1, **kw)
        with pytest.raises(ConfigError, match=match):
            trainer.fit(module)
        assert trainer.global_step == 0


def test_a_fit_killed_while_scoring_resumes_the_base_round(tmp_path: Path, tinystories_656k: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The base round keeps finished chunks of scores: a fit that dies after 2 of 4 chunks is re-run and scores
    the other 2 only, with the selection of an uninterrupted fit; the journal is gone once the outputs are written."""
    import torch

    from difflib_models.callbacks import DataFilterCallback
    from tests.helpers.filter_chunks import KilledWhileScoring, count_chunks

    vec = torch.randn(32, generator=torch.Generator().manual_seed(2))

    def run(out: str) -> ChatLM:
        module = ChatLM(_rows(), tokenizer_dir=str(tinystories_656k))  # same seed: the same initial weights
        cb = DataFilterCallback(vectors=_vector_file(tmp_path / "syc", module, vec), mode="top_k", top_k=6,
                                out_dir=str(tmp_path / out))
        cb.config.checkpoint_rows = 5
        _trainer(tmp_path, [cb], max_epochs=1).fit(module)
        return module

    calls = count_chunks(monkeypatch)
    whole = run("whole")
    assert calls == [5, 5, 5, 5]
    count_chunks(monkeypatch, crash_after=2)
    with pytest.raises(KilledWhileScoring):
        run("killed")
    partial = tmp_path / "killed" / "round-0-epoch-0" / ".partial"
    assert len(list(partial.glob("chunk-*.json"))) == 2
    calls = count_chunks(monkeypatch)
    resumed = run("killed")
    assert calls == [5, 5]  # the 10 rows no saved chunk held
    assert resumed.train_dataset.kept_indices == whole.train_dataset.kept_indices
    assert not partial.exists() and (partial.parent / "scores.jsonl").is_file()
