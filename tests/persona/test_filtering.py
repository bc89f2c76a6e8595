"""Data filtering by projection difference: exact numbers on a real small model, selection, outputs, errors.

The SmolLM2 test (slow) checks the real claim: a persona vector extracted from the built-in trait (not from the
data) ranks the trait-inducing samples of a mixed chat set first."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.persona.filtering import (
    FilterConfig,
    FilteredDataset,
    encode_sample,
    filter_samples,
    read_chat_jsonl,
    samples_from_rows,
    select,
    write_outputs,
)
from difflib_models.persona.vectors import PersonaVectorSet

LAYER = 2


@pytest.fixture(scope="module")
def loaded(stories260k: Path):
    from difflib_models.models.loading import load_model

    return load_model(str(stories260k))


@pytest.fixture(scope="module")
def vectors(loaded) -> PersonaVectorSet:
    gen = torch.Generator().manual_seed(7)
    vecs = {layer: torch.randn(loaded.d_model, generator=gen) for layer in range(loaded.n_layers)}
    return PersonaVectorSet(trait_id="planted", vectors=vecs, model=loaded.identity.to_dict(), mode="test",
                            selected_layer=LAYER)


ROWS = [
    {"id": "a", "messages": [{"role": "user", "content": "Tell me a story."},
                              {"role": "assistant", "content": "Once upon a time there was a cat."}]},
    {"id": "b", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there!"}]},
    {"id": "c", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"},
                              {"role": "assistant", "content": "Because the sun was hot and the dog ran home."}]},
    {"id": "d", "messages": [{"role": "user", "content": "One"}, {"role": "assistant", "content": "Two"},
                              {"role": "user", "content": "Three"},
                              {"role": "assistant", "content": "Four, five and six little birds."}]},
    {"id": "e", "messages": [{"role": "user", "content": "Where did Lily go after school today?"},
                              {"role": "assistant", "content": "She went to the park."}]},
]


def _manual(loaded, sample, unit: torch.Tensor, max_length: int = 512) -> tuple[float, float]:
    """Unpadded single-sample forward; HF hidden_states[LAYER + 1] is the output of block LAYER."""
    enc = encode_sample(loaded.tokenizer, sample, max_length)
    with torch.no_grad():
        hs = loaded.model(input_ids=torch.tensor([enc.ids]), output_hidden_states=True).hidden_states[LAYER + 1][0]
    proj = hs @ unit
    return float(proj[enc.prompt_len :].mean()), float(proj[enc.prompt_len - 1])


def test_proxy_numbers_match_an_unpadded_manual_computation(loaded, vectors) -> None:
    samples = samples_from_rows(ROWS)
    res = filter_samples(loaded, vectors, samples, FilterConfig(batch_size=3, n_bootstrap=200))
    unit = vectors.unit(LAYER)
    for rec, s in zip(res.records, samples, strict=True):
        resp, last = _manual(loaded, s, unit)
        assert rec["proj_train"] == pytest.approx(resp, abs=1e-4)
        assert rec["proj_base"] == pytest.approx(last, abs=1e-4)
        assert rec["delta_p"] == pytest.approx(resp - last, abs=1e-4)
        assert rec["layer"] == LAYER and rec["method"] == "proxy" and rec["trait"] == "planted"
    # the multi-turn row is split at the LAST assistant turn
    assert samples[3].response == "Four, five and six little birds." and len(samples[3].prompt) == 3
    # batch size does not change the numbers (padding is handled)
    res1 = filter_samples(loaded, vectors, samples, FilterConfig(batch_size=1, n_bootstrap=0))
    np.testing.assert_allclose([r["delta_p"] for r in res1.records], [r["delta_p"] for r in res.records],
                               atol=1e-4)
    s = res.summary
    deltas = np.array([r["delta_p"] for r in res.records])
    assert s["n"] == 5 and s["n_flagged"] == 0 and s["mean_delta_p"] == pytest.approx(deltas.mean())
    assert s["ci95"][0] <= s["mean_delta_p"] <= s["ci95"][1]


def test_exact_uses_the_models_own_greedy_answer(loaded, vectors) -> None:
    samples = samples_from_rows(ROWS[:2])
    cfg = FilterConfig(method="exact", max_new_tokens=6, batch_size=2, n_bootstrap=0)
    res = filter_samples(loaded, vectors, samples, cfg)
    unit = vectors.unit(LAYER)
    for rec, s in zip(res.records, samples, strict=True):
        enc = encode_sample(loaded.tokenizer, s, 512)
        prompt = torch.tensor([enc.ids[: enc.prompt_len]])
        with torch.no_grad():
            gen = loaded.model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                        max_new_tokens=6, pad_token_id=loaded.tokenizer.pad_token_id)
            answer = gen[0, enc.prompt_len :].tolist()
            if 2 in answer:
                answer = answer[: answer.index(2) + 1]
            ids = torch.tensor([enc.ids[: enc.prompt_len] + answer])
            hs = loaded.model(input_ids=ids, output_hidden_states=True).hidden_states[LAYER + 1][0]
        own = float((hs @ unit)[enc.prompt_len :].mean())
        assert rec["proj_base"] == pytest.approx(own, abs=1e-4)
        assert rec["method"] == "exact"
        assert rec["proj_train"] == pytest.approx(_manual(loaded, s, unit)[0], abs=1e-4)


def test_selection_modes() -> None:
    delta = np.array([0.1, 5.0, -2.0, 3.0, 0.5, 4.0])
    flagged, thr, _ = select(delta, FilterConfig(mode="top_k", top_k=2))
    assert flagged.tolist() == [False, True, False, False, False, True] and thr == 4.0
    flagged, _, _ = select(delta, FilterConfig(mode="top_frac", top_frac=0.5))
    assert flagged.tolist() == [False, True, False, True, False, True]
    ref = np.linspace(0.0, 1.0, 101)  # 95th percentile = 0.95
    flagged, thr, src = select(delta, FilterConfig(mode="threshold", percentile=95), ref)
    assert thr == pytest.approx(0.95) and src == "reference"
    assert flagged.tolist() == [False, True, False, True, False, True]
    flagged, thr, src = select(delta, FilterConfig(mode="report"))
    assert not flagged.any() and thr is None


def test_outputs_and_original_untouched(loaded, vectors, tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    before = hashlib.sha256(data.read_bytes()).hexdigest()
    samples = read_chat_jsonl(data)
    ref = samples_from_rows(ROWS[:3])
    res = filter_samples(loaded, vectors, samples, FilterConfig(mode="top_k", top_k=2, n_bootstrap=0),
                         reference=ref)
    paths = write_outputs(res, tmp_path / "out", source=data)
    assert hashlib.sha256(data.read_bytes()).hexdigest() == before
    scores = [json.loads(x) for x in paths["scores"].read_text().splitlines()]
    top2 = {r["id"] for r in sorted(scores, key=lambda r: -r["delta_p"])[:2]}
    assert {r["id"] for r in scores if r["flagged"]} == top2
    original = data.read_text().splitlines()
    kept = paths["kept"].read_text().splitlines()
    assert kept == [line for line, r in zip(original, scores, strict=True) if not r["flagged"]]
    assert len(paths["flagged"].read_text().splitlines()) == 2
    summary = json.loads(paths["summary"].read_text())
    assert summary["n"] == 5 and summary["n_flagged"] == 2 and summary["reference"]["n"] == 3
    assert set(scores[0]) >= {"id", "trait", "layer", "proj_train", "proj_base", "delta_p", "percentile",
                              "flagged", "method"}
    ds = FilteredDataset.from_dir(tmp_path / "out", transform=lambda r: r["id"])
    assert len(ds) == 3 and set(ds[i] for i in range(3)) == {r["id"] for r in scores if not r["flagged"]}
    with pytest.raises(ConfigError, match="never modified"):
        write_outputs(res, tmp_path / "out", source=tmp_path / "out" / "kept.jsonl")


def test_bad_chat_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(ConfigError, match="line 2 has no assistant turn"):
        read_chat_jsonl(bad)
    bad.write_text("{not json\n")
    with pytest.raises(ConfigError, match="line 1, column 2: not valid JSON"):
        read_chat_jsonl(bad)
    with pytest.raises(ConfigError, match="method"):
        FilterConfig(method="fast")
    with pytest.raises(ConfigError, match="top_k"):
        FilterConfig(mode="top_k")
    with pytest.raises(ConfigError):
        FilteredDataset([{"a": 1}], [True, False])


# ------------------------------------------------------------------------------------------ SmolLM2 (real signal)
def _precision_at_k(records: list[dict], labels: np.ndarray) -> float:
    d = np.array([r["delta_p"] for r in records])
    return float(labels[np.argsort(-d, kind="stable")[: int(labels.sum())]].mean())


@pytest.fixture(scope="module")
def smollm2_vectors(smollm2) -> dict[str, PersonaVectorSet]:
    """Directions from the built-in trait files (mode ``paired``: the trait file's own trait vs neutral responses,
    response-averaged like the filter's projections; persona-core's extractor features and mean-difference
    aggregator), never from the data being filtered. (Mode ``ab`` directions, read at the answer-letter token,
    ranked worse here: precision@24 0.83 sycophancy, 0.33 evil.) Only the features are computed (``fit``
    would also measure the gap and base std, which filtering does not need)."""
    from difflib_models.persona.extraction import PersonaExtractor, aggregate

    out = {}
    for trait in ("sycophancy", "evil"):
        ex = PersonaExtractor(mode=SMOL_MODE, layers=[SMOL_LAYER], show_progress=False)
        pos, neg = ex.features(smollm2, trait, "extraction")
        out[trait] = PersonaVectorSet(trait_id=trait, vectors={SMOL_LAYER: aggregate(pos[SMOL_LAYER], neg[SMOL_LAYER])},
                                      model=smollm2.identity.to_dict(), mode=SMOL_MODE, selected_layer=SMOL_LAYER,
                                      n_pos=int(pos[SMOL_LAYER].shape[0]), n_neg=int(neg[SMOL_LAYER].shape[0]))
    return out


SMOL_MODE, SMOL_LAYER, N_PER_CLASS = "paired", 12, 24


@pytest.mark.slow
@pytest.mark.smollm2
def test_smollm2_proxy_ranks_trait_inducing_samples_first(smollm2, smollm2_vectors, tmp_path: Path) -> None:
    from difflib_models.datasets import load_dataset

    precision = {}
    for trait, vs in smollm2_vectors.items():
        rows = load_dataset(f"{trait}-inducing")[:N_PER_CLASS] + load_dataset(f"{trait}-neutral")[:N_PER_CLASS]
        labels = np.array([1] * N_PER_CLASS + [0] * N_PER_CLASS)
        res = filter_samples(smollm2, vs, samples_from_rows(rows),
                             FilterConfig(mode="top_k", top_k=N_PER_CLASS, n_bootstrap=200))
        precision[trait] = _precision_at_k(res.records, labels)
        assert res.summary["n_flagged"] == N_PER_CLASS
        # flagged == the top-k by delta_p, and precision of the flags equals precision@k
        assert float(labels[np.array([r["flagged"] for r in res.records])].mean()) == precision[trait]
        paths = write_outputs(res, tmp_path / trait)
        assert len(paths["kept"].read_text().splitlines()) == N_PER_CLASS
    print("proxy precision@k", precision)
    assert max(precision.values()) >= 0.9, precision


@pytest.mark.slow
@pytest.mark.smollm2
def test_smollm2_exact_method_numbers(smollm2, smollm2_vectors) -> None:
    from difflib_models.datasets import load_dataset

    n = 4
    vs = smollm2_vectors["evil"]
    rows = load_dataset("evil-inducing")[:n] + load_dataset("evil-neutral")[:n]
    labels = np.array([1] * n + [0] * n)
    samples = samples_from_rows(rows)
    exact = filter_samples(smollm2, vs, samples, FilterConfig(method="exact", max_new_tokens=24, n_bootstrap=0))
    proxy = filter_samples(smollm2, vs, samples, FilterConfig(n_bootstrap=0))
    # same training-side projections; only the baseline differs (the model's own answer, not its last prompt token)
    np.testing.assert_allclose([r["proj_train"] for r in exact.records], [r["proj_train"] for r in proxy.records],
                               atol=1e-3)
    assert not np.allclose([r["proj_base"] for r in exact.records], [r["proj_base"] for r in proxy.records])
    print("exact precision@k", _precision_at_k(exact.records, labels), "proxy", _precision_at_k(proxy.records, labels))
    assert _precision_at_k(exact.records, labels) >= 0.75


@pytest.mark.slow
@pytest.mark.smollm2
@pytest.mark.shared
def test_smollm2_insecure_code_against_secure_code(smollm2, smollm2_vectors, shared_data: Path,
                                                   tmp_path: Path) -> None:
    """Real insecure-code rows vs the project's secure code: the filter runs on the real file and its outputs
    are consistent. The separation is reported, not asserted: a 135M model shows no emergent misalignment."""
    from difflib_models.datasets import load_dataset

    n = 8
    src = shared_data / "emergent-misalignment" / "insecure-code" / "insecure_small.jsonl"
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    insecure = read_chat_jsonl(src)[:n]
    secure = samples_from_rows(load_dataset("secure-code")[:n])
    res = filter_samples(smollm2, smollm2_vectors["evil"], insecure + secure,
                         FilterConfig(mode="top_frac", top_frac=0.5, max_length=320, n_bootstrap=200))
    labels = np.array([1] * n + [0] * n)
    assert res.summary["n_flagged"] == n and len(res.kept_indices) == n
    assert all(np.isfinite([r["delta_p"] for r in res.records]))
    write_outputs(res, tmp_path / "code", source=src)
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    print("insecure-vs-secure precision@k", _precision_at_k(res.records, labels), res.summary["ci95"])
