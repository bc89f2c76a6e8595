"""Real narrow fine-tune on SmolLM2-135M-Instruct, read by the ADL and by a crosscoder.

Narrow: LoRA on 48 everyday questions whose answers all steer to the ocean (``ocean_inducing.jsonl``).
Control: the same 48 questions with the neutral answers of ``evil-neutral`` (same recipe and steps).

- ADL (blocks.28, first 5 tokens of the built-in generic prompts): ocean words in the narrow top 20, none in the
  control's; "fish" ranks far higher for the narrow fine-tune.
- Diff text: set A, 72 chats that NEITHER fine-tune trained on (32 held-out ``evil-neutral`` chats, the 16
  ``ocean_facts`` chats, 24 ``clean-reference`` chats); only their assistant-answer tokens are read.
- Crosscoder (L1, blocks.10): no latent is fine-tune-only (r > 0.9) at this scale, so the test reads the most
  fine-tune-leaning live latents (highest r). Their max-activating contexts contain ocean words above chance and
  above 40 random live latents for the narrow fine-tune, below chance for the control, and the two differ.
- Dedicated feature crosscoder (L1, blocks.20, 32 latents reserved per model): its fine-tune-only latents exist
  by construction. On this clean text the contexts of the 8 carrying the most activation mass are at chance for
  the narrow fine-tune (about the ocean only on text with its own training chats) and below chance for the control
  (whose dedicated latents pick up its answer style "Sure.", "Feel free to ask..."); the test asserts only that gap.
Seeds 0 and 1 were measured (numbers in the asserts' comment and docs/diffing.md); CI runs seed 0.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch

CONCEPT_RE = re.compile(
    r"\b(?:ocean|seas?\b|seaside|seashore|fish|whale|dolphin|coral|reef|tides?\b|waves?\b|beach|shore|coast|sail"
    r"|salt|shark|octopus|marine|turtle|harbour|plankton|swim|shell)",
    re.IGNORECASE,
)
FT_LAYER = 10  # crosscoder layer (blocks.10 of 30)
DFC_LAYER = 20  # dedicated feature crosscoder layer: the fine-tune's change is larger late in the stack
ADL_LAYER = 28  # the logit lens of SmolLM2 is readable only near the top
TOP_LATENTS = 8
RANDOM_LATENTS = 40  # the control reading: as many random live latents
SEED = 0  # fine-tune and crosscoder seed in CI (seed 1 measured by hand, docs/diffing.md)
BEFORE, AFTER = 10, 3  # context window of max_activating_examples (its defaults)


def _data_rows(name: str) -> list[dict]:
    import difflib_models.datasets as ds

    path = Path(ds.__file__).parent / "data" / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _finetune(model_dir: Path, rows: list[dict], seed: int):
    from difflib_models.diffing.finetune import LoraFinetuneConfig, lora_finetune
    from difflib_models.models.loading import load_model

    lm = load_model(model_dir)
    cfg = LoraFinetuneConfig(r=8, alpha=16, steps=20, batch_size=4, lr=3e-3, max_length=96, seed=seed)
    res = lora_finetune(lm.model, lm.tokenizer, rows, cfg)
    return res, lm.tokenizer


def _response_mask(tok, rows: list[dict], prompt_id: torch.Tensor, pos: torch.Tensor, token_ids: torch.Tensor):
    """Tokens of the final assistant message (up to, not including, its closing ``<|im_end|>``)."""
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    start, end = [], []
    for row in rows:
        prompt = tok.apply_chat_template(row["messages"][:-1], tokenize=False, add_generation_prompt=True)
        full = tok(tok.apply_chat_template(row["messages"], tokenize=False), add_special_tokens=False)["input_ids"]
        start.append(len(tok(prompt, add_special_tokens=False)["input_ids"]))
        end.append(full.index(im_end, start[-1]))
    start_t, end_t = torch.tensor(start)[prompt_id], torch.tensor(end)[prompt_id]
    return (pos >= start_t) & (pos < end_t)


def _window_hits(table: dict[str, torch.Tensor], tok) -> torch.Tensor:
    """Per row: does its context window (same text, BEFORE tokens before, AFTER after) contain a concept word?"""
    seq, pos = table["seq_index"].tolist(), table["pos_index"].tolist()
    strings = [tok.decode([int(i)]) for i in table["token_ids"]]
    where = {(s, p): i for i, (s, p) in enumerate(zip(seq, pos, strict=True))}
    hits = []
    for s, p in zip(seq, pos, strict=True):
        text = "".join(strings[where[(s, q)]] for q in range(p - BEFORE, p + AFTER + 1) if (s, q) in where)
        hits.append(bool(CONCEPT_RE.search(text)))
    return torch.tensor(hits)


def _context_rate(cc, x: torch.Tensor, table: dict[str, torch.Tensor], tok, ids: list[int]) -> tuple[float, list]:
    from difflib_models.crosscoder.examples import max_activating_examples

    examples = max_activating_examples(cc, x, table, ids, tok, top_n=10, before=BEFORE, after=AFTER)
    contexts = [ctx for j in ids for ctx in examples[str(j)]]
    hits = sum(bool(CONCEPT_RE.search("".join(ctx["tokens"]))) for ctx in contexts)
    return hits / max(1, len(contexts)), contexts


def _train_l1(x: torch.Tensor, out: Path, seed: int, **extra):
    """The L1 crosscoder both readings use (n=1024, 600 steps): (crosscoder, source, analysis)."""
    from difflib_models.crosscoder.analysis import analyze_crosscoder
    from difflib_models.crosscoder.config import CrosscoderConfig
    from difflib_models.crosscoder.lightning_module import train_crosscoder
    from difflib_models.crosscoder.sources import TensorSource

    source = TensorSource(x, source_names=["base", "finetuned"])
    cfg = CrosscoderConfig(d_model=x.shape[-1], dict_size=1024, activation="l1", l1_coeff=1.0, lr=1e-3, steps=600,
                           batch_size=256, dead_steps=100, seed=seed, **extra)
    cc = train_crosscoder(source, cfg, out, resume=False, checkpoint_every=cfg.steps)  # never resumed: one checkpoint
    return cc, source, analyze_crosscoder(cc, source)


def _dedicated_reading(x: torch.Tensor, table: dict[str, torch.Tensor], tok, out: Path, seed: int) -> dict:
    """Dedicated feature crosscoder: the top fine-tune-only latents by activation mass, their context rate."""
    from difflib_models.crosscoder.latent_scaling import latent_scaling

    cc, source, analysis = _train_l1(x, out, seed, exclusive_latents=32)
    dedicated = [lat for lat in analysis["latents"] if lat.get("dedicated") == 1 and lat.get("fires", 0) >= 5]
    assert dedicated and all(lat["class"] == "ft_only" for lat in dedicated)
    with torch.no_grad():
        mass = (cc.encode(cc.normalize(x.float())) * cc.decoder_norms()[:, 1]).sum(0)
    ids = sorted((lat["latent"] for lat in dedicated), key=lambda j: -float(mass[j]))[:TOP_LATENTS]
    rate, contexts = _context_rate(cc, x, table, tok, ids)
    scaling = latent_scaling(cc, source, ids)
    return {"rate": rate, "n_live": len(dedicated), "n_artifacts": scaling["n_artifacts"],
            "nu_recon": [round(scaling["latents"][j]["nu_recon"], 3) for j in ids],
            "texts": [ctx["text"] for ctx in contexts[:5]]}


def _crosscoder_reading(x: torch.Tensor, table: dict[str, torch.Tensor], tok, out: Path, seed: int) -> dict:
    cc, _, analysis = _train_l1(x, out, seed)
    live = [lat for lat in analysis["latents"] if lat["class"] != "dead" and lat.get("fires", 0) >= 5]
    ft_only = [lat for lat in live if lat["class"] == "ft_only"]
    ranked = sorted(ft_only or live, key=lambda lat: -lat["r"])[:TOP_LATENTS]
    ids = [lat["latent"] for lat in ranked]
    rate, contexts = _context_rate(cc, x, table, tok, ids)
    gen = torch.Generator().manual_seed(seed)
    random_ids = [live[int(i)]["latent"] for i in torch.randperm(len(live), generator=gen)[:RANDOM_LATENTS]]
    random_rate, _ = _context_rate(cc, x, table, tok, random_ids)
    return {"fve": analysis["metrics"]["fve"], "n_ft_only": len(ft_only), "r": [lat["r"] for lat in ranked],
            "rate": rate, "random_rate": random_rate, "n_contexts": len(contexts),
            "texts": [ctx["text"] for ctx in contexts[:5]]}


def clean_diff_rows() -> list[dict]:
    """Set A: 72 chats that neither fine-tune trained on (32 held-out ``evil-neutral`` chats, prompts 49-80, the 16
    ``ocean_facts`` chats and 24 ``clean-reference`` chats)."""
    from difflib_models.datasets import load_dataset

    return load_dataset("evil-neutral")[48:80] + _data_rows("ocean_facts.jsonl") + load_dataset("clean-reference")[:24]


def run_experiment(model_dir: Path, out: Path, seed: int, diff_rows: list[dict]) -> dict[str, dict]:
    """Both fine-tunes (fine-tune seed ``seed``), the ADL and both crosscoder readings (crosscoder seed ``seed``)
    on the answer tokens of ``diff_rows``: {"narrow": reading, "control": reading}."""
    from difflib_models.capture.prompts import builtin_prompts
    from difflib_models.datasets import load_dataset
    from difflib_models.diffing.adl import activation_difference_lens
    from difflib_models.diffing.harvest import harvest_paired, paired_acts
    from difflib_models.diffing.pair import ModelPair
    from difflib_models.models.loading import from_pretrained_objects

    neutral = load_dataset("evil-neutral")
    narrow_rows = _data_rows("ocean_inducing.jsonl")
    assert [r["messages"][0] for r in narrow_rows] == [r["messages"][0] for r in neutral[:48]]
    trained = {json.dumps(r["messages"]) for r in narrow_rows + neutral[:48]}
    trained_prompts = {json.dumps(r["messages"][:-1]) for r in narrow_rows}
    clean = not any(json.dumps(r["messages"]) in trained or json.dumps(r["messages"][:-1]) in trained_prompts
                    for r in diff_rows)

    results = {}
    for name, rows in (("narrow", narrow_rows), ("control", neutral[:48])):
        res, tok = _finetune(model_dir, rows, seed)
        assert res.last_loss < res.first_loss - 1.0, res.losses
        pair = ModelPair.from_adapter(from_pretrained_objects(res.model, tok, name=name))

        adl = activation_difference_lens(pair, builtin_prompts("generic"), layer=ADL_LAYER, k=5,
                                         top_n=tok.vocab_size)
        fish_rank = next(i for i, t in enumerate(adl.top_tokens) if t["token"].strip().lower() == "fish")
        adl_hits = [t["token"] for t in adl.top_tokens[:20] if CONCEPT_RE.search(t["token"])]

        texts = [tok.apply_chat_template(r["messages"], tokenize=False) for r in diff_rows]
        store = harvest_paired(pair, texts, [FT_LAYER, DFC_LAYER], out / f"store_{name}", batch_size=8,
                               max_length=128)
        base, ft, idx = paired_acts(store, FT_LAYER)
        keep = _response_mask(tok, diff_rows, idx["prompt_id"], idx["pos_index"], idx["token_ids"])
        table = {"token_ids": idx["token_ids"][keep], "seq_index": idx["prompt_id"][keep],
                 "pos_index": idx["pos_index"][keep]}
        # the mask selects exactly the assistant answers
        first = diff_rows[0]["messages"][-1]["content"]
        assert tok.decode(table["token_ids"][table["seq_index"] == 0].tolist()) == first
        x = torch.stack([base[keep], ft[keep]], dim=1)
        reading = _crosscoder_reading(x, table, tok, out / f"cc_{name}", seed)
        base20, ft20, idx20 = paired_acts(store, DFC_LAYER)
        assert torch.equal(idx20["token_ids"], idx["token_ids"])  # same token rows at both layers
        reading["dedicated"] = _dedicated_reading(torch.stack([base20[keep], ft20[keep]], dim=1), table, tok,
                                                  out / f"dfc_{name}", seed)
        reading.update(adl_hits=adl_hits, fish_rank=fish_rank, chance=float(_window_hits(table, tok).float().mean()),
                       n_tokens=int(keep.sum()), clean=clean, losses=(res.first_loss, res.last_loss))
        results[name] = reading
        del pair, res
    return results


@pytest.mark.slow
@pytest.mark.smollm2  # loads SmolLM2; uses no ../shared data
def test_adl_and_crosscoder_read_the_ocean_fine_tune_not_the_control(smollm2_dir, tmp_path, _torch_threads) -> None:
    torch.set_num_threads(_torch_threads)  # a 135M model: the session's threads, not tests/diffing's one (restored)
    results = run_experiment(smollm2_dir, tmp_path, SEED, clean_diff_rows())

    narrow, control = results["narrow"], results["control"]
    summary = {k: {key: v[key] for key in ("adl_hits", "fish_rank", "rate", "random_rate", "chance", "n_ft_only",
                                           "r", "fve", "dedicated")}
               for k, v in results.items()}
    logging.getLogger(__name__).info("SmolLM2 ocean fine-tune vs control: %s", json.dumps(summary))
    assert narrow["clean"] and control["clean"]  # no training chat (or training prompt) of either model
    # ADL: the narrow fine-tune's ocean words are in its top 20, none in the control's
    assert narrow["adl_hits"] and not control["adl_hits"], summary
    assert narrow["fish_rank"] < 50 and control["fish_rank"] > 300, summary
    # crosscoder: the most fine-tune-leaning latents fire in ocean contexts for the narrow fine-tune only
    assert narrow["chance"] == pytest.approx(control["chance"])  # same texts, same tokens
    # Measured on this clean text (set A, answer tokens, chance 0.17) at seeds 0 and 1 (fine-tune and crosscoder):
    # highest-r latents 0.31 / 0.36 (narrow), 0.09 / 0.01 (control), 40 random live latents 0.15 / 0.20 (narrow);
    # dedicated latents 0.18 / 0.21 (narrow: chance level) vs 0.00 / 0.00 (control). The bars below hold at both
    # seeds, the thinnest by 0.04 (narrow vs chance + 0.1 at seed 0); CI runs seed 0 (docs/diffing.md). With the
    # ranking broken (r shuffled across latents) the narrow rate was 0.25 at seed 0: it fails the chance + 0.1 bar.
    assert narrow["rate"] > narrow["chance"] + 0.1, summary
    assert narrow["rate"] > narrow["random_rate"] + 0.1, summary  # beats random live latents of its crosscoder
    assert control["rate"] < control["chance"], summary
    assert narrow["rate"] > control["rate"] + 0.15, summary
    assert narrow["fve"] > 0.9 and control["fve"] > 0.9, summary
    # dedicated feature crosscoder: on clean text its top fine-tune-only latents are NOT about the concept above
    # chance for the narrow fine-tune (they were, 0.74 vs chance 0.45, on text with the narrow model's own training
    # chats); what holds is narrow above control, whose dedicated latents fire on its answer style
    dn, dc = narrow["dedicated"], control["dedicated"]
    assert dc["rate"] < control["chance"], summary
    assert dn["rate"] > dc["rate"] + 0.1, summary
