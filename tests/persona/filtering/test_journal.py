"""Resumable filtering: a run that crashes after some chunks is re-run and scores only the rest, with the numbers of
an uninterrupted run; a changed vector or a damaged chunk is scored again; the CLI leaves no journal behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from difflib_models.persona.extraction.vectors import PersonaVectorSet
from difflib_models.persona.filtering.journal import ScoreJournal, pair_digest
from difflib_models.persona.filtering.scoring import (
    FilterConfig,
    encode_sample,
    filter_samples,
    samples_from_rows,
)
from tests.helpers.filter_chunks import KilledWhileScoring, count_chunks

LAYER = 2
WORDS = ["cat", "dog", "sun", "tree", "boat", "bird", "cake", "rain", "moon", "fish", "ball", "kite", "frog"]
ROWS = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"Tell me about the {w}."},
                                     {"role": "assistant", "content": f"The {w} was happy and ran {i} times."}]}
        for i, w in enumerate(WORDS)]


@pytest.fixture(scope="module")
def loaded(stories260k: Path):
    from difflib_models.models.loading import load_model

    return load_model(str(stories260k))


def _vectors(loaded, seed: int) -> PersonaVectorSet:
    gen = torch.Generator().manual_seed(seed)
    vecs = {layer: torch.randn(loaded.d_model, generator=gen) for layer in range(loaded.n_layers)}
    return PersonaVectorSet(trait_id="planted", vectors=vecs, model=loaded.identity.to_dict(), mode="test",
                            selected_layer=LAYER)


@pytest.mark.parametrize("method", ["proxy", "exact"])
def test_a_crashed_run_resumes_with_the_numbers_of_an_uninterrupted_one(loaded, tmp_path: Path, method: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    samples = samples_from_rows(ROWS)
    vs = _vectors(loaded, 7)
    cfg = FilterConfig(method=method, batch_size=3, n_bootstrap=0, checkpoint_rows=4, max_new_tokens=5)
    whole = filter_samples(loaded, vs, samples, cfg)  # no journal: one pass
    journal = tmp_path / "partial"

    calls = count_chunks(monkeypatch, crash_after=2)
    with pytest.raises(KilledWhileScoring):
        filter_samples(loaded, vs, samples, cfg, journal=journal)
    assert calls == [4, 4] and len(list(journal.glob("chunk-*.json"))) == 2  # two chunks saved before the crash

    calls = count_chunks(monkeypatch)
    resumed = filter_samples(loaded, vs, samples, cfg, journal=journal)
    assert calls == [4, 1]  # only the 5 rows not saved: 13 - 8
    for a, b in zip(resumed.records, whole.records, strict=True):
        assert a.id == b.id
        assert a.proj_train == pytest.approx(b.proj_train, abs=1e-4)
        assert a.proj_base == pytest.approx(b.proj_base, abs=1e-4)
    # a third run reads everything from the journal
    calls = count_chunks(monkeypatch)
    again = filter_samples(loaded, vs, samples, cfg, journal=journal)
    assert calls == [] and [r.delta_p for r in again.records] == [r.delta_p for r in resumed.records]


def test_another_vector_or_a_damaged_chunk_is_scored_again(loaded, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    samples = samples_from_rows(ROWS)
    cfg = FilterConfig(batch_size=4, n_bootstrap=0, checkpoint_rows=5)
    journal = tmp_path / "partial"
    filter_samples(loaded, _vectors(loaded, 7), samples, cfg, journal=journal)
    chunks = sorted(journal.glob("chunk-*.json"))
    assert len(chunks) == 3

    calls = count_chunks(monkeypatch)
    other = filter_samples(loaded, _vectors(loaded, 8), samples, cfg, journal=journal)  # a re-extracted vector
    assert calls == [5, 5, 3]  # nothing reused from the other vector's chunks
    fresh = filter_samples(loaded, _vectors(loaded, 8), samples, cfg)
    np.testing.assert_allclose([r.delta_p for r in other.records], [r.delta_p for r in fresh.records], atol=1e-4)

    chunks[1].write_text("{not json", encoding="utf-8")  # a chunk damaged outside our atomic writes
    calls = count_chunks(monkeypatch)
    filter_samples(loaded, _vectors(loaded, 7), samples, cfg, journal=journal)
    assert calls == [5]  # that chunk's rows only


def test_digest_follows_what_the_model_reads(loaded) -> None:
    s = samples_from_rows(ROWS[:1])[0]
    a, b = encode_sample(loaded.tokenizer, s, 512), encode_sample(loaded.tokenizer, s, 12)
    assert pair_digest(a) == pair_digest(encode_sample(loaded.tokenizer, s, 512))
    assert pair_digest(a) != pair_digest(b)  # truncated by max_length: another row
    assert ScoreJournal(Path("x"), {"k": 1}).key != ScoreJournal(Path("x"), {"k": 2}).key


def test_checkpoint_rows_is_validated() -> None:
    from difflib_models.errors import ConfigError

    with pytest.raises(ConfigError, match="checkpoint_rows"):
        FilterConfig(checkpoint_rows=0)


def test_cli_filter_leaves_no_journal(stories260k: Path, loaded, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from difflib_models.cli.app import app

    vec = _vectors(loaded, 7).save(tmp_path / "vec")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["persona", "filter", "--vectors", str(vec), "--data", str(data), "--out",
                                   str(out), "--model", str(stories260k), "--top-k", "2"])
    assert res.exit_code == 0, res.output
    assert (out / "summary.json").is_file() and not (out / ".partial").exists()
    assert json.loads((out / "summary.json").read_text())["n_flagged"] == 2


def test_new_chunks_never_overwrite_saved_ones(tmp_path: Path) -> None:
    """A chunk deleted by hand leaves a gap in the numbering: the next chunk goes after the highest number."""
    from difflib_models.persona.traits.chat import EncodedPair

    pairs = [EncodedPair(ids=[1, 2, i + 3], prompt_len=2) for i in range(6)]
    book = ScoreJournal(tmp_path, {"k": 1})

    def fn(chunk, label):
        return [float(p.ids[-1]) for p in chunk], [0.0] * len(chunk)

    book.score(pairs[:4], fn, 2)  # chunks 0 and 1
    chunks = sorted(tmp_path.glob("chunk-*.json"))
    chunks[0].unlink()
    train, _ = book.score(pairs, fn, 2)  # rows 0, 1 (deleted chunk) and 4, 5 (new)
    assert train.tolist() == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    names = sorted(p.name for p in tmp_path.glob("chunk-*.json"))
    assert len(names) == 3 and names[0] == chunks[1].name  # the surviving chunk is intact, two new ones after it
    assert ScoreJournal(tmp_path, {"k": 1}).load().keys() == {pair_digest(p) for p in pairs}
