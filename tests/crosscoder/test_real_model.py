"""End to end on a real model: a paired store of TinyStories-656K vs a copy whose embedding of one frequent token
(`and`) gains a new direction -> StoreSource -> Lightning training -> the crosscoder reconstructs the planted
difference, and the latent most specific to the planted token has that token in all its top contexts."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

pytestmark = pytest.mark.shared


def _texts(path, n=80):
    from difflib_models.diffing.sources import split_stories

    stories = split_stories(path.read_text(encoding="utf-8")[:200_000])
    return [s for s in stories if len(s) > 80][:n]


@pytest.fixture(scope="module")
def planted_store(tinystories_656k, tinystories_text, tmp_path_factory):
    from difflib_models.diffing.harvest import harvest_paired
    from difflib_models.diffing.pair import ModelPair
    from difflib_models.models.loading import load_model

    torch.set_num_threads(1)
    base = load_model(tinystories_656k)
    ft = load_model(tinystories_656k)
    tok = base.tokenizer
    texts = _texts(tinystories_text)
    counts = Counter(i for t in texts for i in tok(t, add_special_tokens=False)["input_ids"])
    planted = max((i for i in counts if tok.decode([i]).strip() == "and"), key=counts.__getitem__)
    assert counts[planted] >= 50
    emb = ft.model.get_input_embeddings().weight
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(emb.shape[1], generator=gen)
    with torch.no_grad():  # the "fine-tune": token `and` now writes a new direction into the residual stream
        emb[planted] += 3.0 * emb.norm(dim=-1).mean() * direction / direction.norm()
    store_dir = tmp_path_factory.mktemp("planted") / "store"
    harvest_paired(ModelPair(base, ft), texts, [0], store_dir, batch_size=16, max_length=96)
    return store_dir, planted, tok


def test_store_source_training_on_planted_real_pair(planted_store, tmp_path):
    from difflib_models.crosscoder.analysis import analyze_crosscoder
    from difflib_models.crosscoder.config import CrosscoderConfig
    from difflib_models.crosscoder.examples import max_activating_examples
    from difflib_models.crosscoder.lightning_module import train_crosscoder
    from difflib_models.crosscoder.sources import StoreSource
    from difflib_models.store.reader import ActivationStore

    store_dir, planted, tok = planted_store
    source = StoreSource(store_dir)
    assert source.n_sources == 2 and source.d_model == 128
    assert source.source_names == ["base/blocks.0", "finetuned/blocks.0"]
    store = ActivationStore.open(store_dir)
    want = torch.tensor([store.norm_scale("base", 0), store.norm_scale("finetuned", 0)])
    assert torch.allclose(source.norm_scales(), want)
    cfg = CrosscoderConfig(d_model=128, dict_size=256, activation="batchtopk", k=8, lr=2e-3, steps=300,
                           batch_size=512, dead_steps=100, source_names=source.source_names)
    cc = train_crosscoder(source, cfg, tmp_path)
    res = analyze_crosscoder(cc, source)
    assert res["metrics"]["fve"] > 0.7
    assert sum(res["class_counts"].values()) == 256

    batches = list(store.iter_batches(4096))
    acts = torch.cat([b["acts"][:, :, 0] for b in batches])
    table = {"token_ids": torch.cat([b["token_ids"] for b in batches]),
             "seq_index": torch.cat([b["prompt_id"] for b in batches]),
             "pos_index": torch.cat([b["pos_index"] for b in batches])}
    is_planted = table["token_ids"] == planted
    assert int(is_planted.sum()) >= 30
    x = cc.normalize(acts)
    with torch.no_grad():
        x_hat = cc.eval()(x)
        f = cc.encode(x)
    # the crosscoder reconstructs the fine-tune's change where it happened (the planted token) ...
    diff, diff_hat = x[:, 1] - x[:, 0], x_hat[:, 1] - x_hat[:, 0]
    cos = torch.nn.functional.cosine_similarity(diff[is_planted], diff_hat[is_planted], dim=-1)
    assert float(cos.mean()) > 0.7
    assert float(diff[is_planted].norm(dim=-1).mean()) > 5 * float(diff[~is_planted].norm(dim=-1).mean())
    # ... and the latent most specific to that token shows it in all of its top contexts
    specificity = f[is_planted].mean(0) - f[~is_planted].mean(0)
    best = int(specificity.argmax())
    assert float(f[is_planted, best].mean()) > 10 * float(f[~is_planted, best].mean())
    ex = max_activating_examples(cc, acts, table, [best], tok, top_n=5)[str(best)]
    assert len(ex) == 5
    assert all(c["tokens"][c["index"]] == tok.decode([planted]) for c in ex), [c["text"] for c in ex]


def test_store_source_rejects_bad_selection(planted_store):
    from difflib_models.crosscoder.sources import StoreSource
    from difflib_models.errors import ConfigError

    store_dir, _, _ = planted_store
    with pytest.raises(ConfigError, match="layers"):
        StoreSource(store_dir, layers=[1])
    with pytest.raises(ConfigError, match="sides"):
        StoreSource(store_dir, sides=["base", "chat"])
    one = StoreSource(store_dir, sides=["finetuned"])
    assert one.n_sources == 1 and one.source_names == ["finetuned/blocks.0"]
    batch = next(one.iter_batches(100, shuffle=False))
    assert batch.shape == (100, 1, 128)
