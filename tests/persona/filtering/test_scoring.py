"""Data filtering by projection difference: exact numbers on a real small model, selection, outputs, errors.

The SmolLM2 tests (slow) check the real claim on held-out rows: a persona vector extracted from the built-in trait
(not from the data), with mode and layer chosen on a separate tuning split, ranks trait-inducing samples above
neutral ones better than norm-matched covariance-realistic random directions, for every trait; the insecure-code
claim fails on this model and is a strict xfail."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from difflib_models.errors import ConfigError
from difflib_models.persona.extraction.vectors import PersonaVectorSet
from difflib_models.persona.filtering.records import FilterRow
from difflib_models.persona.filtering.scoring import (
    FilterConfig,
    FilteredDataset,
    encode_sample,
    filter_samples,
    read_chat_jsonl,
    samples_from_rows,
    select,
    write_outputs,
)

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
        assert rec.proj_train == pytest.approx(resp, abs=1e-4)
        assert rec.proj_base == pytest.approx(last, abs=1e-4)
        assert rec.delta_p == pytest.approx(resp - last, abs=1e-4)
        assert rec.layer == LAYER and rec.method == "proxy" and rec.trait == "planted"
    # the multi-turn row is split at the LAST assistant turn
    assert samples[3].response == "Four, five and six little birds." and len(samples[3].prompt) == 3
    # batch size does not change the numbers (padding is handled)
    res1 = filter_samples(loaded, vectors, samples, FilterConfig(batch_size=1, n_bootstrap=0))
    np.testing.assert_allclose([r.delta_p for r in res1.records], [r.delta_p for r in res.records],
                               atol=1e-4)
    s = res.summary
    deltas = np.array([r.delta_p for r in res.records])
    assert s.n == 5 and s.n_flagged == 0 and s.mean_delta_p == pytest.approx(deltas.mean())
    assert s.ci95 is not None and s.ci95[0] <= s.mean_delta_p <= s.ci95[1]


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
        assert rec.proj_base == pytest.approx(own, abs=1e-4)
        assert rec.method == "exact"
        assert rec.proj_train == pytest.approx(_manual(loaded, s, unit)[0], abs=1e-4)


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
# Protocol (specs/validation.md): the vectors come from the built-in trait files, never from the data; the mode and
# layer are chosen on a TUNING split of the inducing/neutral prompts and everything asserted is measured on a
# disjoint EVALUATION split (split by prompt: a prompt's inducing and neutral answers land in the same split; seeded
# here). The baseline is N_NULL norm-matched covariance-realistic random directions (N(0, Sigma_hat) of the
# within-class extraction activations, persona.shift.core.covariance_null_directions); each draw picks its own layer and
# sign on the tuning split like the trait vector does (max over the same layers), and the trait vector must beat
# the LARGEST of them on the evaluation split, for every trait.
SMOL_TRAITS = ("sycophancy", "evil")
SMOL_MODES = ("paired", "ab")
SMOL_LAYERS = (6, 9, 12, 15, 18, 21, 24)
SPLIT_SEED, N_TUNE, N_EVAL, N_NULL, N_PERM = 0, 16, 16, 16, 2000


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    from difflib_models.stats import auroc

    return auroc(scores[labels == 1], scores[labels == 0])


def _cohens_d(scores: np.ndarray, labels: np.ndarray) -> float:
    from difflib_models.persona.validation.validate import cohens_d

    return cohens_d(scores[labels == 1], scores[labels == 0])


def _perm_p(scores: np.ndarray, labels: np.ndarray, n: int = N_PERM, seed: int = 0) -> float:
    """Label-permutation p-value of the AUROC: (1 + #{permuted >= observed}) / (1 + n)."""
    from difflib_models.stats import auroc

    rng = np.random.default_rng(seed)
    obs = auroc(scores[labels == 1][None], scores[labels == 0][None], axis=1)[0]  # same arithmetic as the draws
    perms = np.stack([rng.permutation(labels) for _ in range(n)])  # [n, N], class sizes kept
    order = np.argsort(~perms.astype(bool), axis=1, kind="stable")  # each row: its label-1 items first
    k = int(labels.sum())
    s = scores[order]
    hits = int((auroc(s[:, :k], s[:, k:], axis=1) >= obs).sum())
    return (1 + hits) / (1 + n)


def _precision_at_k(records: Sequence[FilterRow], labels: np.ndarray) -> float:
    d = np.array([r.delta_p for r in records])
    return float(labels[np.argsort(-d, kind="stable")[: int(labels.sum())]].mean())


def _residuals(loaded, samples, layers, max_length: int = 512) -> tuple[dict, dict]:
    """{layer: [n, d]} mean response-token residual and last-prompt-token residual of each sample through the
    model (the two quantities the proxy filter projects), all layers in one forward per batch. Written here
    independently of filtering.project_pairs so the random-direction baseline needs no extra forwards."""
    from difflib_models.models.batching import pad_batch
    from difflib_models.models.hookpoints import find_block_list
    from difflib_models.persona.traits.chat import pad_id

    class _Stop(Exception):
        pass

    pairs = [encode_sample(loaded.tokenizer, s, max_length) for s in samples]
    _, blocks = find_block_list(loaded.model)
    deepest = max(layers)

    def keep(k: int, out) -> None:
        box[k] = (out[0] if isinstance(out, tuple) else out).float()
        if k == deepest:
            raise _Stop


    resp: dict[int, list[torch.Tensor]] = {k: [] for k in layers}
    last: dict[int, list[torch.Tensor]] = {k: [] for k in layers}
    for start in range(0, len(pairs), 8):
        part = pairs[start : start + 8]
        ids, mask = pad_batch([p.ids for p in part], pad_token_id=pad_id(loaded.tokenizer), padding_side="right")
        box: dict[int, torch.Tensor] = {}
        handles = [blocks[k].register_forward_hook(lambda _m, _a, out, k=k: keep(k, out)) for k in layers]
        try:
            with torch.no_grad():
                loaded.model(input_ids=ids, attention_mask=mask, use_cache=False)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        for k in layers:
            for row, p in enumerate(part):
                resp[k].append(box[k][row, p.prompt_len : len(p.ids)].mean(0))
                last[k].append(box[k][row, p.prompt_len - 1])
    return {k: torch.stack(v) for k, v in resp.items()}, {k: torch.stack(v) for k, v in last.items()}


def _split_rows(trait: str) -> dict[str, tuple[list[dict], np.ndarray]]:
    """Seeded split BY PROMPT into tuning and evaluation rows (inducing first, then the same prompts' neutral)."""
    from difflib_models.datasets import load_dataset

    ind, neu = load_dataset(f"{trait}-inducing"), load_dataset(f"{trait}-neutral")
    assert [r["messages"][:-1] for r in ind] == [r["messages"][:-1] for r in neu]  # same prompts, pairwise
    order = np.random.default_rng(SPLIT_SEED).permutation(len(ind))
    out = {}
    for name, idx in (("tune", order[:N_TUNE]), ("eval", order[N_TUNE : N_TUNE + N_EVAL])):
        rows = [ind[i] for i in idx] + [neu[i] for i in idx]
        out[name] = (rows, np.array([1] * len(idx) + [0] * len(idx)))
    return out


def _best(table: dict) -> object:
    """The key with the highest (AUROC, Cohen's d) on the tuning split."""
    return max(table, key=lambda key: table[key])


@pytest.fixture(scope="module")
def smollm2_filter_setup(smollm2) -> dict[str, dict]:
    """Per trait: the mode and layer chosen on the tuning split, the vector set, the evaluation rows and the
    random-direction null draws (each draw's own tuning-chosen layer and sign, and its evaluation scores)."""
    from difflib_models.persona.extraction.extractor import PersonaExtractor, aggregate
    from difflib_models.persona.shift.core import covariance_null_directions

    out = {}
    for trait in SMOL_TRAITS:
        split = _split_rows(trait)
        (tune_rows, y_tune), (eval_rows, y_eval) = split["tune"], split["eval"]
        t_resp, t_last = _residuals(smollm2, samples_from_rows(tune_rows), SMOL_LAYERS)
        e_resp, e_last = _residuals(smollm2, samples_from_rows(eval_rows), SMOL_LAYERS)
        t_diff = {k: t_resp[k] - t_last[k] for k in SMOL_LAYERS}  # the proxy's delta_p features
        e_diff = {k: e_resp[k] - e_last[k] for k in SMOL_LAYERS}
        table, fitted = {}, {}
        for mode in SMOL_MODES:
            pos, neg = PersonaExtractor(mode=mode, layers=list(SMOL_LAYERS), show_progress=False).features(
                smollm2, trait, "extraction")
            fitted[mode] = (pos, neg)
            for k in SMOL_LAYERS:
                v = aggregate(pos[k], neg[k])
                s = (t_diff[k] @ (v / v.norm())).numpy()
                table[(mode, k)] = (_auroc(s, y_tune), _cohens_d(s, y_tune))
        mode, layer = _best(table)
        pos, neg = fitted[mode]
        vecs = {k: aggregate(pos[k], neg[k]) for k in SMOL_LAYERS}
        vs = PersonaVectorSet(trait_id=trait, vectors=vecs, model=smollm2.identity.to_dict(), mode=mode,
                              selected_layer=layer, n_pos=int(pos[layer].shape[0]), n_neg=int(neg[layer].shape[0]))
        # null: N_NULL draws, each a norm-matched direction per layer from the within-class extraction covariance
        dirs = {k: covariance_null_directions(torch.cat([pos[k] - pos[k].mean(0), neg[k] - neg[k].mean(0)]),
                                              N_NULL, norm=float(vecs[k].norm()), seed=1000 + k)
                for k in SMOL_LAYERS}
        null = []
        for j in range(N_NULL):
            tab = {}
            for k in SMOL_LAYERS:
                s = (t_diff[k] @ dirs[k][j]).numpy()
                sign = 1.0 if _auroc(s, y_tune) >= 0.5 else -1.0
                tab[(k, sign)] = (_auroc(sign * s, y_tune), _cohens_d(sign * s, y_tune))
            k, sign = _best(tab)
            null.append(sign * (e_diff[k] @ dirs[k][j]).numpy())
        out[trait] = {"mode": mode, "layer": layer, "vectors": vs, "eval_rows": eval_rows, "labels": y_eval,
                      "null_scores": null, "eval_diff": e_diff, "dirs": dirs, "tuning": table}
    return out


def _smol_trait(trait: str):
    return pytest.param(trait, id=trait)


@pytest.mark.slow
@pytest.mark.smollm2
@pytest.mark.parametrize("trait", [_smol_trait(t) for t in SMOL_TRAITS])
def test_smollm2_proxy_ranks_held_out_trait_samples_above_random_directions(
        smollm2, smollm2_filter_setup, trait: str, tmp_path: Path) -> None:
    setup = smollm2_filter_setup[trait]
    labels, layer = setup["labels"], setup["layer"]
    n_pos = int(labels.sum())
    res = filter_samples(smollm2, setup["vectors"], samples_from_rows(setup["eval_rows"]),
                         FilterConfig(mode="top_k", top_k=n_pos, n_bootstrap=200))
    delta = np.array([r.delta_p for r in res.records])
    auc, d = _auroc(delta, labels), _cohens_d(delta, labels)
    null_auc = [_auroc(s, labels) for s in setup["null_scores"]]
    null_d = [_cohens_d(s, labels) for s in setup["null_scores"]]
    prec = _precision_at_k(res.records, labels)
    print(f"{trait}: mode {setup['mode']} layer {layer} (tuning split); held-out n={n_pos}+{n_pos} AUROC {auc:.3f} "
          f"d {d:.2f} precision@{n_pos} {prec:.3f}; {N_NULL} random directions AUROC max {max(null_auc):.3f} "
          f"q95 {np.percentile(null_auc, 95):.3f}, d max {max(null_d):.2f}")
    # AUROC saturates on these rows (random directions reach 1.0 too): it must tie or beat the null's max, and
    # the standardised separation (Cohen's d, which does not saturate) must beat every draw
    assert auc >= max(null_auc), (auc, sorted(null_auc))
    assert d > max(null_d), (d, sorted(null_d))
    assert _perm_p(delta, labels) < 0.01
    # the filter's numbers are the projections of this test's own residuals on the selected unit vector
    np.testing.assert_allclose(delta, (setup["eval_diff"][layer] @ setup["vectors"].unit(layer)).numpy(),
                               atol=2e-3, rtol=1e-4)
    # flagged == the top-k by delta_p, and the kept file holds the rest
    assert res.summary.n_flagged == n_pos
    assert float(labels[np.array([r.flagged for r in res.records])].mean()) == prec
    paths = write_outputs(res, tmp_path / trait)
    assert len(paths["kept"].read_text().splitlines()) == n_pos


N_EXACT = 6


@pytest.mark.slow
@pytest.mark.smollm2
@pytest.mark.parametrize("trait", [_smol_trait(t) for t in SMOL_TRAITS])
def test_smollm2_exact_method_separates_held_out_rows(smollm2, smollm2_filter_setup, trait: str) -> None:
    """The exact method (the base model's own greedy answer as baseline) on N_EXACT + N_EXACT held-out rows:
    its AUROC must have a label-permutation p-value < 0.01 (a random ranking reaches that 1% of the time)."""
    setup = smollm2_filter_setup[trait]
    rows, labels = setup["eval_rows"], setup["labels"]
    half = len(rows) // 2
    rows = rows[:N_EXACT] + rows[half : half + N_EXACT]  # the first N_EXACT prompts, inducing and neutral
    labels = np.array([1] * N_EXACT + [0] * N_EXACT)
    samples = samples_from_rows(rows)
    vs = setup["vectors"]
    exact = filter_samples(smollm2, vs, samples, FilterConfig(method="exact", max_new_tokens=24, n_bootstrap=0))
    proxy = filter_samples(smollm2, vs, samples, FilterConfig(n_bootstrap=0))
    # same training-side projections; only the baseline differs (the model's own answer, not its last prompt token)
    np.testing.assert_allclose([r.proj_train for r in exact.records], [r.proj_train for r in proxy.records],
                               atol=1e-3)
    assert not np.allclose([r.proj_base for r in exact.records], [r.proj_base for r in proxy.records])
    delta = np.array([r.delta_p for r in exact.records])
    p = _perm_p(delta, labels)
    print(f"{trait} exact: AUROC {_auroc(delta, labels):.3f} permutation p {p:.4f} "
          f"precision@{N_EXACT} {_precision_at_k(exact.records, labels):.3f}")
    assert p < 0.01, (p, _auroc(delta, labels))


@pytest.fixture(scope="module")
def insecure_code_run(smollm2, smollm2_filter_setup, shared_data: Path, tmp_path_factory) -> dict:
    n = 8
    src = shared_data / "emergent-misalignment" / "insecure-code" / "insecure_small.jsonl"
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    from difflib_models.datasets import load_dataset

    samples = read_chat_jsonl(src)[:n] + samples_from_rows(load_dataset("secure-code")[:n])
    setup = smollm2_filter_setup["evil"]
    res = filter_samples(smollm2, setup["vectors"], samples,
                         FilterConfig(mode="top_frac", top_frac=0.5, max_length=320, n_bootstrap=200))
    paths = write_outputs(res, tmp_path_factory.mktemp("code"), source=src)
    layer = setup["layer"]
    resp, last = _residuals(smollm2, samples, [layer], max_length=320)
    return {"res": res, "paths": paths, "labels": np.array([1] * n + [0] * n), "n": n, "src": src,
            "before": before, "null_feats": (resp[layer] - last[layer]) @ setup["dirs"][layer].T}


@pytest.mark.slow
@pytest.mark.smollm2
@pytest.mark.shared
def test_smollm2_insecure_code_filter_outputs(insecure_code_run) -> None:
    """Mechanics on the real file: counts, finite scores, the source never written."""
    run = insecure_code_run
    res, n = run["res"], run["n"]
    assert res.summary.n_flagged == n and len(res.kept_indices) == n
    assert all(np.isfinite([r.delta_p for r in res.records]))
    assert len(run["paths"]["kept"].read_text().splitlines()) == n
    assert hashlib.sha256(run["src"].read_bytes()).hexdigest() == run["before"]


@pytest.mark.slow
@pytest.mark.smollm2
@pytest.mark.shared
@pytest.mark.xfail(strict=True, reason="measured at SPLIT_SEED 0: the evil vector's AUROC insecure vs secure code is 0.45 "
                   "(permutation p 0.63, precision@8 0.50); random directions reach 0.95 (either sign)")
def test_smollm2_insecure_code_ranked_above_secure_code(insecure_code_run) -> None:
    """The detection claim one would want: the "evil" vector ranks real insecure-code rows above secure code
    better than every random direction. It does not on a 135M model (docs/data-filtering.md)."""
    run = insecure_code_run
    labels = run["labels"]
    delta = np.array([r.delta_p for r in run["res"].records])
    null_auc = [max(a, 1 - a) for a in (_auroc(s, labels) for s in run["null_feats"].T.numpy())]
    auc = _auroc(delta, labels)
    print(f"insecure vs secure: AUROC {auc:.3f} precision@{run['n']} {_precision_at_k(run['res'].records, labels):.3f}"
          f" p {_perm_p(delta, labels):.3f}; random directions AUROC (either sign) max {max(null_auc):.3f}")
    assert auc > max(null_auc) and _perm_p(delta, labels) < 0.05
