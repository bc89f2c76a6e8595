"""The one-pass A/B scorer (prompt encoded once, KV cache reused) against per-sequence scoring: the answer-text
scores of both orders, the listed-order letter probability and the open score (answers after the bare question)
agree to float rounding, on config-built tiny
models (with and without a chat template, plain and behind a peft LoRA) and on SmolLM2-135M-Instruct."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from difflib_models.gate.ab_scoring import score_items
from difflib_models.gate.behavioural import ab_probabilities, load_behaviour_items
from difflib_models.hooks import probe_mode
from difflib_models.persona.traits.chat import encode_prompt_response
from difflib_models.persona.validation.dose_response import answer_text_scores

CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _reference(model, tok, items, batch_size: int) -> tuple[list[float], list[float], list[float]]:
    """Per-sequence scoring: every answer as its own full sequence (dose_response.answer_text_scores) and the
    letter readout on prompt + letter prefix (behavioural.ab_probabilities)."""
    loaded = SimpleNamespace(model=model, tokenizer=tok, is_peft=False)
    with probe_mode(model):
        first = answer_text_scores(model, tok, [it.text_item(True) for it in items], batch_size=batch_size)
        second = answer_text_scores(model, tok, [it.text_item(False) for it in items], batch_size=batch_size)
    probs = ab_probabilities(loaded, [it.letter_item() for it in items], batch_size=batch_size)
    return first, second, probs


def _check(model, tok, items, batch_size: int = 4, tol: float = 1e-4) -> None:
    first, second, probs = _reference(model, tok, items, batch_size)
    with probe_mode(model):
        fast = score_items(model, tok, items, batch_size=batch_size)
    assert len(fast.first) == len(fast.second) == len(fast.p_matching) == len(items)
    assert fast.first == pytest.approx(first, abs=tol)
    assert fast.second == pytest.approx(second, abs=tol)
    assert fast.p_matching == pytest.approx(probs, abs=tol)
    opened = [_open_reference(model, tok, it) for it in items]
    assert fast.open == pytest.approx(opened, abs=tol)
    assert max(abs(a - b) for a, b in zip(opened, first, strict=True)) > 100 * tol  # the options are not listed
    # the scores are not trivially equal (a broken order or pairing would not pass the comparison above)
    assert max(abs(a - b) for a, b in zip(first, second, strict=True)) > 100 * tol
    assert len({round(p, 6) for p in probs}) > 1


def _open_reference(model, tok, item) -> float:
    """The open score of one item written out: each answer text after the BARE question, one full forward each,
    per-token mean log-likelihood of the answer tokens, matching minus other."""
    means = []
    for text in (item.matching, item.not_matching):
        enc = encode_prompt_response(tok, item.question, text)
        ids = torch.tensor([enc.ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
        token_lp = logp.gather(1, ids[0, 1:, None])[:, 0][enc.prompt_len - 1:]
        means.append(float(token_lp.mean()))
    return means[0] - means[1]


@pytest.fixture(scope="module")
def tiny(stories260k: Path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(stories260k)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      initializer_range=0.3)  # far from uniform outputs: the scores differ clearly
    model = LlamaForCausalLM(cfg).eval()
    chat_tok = copy.deepcopy(tok)
    chat_tok.chat_template = CHAT
    return model, tok, chat_tok


@pytest.mark.parametrize("trait", ["evil", "sycophancy"])
def test_fast_scores_equal_per_sequence_scoring(tiny, trait: str) -> None:
    model, tok, _ = tiny
    _check(model, tok, load_behaviour_items(trait, max_items=6), batch_size=4)


def test_fast_scores_with_a_chat_template_and_odd_batches(tiny) -> None:
    model, _, chat_tok = tiny
    _check(model, chat_tok, load_behaviour_items("hallucination", max_items=5), batch_size=3)


def test_fast_scores_through_a_peft_lora(tiny) -> None:
    from peft import LoraConfig, get_peft_model

    model, tok, _ = tiny
    lora = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a LoRA that changes the outputs
    _check(lora, tok, load_behaviour_items("evil", max_items=4), batch_size=4)


@pytest.mark.slow
@pytest.mark.smollm2
def test_fast_scores_on_smollm2(smollm2) -> None:
    items = load_behaviour_items("sycophancy", max_items=4)
    _check(smollm2.model, smollm2.tokenizer, items, batch_size=4, tol=2e-4)


def test_ab_section_scores_all_traits_in_one_pass_like_each_trait_alone(tiny) -> None:
    from difflib_models.gate.behavioural import ab_section, evaluate_ab

    model, tok, _ = tiny
    loaded = SimpleNamespace(model=model, tokenizer=tok, is_peft=False)
    models = {"base": (loaded, "model"), "candidate": (loaded, "model")}
    traits = ["evil", "hallucination"]
    section = ab_section(models, traits, max_items=4, n_boot=200)
    for trait in traits:
        alone = evaluate_ab(models, load_behaviour_items(trait, max_items=4), trait=trait, n_boot=200)
        got = section.traits[trait]
        assert got.trait == trait
        for name in models:
            assert got.models[name].to_dict() == pytest.approx(alone.models[name].to_dict(), abs=1e-6)
            assert got.balanced.models[name].to_dict() == pytest.approx(alone.balanced.models[name].to_dict(),
                                                                        abs=1e-6)
    means = [section.traits[t].balanced.models["base"].mean for t in traits]
    assert abs(means[0] - means[1]) > 1e-3  # the traits' items differ: a mixed-up split would show
