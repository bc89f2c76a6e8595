from __future__ import annotations

import json

import pytest
import torch

from difflib_models.diffing.pair import ModelPair
from difflib_models.diffing.pipeline import DiffConfig, crosscoder_available, run_diff
from difflib_models.errors import ConfigError
from tests.diffing._helpers import SENTENCES, planted_pair

TEXTS = SENTENCES * 4


def test_baseline_pipeline_writes_diff_json_and_resumes(tmp_path) -> None:
    base, ft, offset = planted_pair(layer=1, token="cake")
    pair = ModelPair(base, ft)
    cfg = DiffConfig(out=tmp_path / "d", layers="0,1", texts=TEXTS, crosscoder=False, top_tokens=5)
    result = run_diff(pair, cfg)
    on_disk = json.loads((tmp_path / "d" / "diff.json").read_text())
    assert on_disk["format"] == "difflib_models.diff/1" and on_disk["layers"] == [0, 1]
    assert "blocks.i" in on_disk["layer_convention"]
    assert on_disk["identities"]["base"]["weight_hash"] == base.identity.weight_hash
    d0, d1 = on_disk["drift"]["layers"]
    assert d0["mean_diff_norm"] == 0.0
    assert d1["mean_diff_norm"] == pytest.approx(float(offset.norm()), rel=1e-5)
    assert on_disk["drift"]["next_token_kl"]["mean"] > 0
    assert on_disk["adl"]["layers"]["1"]["top_tokens"][0]["token"] == "cake"
    wd = on_disk["weight_deltas"]
    assert wd["kind"] == "full" and [m["name"] for m in wd["modules"]] == ["model.layers.1.mlp.down_proj.bias"]
    assert wd["modules"][0]["delta_fro"] == pytest.approx(float(offset.norm()), rel=1e-5)
    assert on_disk["crosscoder"]["status"] == "skipped"
    from safetensors.torch import load_file

    vec = load_file(str(tmp_path / "d" / "adl_vectors.safetensors"))["blocks.1"]
    assert torch.nn.functional.cosine_similarity(vec, offset, dim=0) > 0.999
    assert all(not t["reused"] for t in result["stages"].values())
    again = run_diff(pair, cfg)
    assert all(t["reused"] for t in again["stages"].values())
    assert again["adl"] == result["adl"] and again["drift"] == result["drift"]
    # a changed setting redoes only the stages it affects
    cfg2 = DiffConfig(out=tmp_path / "d", layers="0,1", texts=TEXTS, crosscoder=False, top_tokens=5, adl_k=3)
    third = run_diff(pair, cfg2)
    assert third["stages"]["harvest"]["reused"] and third["stages"]["drift"]["reused"]
    assert not third["stages"]["adl"]["reused"]
    # a deleted store is harvested again even though its marker is there
    import shutil

    shutil.rmtree(tmp_path / "d" / "store")
    fourth = run_diff(pair, cfg2)
    assert not fourth["stages"]["harvest"]["reused"] and fourth["store"]["n_tokens"] == result["store"]["n_tokens"]


@pytest.mark.skipif(not crosscoder_available(), reason="crosscoder training not available")
def test_pipeline_with_crosscoder(tmp_path) -> None:
    base, ft, offset = planted_pair(layer=1, token="cake")
    cfg = DiffConfig(out=tmp_path / "d", layers="1", texts=TEXTS, kl=False, dict_size=64, k=4, steps=30,
                     cc_batch_size=64, top_latents=3, n_examples=2)
    result = run_diff(ModelPair(base, ft), cfg)
    cc = result["crosscoder"]
    assert cc["status"] == "trained"
    assert sum(cc["class_counts"].values()) == 64
    assert 0.0 < cc["metrics"]["fve"] <= 1.0
    for side in ("base", "finetuned"):
        sp = cc["splice"][side]
        assert sp["layer"] == 1 and sp["n_tokens"] > 0
        assert sp["n_tokens"] == sum(len(t.split()) for t in TEXTS[:16])  # real tokens minus BOS
        gap = sp["ce_ablated"] - sp["ce_clean"]
        assert sp["ce_recovered"] == pytest.approx((sp["ce_ablated"] - sp["ce_spliced"]) / gap)
    assert cc["splice"]["base"]["ce_clean"] != cc["splice"]["finetuned"]["ce_clean"]
    # the planted offset is token-independent: the crosscoder absorbs it in the decoder biases
    shift = cc["decoder_bias_shift"]["1"]
    assert shift["norm"] == pytest.approx(float(offset.norm()), rel=0.3)
    assert shift["top_tokens"][0]["token"] == "cake"
    assert (tmp_path / "d" / cc["dir"] / "crosscoder").is_dir() and cc["dir"].startswith("crosscoder/")
    assert cc["top_ft_only_latents"] or cc["top_ft_leaning_latents"]
    for row in cc["top_ft_leaning_latents"]:
        assert row["class"] != "dead" and row["examples"]
    for row in cc["top_ft_only_latents"]:
        assert row["class"] == "ft_only" and "latent_scaling" in row
        for ex in row["examples"]:
            assert "[[" in ex["text"]
    assert json.loads((tmp_path / "d" / "diff.json").read_text())["crosscoder"]["status"] == "trained"


def test_pipeline_with_dedicated_feature_crosscoder(tmp_path) -> None:
    base, ft, _ = planted_pair(layer=1, token="cake")
    cfg = DiffConfig(out=tmp_path / "d", layers="1", texts=TEXTS, kl=False, dict_size=64, activation="l1",
                     steps=30, cc_batch_size=64, top_latents=3, n_examples=2, splice_texts=0, exclusive_latents=4)
    cc = run_diff(ModelPair(base, ft), cfg)["crosscoder"]
    assert cc["status"] == "trained" and cc["config"]["exclusive_latents"] == 4
    # the 4 fine-tune-dedicated latents are fine-tune-only by construction (unless dead); each reported one
    # carries its Latent Scaling verdict
    assert cc["class_counts"]["ft_only"] + cc["class_counts"]["dead"] >= 4
    assert cc["top_ft_only_latents"]
    for row in cc["top_ft_only_latents"]:
        assert row["class"] == "ft_only" and "latent_scaling" in row
    # a different partition is a different crosscoder: not reused from the stage cache
    again = run_diff(ModelPair(base, ft), DiffConfig(**{**cfg.key_dict(), "out": tmp_path / "d", "texts": TEXTS,
                                                        "exclusive_latents": 2}))["crosscoder"]
    assert again["config"]["exclusive_latents"] == 2 and again["dir"] != cc["dir"]


def test_config_validation(tmp_path) -> None:
    with pytest.raises(ConfigError, match="steps"):
        DiffConfig(out=tmp_path, steps=0)
    with pytest.raises(ConfigError, match="exclusive_latents"):
        DiffConfig(out=tmp_path, exclusive_latents=-1)
    with pytest.raises(ConfigError, match="activation"):
        DiffConfig(out=tmp_path, activation="relu")


def test_public_names_and_no_lightning_at_import() -> None:
    import subprocess
    import sys

    code = ("import sys, difflib_models as d; d.run_diff; d.DiffConfig; d.ModelPair; d.harvest_paired; "
            "d.activation_difference_lens; d.weight_deltas; d.lora_finetune; import difflib_models.cli.diff; "
            "assert 'lightning' not in sys.modules and 'mlflow' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not crosscoder_available(), reason="crosscoder not available")
def test_splice_on_adapter_pair_equals_two_model_pair() -> None:
    import copy

    from difflib_models.crosscoder.config import CrosscoderConfig
    from difflib_models.crosscoder.model import Crosscoder
    from difflib_models.diffing.pipeline import _splice
    from difflib_models.models.loading import from_pretrained_objects
    from tests.diffing._helpers import make_word_tokenizer
    from tests.helpers.tiny_models import make_tiny_lora

    tok = make_word_tokenizer()
    peft_model = make_tiny_lora(vocab_size=len(tok))
    cc = Crosscoder(CrosscoderConfig(d_model=32, n_sources=2, dict_size=64, k=4, batch_size=8, steps=10))
    cfg = DiffConfig(out="unused", max_length=16)
    adapter = _splice(ModelPair.from_adapter(from_pretrained_objects(peft_model, tok)), cc, SENTENCES, 1, cfg)
    base = copy.deepcopy(peft_model).unload()
    merged = copy.deepcopy(peft_model).merge_and_unload()
    two = _splice(ModelPair(from_pretrained_objects(base, tok), from_pretrained_objects(merged, tok)), cc,
                  SENTENCES, 1, cfg)
    for side in ("base", "finetuned"):
        for key in ("ce_clean", "ce_spliced", "ce_ablated"):
            assert adapter[side][key] == pytest.approx(two[side][key], rel=1e-4)
    assert abs(adapter["base"]["ce_clean"] - adapter["finetuned"]["ce_clean"]) > 1e-4  # the adapter matters
