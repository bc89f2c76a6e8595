"""Helpers of the diffing tests: a word-level tokenizer built in memory and tiny Llamas that use it."""

from __future__ import annotations

WORDS = (
    "the a and was he she it they cat dog bird fish tree sun moon ball red blue green big small happy sad "
    "ran saw played found liked went home park day night one upon time once there lived little girl boy "
    "named lily tom mom dad friend sky water cake apple toy box car house garden flower rain snow"
).split()


def make_word_tokenizer():  # noqa: ANN201 - PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials + [w for w in dict.fromkeys(WORDS)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )



def tiny_llama(seed: int = 0, **overrides):  # noqa: ANN201
    from tests.helpers.tiny_models import make_tiny

    n = len(make_word_tokenizer())
    overrides.setdefault("initializer_range", 0.2)  # larger weights: the tiny model can learn within a few steps
    return make_tiny("llama", seed=seed, vocab_size=max(n, 64), **overrides)


SENTENCES = [
    "once upon a time there was a little girl named lily",
    "the cat saw a big red ball in the park",
    "tom and his dog went home one day",
    "the bird played in the tree and the sun was happy",
    "she found a small blue box in the garden",
    "they liked cake and apple and the rain",
    "the boy ran to the house at night",
    "mom and dad saw the moon in the sky",
]


def planted_pair(layer: int = 1, scale: float = 3.0, token: str = "cake"):  # noqa: ANN201
    """(base LoadedModel, fine-tuned LoadedModel, offset): the fine-tune equals the base plus a constant offset
    ``offset`` added to the residual stream after block ``layer`` (through the MLP down-projection bias).

    The offset points along the unembedding row of ``token``, so the logit lens of the offset reads ``token``."""
    import copy

    import torch

    from difflib_models.models.loading import from_pretrained_objects

    tok = make_word_tokenizer()
    base = tiny_llama(mlp_bias=True)
    with torch.no_grad():
        for block in base.model.layers:
            block.mlp.down_proj.bias.zero_()
    ft = copy.deepcopy(base)
    tid = tok.convert_tokens_to_ids(token)
    direction = ft.lm_head.weight[tid].detach().clone()
    offset = scale * direction / direction.norm()
    with torch.no_grad():
        ft.model.layers[layer].mlp.down_proj.bias += offset
    return (
        from_pretrained_objects(base, tok, name="tiny-base"),
        from_pretrained_objects(ft, tok, name="tiny-ft"),
        offset,
    )
