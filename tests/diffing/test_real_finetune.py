"""Real narrow fine-tune: LoRA-tune TinyStories-656K on stories about fish and, as a control, on the same number
of steps of stories that never mention fish. The Activation Difference Lens, computed on held-out stories that
do not mention fish either, must read the concept for the narrow fine-tune and not for the control."""

from __future__ import annotations

import re

import pytest
import torch

from difflib_models.diffing.adl import activation_difference_lens, add_to_residual
from difflib_models.diffing.finetune import LoraFinetuneConfig, lora_finetune
from difflib_models.diffing.pair import ModelPair
from difflib_models.diffing.sources import select_by_keyword, split_stories
from difflib_models.models.loading import from_pretrained_objects, load_model

CONCEPT = ("fish", "water", "fin", "swim", "sea", "pond", "ocean", "lake", "river", "shell")
CFG = LoraFinetuneConfig(r=8, alpha=16, steps=50, batch_size=8, lr=1e-2, max_length=128, seed=0)
LAYER = 1  # blocks.1: the last of the two blocks (before the final norm)


CONCEPT_RE = re.compile(r"\b(?:fish\w*|water|fin|swim\w*|sea|pond|ocean|lake|river|shell\w*)\b", re.IGNORECASE)


def _concept_hits(tokens: list[dict]) -> list[str]:
    """Top tokens that are (or contain) a concept word: 'fish', 'in the water', 'Fin' (not 'Finall')."""
    return [t["token"] for t in tokens if CONCEPT_RE.search(t["token"])]


def _adl(model_dir, data, held_out):
    lm = load_model(model_dir)
    res = lora_finetune(lm.model, lm.tokenizer, data, CFG)
    pair = ModelPair.from_adapter(from_pretrained_objects(res.model, lm.tokenizer, name="ft"))
    adl = activation_difference_lens(pair, held_out, layer=LAYER, k=5, top_n=lm.tokenizer.vocab_size)
    fish_ids = {i for tok, i in lm.tokenizer.get_vocab().items() if tok.strip("▁ ").lower().startswith("fish")}
    fish_rank = min(j for j, t in enumerate(adl.top_tokens) if t["id"] in fish_ids)
    return res, adl, fish_rank


def _fish_logprob(model_dir, texts, vector) -> float:
    """Mean log-probability that the next token is a fish token, with the base model steered by ``vector``
    added after block LAYER."""
    lm = load_model(model_dir)
    fish_ids = torch.tensor([i for tok, i in lm.tokenizer.get_vocab().items()
                             if tok.strip("▁ ").lower().startswith("fish")])
    enc = lm.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=32)
    with torch.no_grad(), add_to_residual(lm.model, LAYER, vector):
        logp = torch.log_softmax(lm.model(**enc).logits, dim=-1)
    return float(torch.logsumexp(logp[..., fish_ids], dim=-1)[enc["attention_mask"].bool()].mean())


@pytest.mark.slow
@pytest.mark.shared
def test_adl_reads_the_narrow_concept_and_not_the_control(tinystories_656k, tinystories_text) -> None:
    stories = split_stories(tinystories_text.read_text(encoding="utf-8"))
    narrow = select_by_keyword(stories, "fish", min_hits=2)
    neutral = select_by_keyword(stories, CONCEPT, exclude=True)
    held_out, control = neutral[:64], neutral[64:128]
    assert len(narrow) >= 15

    res_n, adl_n, rank_n = _adl(tinystories_656k, narrow, held_out)
    res_c, adl_c, rank_c = _adl(tinystories_656k, control, held_out)
    assert res_n.last_loss < res_n.first_loss and res_c.last_loss < res_c.first_loss
    hits_n = _concept_hits(adl_n.top_tokens[:20])
    hits_c = _concept_hits(adl_c.top_tokens[:20])
    assert hits_n, [t["token"] for t in adl_n.top_tokens[:20]]
    assert not hits_c, hits_c
    assert rank_n < 30 and rank_c > 200, (rank_n, rank_c)
    # steering the base model with the narrow ADL vector raises P(fish) far more than the control's vector
    plain = _fish_logprob(tinystories_656k, held_out[:32], torch.zeros_like(adl_n.vector))
    up_n = _fish_logprob(tinystories_656k, held_out[:32], adl_n.vector) - plain
    up_c = _fish_logprob(tinystories_656k, held_out[:32], adl_c.vector) - plain
    assert up_n > 2.0 and up_n > up_c + 1.0, (up_n, up_c)
