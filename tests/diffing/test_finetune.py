from __future__ import annotations

import pytest
import torch

from difflib_models.diffing.finetune import LoraFinetuneConfig, lora_finetune
from difflib_models.errors import ConfigError
from difflib_models.models.identity import weight_hash
from tests.diffing._helpers import SENTENCES, tiny_llama


def test_lora_finetune_learns_and_keeps_base(word_tokenizer) -> None:
    model = tiny_llama()
    ids = word_tokenizer(SENTENCES[:2], return_tensors="pt", padding=True)
    with torch.no_grad():
        ref_logits = model(**ids).logits.clone()
    h0 = weight_hash(model)
    cfg = LoraFinetuneConfig(r=4, steps=40, batch_size=2, lr=1e-2)
    res = lora_finetune(model, word_tokenizer, SENTENCES[:2], cfg)
    assert len(res.losses) == 40
    assert res.last_loss < 0.5 * res.first_loss  # memorises two sentences
    peft_model = res.model
    assert weight_hash(peft_model) == h0  # base weights untouched
    with torch.no_grad():
        with peft_model.disable_adapter():
            base_logits = peft_model(**ids).logits
        ft_logits = peft_model(**ids).logits
    torch.testing.assert_close(base_logits, ref_logits)
    assert (ft_logits - ref_logits).abs().max() > 0.1


def test_chat_rows_train_only_on_answer(word_tokenizer) -> None:
    word_tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}assistant {% endif %}"
    )
    rows = [{"messages": [{"role": "user", "content": "the cat"}, {"role": "assistant", "content": "ran home"}]}]
    res = lora_finetune(tiny_llama(), word_tokenizer, rows, LoraFinetuneConfig(r=2, steps=3, batch_size=1))
    assert len(res.losses) == 3
    with pytest.raises(ConfigError, match="assistant"):
        lora_finetune(tiny_llama(), word_tokenizer, [{"messages": [{"role": "user", "content": "x"}]}],
                      LoraFinetuneConfig(steps=1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"r": 0}, "r="), ({"lr": -1.0}, "lr="), ({"target_modules": "q_proj"}, "target_modules"),
     ({"warmup_steps": 5, "steps": 5}, "warmup_steps")],
)
def test_config_validation(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        LoraFinetuneConfig(**kwargs)


def test_missing_targets_named(word_tokenizer) -> None:
    with pytest.raises(ConfigError, match="target_modules"):
        lora_finetune(tiny_llama(), word_tokenizer, SENTENCES, LoraFinetuneConfig(target_modules=("c_attn",)))


def test_loss_mask_covers_every_assistant_turn(tinystories_656k) -> None:
    from transformers import AutoTokenizer

    from difflib_models.diffing.finetune import collate_examples, encode_examples

    tok = AutoTokenizer.from_pretrained(tinystories_656k)
    tok.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    chat = {"messages": [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello there."},
                         {"role": "user", "content": "Bye."}, {"role": "assistant", "content": "Goodbye now."}]}
    rows = encode_examples(tok, ["Once upon a time.", chat], max_length=200)
    ids, labels = collate_examples(rows, pad_id=0)[0], collate_examples(rows, pad_id=0)[2]
    plain = labels[0, : len(rows[0][0])]
    assert plain[0] == -100 and (plain[1:] == ids[0, 1: len(rows[0][0])]).all()  # plain text: all but token 0
    trained = tok.decode([int(t) for t in labels[1] if t != -100])
    assert trained.replace("\n", "") == "Hello there.<|im_end|>Goodbye now.<|im_end|>"  # both turns, no prompt


@pytest.mark.parametrize(("warmup", "total"), [(0, 10), (2, 10), (5, 40)])
def test_warmup_cosine_is_transformers_schedule_shifted_by_one_step(warmup: int, total: int) -> None:
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    from difflib_models.diffing.finetune import warmup_cosine

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    hf = get_cosine_with_min_lr_schedule_with_warmup(opt, warmup + 1, total + 1, min_lr_rate=0.1).lr_lambdas[0]
    ours = [warmup_cosine(s, warmup, total) for s in range(total)]
    assert ours == pytest.approx([hf(s + 1) for s in range(total)], abs=1e-12)
    assert ours[0] > 0 and hf(0) == 0.0  # transformers' own step 0 runs at learning rate 0: the reason it is kept
    assert ours[warmup] == pytest.approx(1.0) and warmup_cosine(total, warmup, total) == pytest.approx(0.1)
