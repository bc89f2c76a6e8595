"""The CAA stacked-filter benchmarks' own pieces: the random readouts of the null, the user-path inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.bench_filter_caa_stacked import covariance_nulls
from difflib_models.persona.filtering.validation import PairFeatures


def test_covariance_nulls_span_the_readouts_blocks_and_point_toward_the_trait() -> None:
    gen = torch.Generator().manual_seed(0)
    feats = {side: {k: torch.randn(50, 6, generator=gen) + (2.0 if side == "matching" else 0.0)
                    for k in (3, 4, 5)} for side in ("matching", "other")}
    fit = PairFeatures(matching=feats["matching"], other=feats["other"], last_prompt=feats["other"])
    nulls = covariance_nulls(fit, [3, 5], 7, seed=1)
    assert len(nulls) == 7 and all(r.layers == [3, 5] for r in nulls)
    diff = torch.cat([fit.matching[k].mean(0) - fit.other[k].mean(0) for k in (3, 5)]).double()
    assert all(float(r.matrix().flatten().double() @ diff) >= 0 for r in nulls)
    assert len({r.fingerprint() for r in nulls}) == 7  # independent draws
    assert [r.fingerprint() for r in covariance_nulls(fit, [3, 5], 7, seed=1)] == [r.fingerprint() for r in nulls]


def test_user_path_inputs_hold_the_other_items_and_both_answers_of_the_held_out_ones(tmp_path: Path) -> None:
    from benchmarks.bench_filter_caa_cli import write_inputs
    from benchmarks.bench_filter_heldout_caa import split_caa

    trait, rows, n = write_inputs(tmp_path, seed=0, n_held=100)
    others = json.loads(trait.read_text())
    lines = [json.loads(x) for x in rows.read_text().splitlines()]
    assert n == len(others) == 900 and len(lines) == 200
    held, rest = split_caa(100, 0)  # the sample of the stacked benchmark
    assert [r["question"] for r in others] == [it.question for it in rest]
    asked = {ln["messages"][0]["content"] for ln in lines}
    assert asked == {it.question for it in held} and not asked & {r["question"] for r in others}
    assert sum(ln["id"].endswith("-matching") for ln in lines) == 100


def test_split_caa_of_another_behaviour_holds_out_a_disjoint_seeded_sample() -> None:
    from benchmarks.bench_filter_heldout_caa import caa_items, split_caa

    items = caa_items(behaviour="survival-instinct")
    held, rest = split_caa(100, 1, "survival-instinct")
    assert len(items) == 903 and len(held) == 100 and len(rest) == 803
    assert not {it.question for it in held} & {it.question for it in rest}
    assert {it.question for it in held} | {it.question for it in rest} == {it.question for it in items}
    assert [it.question for it in split_caa(100, 1, "survival-instinct")[0]] == [it.question for it in held]
    assert {it.question for it in split_caa(100, 2, "survival-instinct")[0]} != {it.question for it in held}


def test_caa_rows_names_the_splits_it_knows() -> None:
    from benchmarks.bench_filter_heldout_caa import caa_rows

    with pytest.raises(ValueError, match=r"behaviour='evil'.*survival-instinct"):
        caa_rows("evil")
