"""Model loading: HF directories, peft adapters, GGUF (cached conversion), the embedded default, bad specs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from difflib_models.errors import ConfigError, ModelLoadError
from difflib_models.models import gguf as gguf_mod
from difflib_models.models.identity import ModelIdentity, weight_hash
from difflib_models.models.loading import EMBEDDED_DEFAULT, from_pretrained_objects, load_model


def test_hf_dir_loads_in_eval_mode_with_stable_hash(tinystories_656k: Path) -> None:
    a = load_model(tinystories_656k)
    b = load_model(str(tinystories_656k))
    assert a.identity.source == "hf_dir"
    assert not a.model.training
    assert a.identity.weight_hash == b.identity.weight_hash
    assert a.identity.weight_hash.startswith("sha256:")
    assert a.tokenizer.pad_token is not None
    assert a.d_model == 128


def test_weight_hash_changes_when_one_weight_changes(tinystories_656k: Path) -> None:
    loaded = load_model(tinystories_656k)
    before = weight_hash(loaded.model)
    with torch.no_grad():
        next(loaded.model.parameters()).view(-1)[0] += 1e-3
    assert weight_hash(loaded.model) != before


def _save_lora_adapter(base_dir: Path, out: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(out)
    cfg = json.loads((out / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(base_dir)
    (out / "adapter_config.json").write_text(json.dumps(cfg))


def test_peft_adapter_dir_and_base_view(tinystories_656k: Path, tmp_path: Path) -> None:
    _save_lora_adapter(tinystories_656k, tmp_path / "adapter")
    plain = load_model(tinystories_656k)
    adapted = load_model(tmp_path / "adapter")  # base read from adapter_config.json
    same = load_model(tinystories_656k, adapter=tmp_path / "adapter")
    assert adapted.is_peft and adapted.identity.source == "peft"
    assert adapted.identity.adapter_hash is not None
    assert adapted.identity.adapter_hash == same.identity.adapter_hash
    # the base weights hash like the plain model: the adapter is hashed separately
    assert adapted.identity.weight_hash == plain.identity.weight_hash
    assert adapted.identity.base is not None and adapted.identity.base.weight_hash == plain.identity.weight_hash
    ids = torch.tensor([[1, 45, 300, 12, 99, 7]])
    with torch.no_grad():
        ref = plain.model(ids).logits
        lora = adapted.model(ids).logits
        with adapted.base_view() as base:
            via_base_view = base(ids).logits
    assert torch.allclose(via_base_view, ref, atol=1e-6)
    assert not torch.allclose(lora, ref, atol=1e-4)  # init_lora_weights=False: the adapter changes outputs
    ident = ModelIdentity.from_dict(json.loads(json.dumps(adapted.identity.to_dict())))
    assert ident == adapted.identity
    assert ident.combined_hash != plain.identity.combined_hash


def test_base_view_on_plain_model_is_a_clear_error(tinystories_656k: Path) -> None:
    loaded = load_model(tinystories_656k)
    with pytest.raises(ConfigError, match="needs a peft model"), loaded.base_view():
        pass


@pytest.mark.parametrize("spec", ["./does/not/exist", "/nonexistent/model", "missing.gguf"])
def test_missing_path_is_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(spec)


def test_directory_without_model_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither"):
        load_model(tmp_path)


def test_hub_id_offline_is_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        load_model("some-org/definitely-not-cached-model")


def test_gguf_without_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"GGUF" + b"\0" * 64)
    real_find_spec = gguf_mod.importlib.util.find_spec
    monkeypatch.setattr(
        gguf_mod.importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real_find_spec(name, *a)
    )
    monkeypatch.setenv("DIFFLIB_MODELS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="pip install gguf"):
        load_model(fake)


def test_from_pretrained_objects_wraps_in_memory_model(tinystories_656k: Path) -> None:
    loaded = load_model(tinystories_656k)
    wrapped = from_pretrained_objects(loaded.model, loaded.tokenizer, name="mine")
    assert wrapped.identity.source == "in_memory"
    assert wrapped.identity.weight_hash == loaded.identity.weight_hash


@pytest.mark.smollm2
def test_embedded_default_answers_paris(smollm2) -> None:
    tok = smollm2.tokenizer
    assert smollm2.identity.name == EMBEDDED_DEFAULT and smollm2.identity.source == "embedded"
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = smollm2.model.generate(**enc, max_new_tokens=10, do_sample=False)
    answer = tok.decode(out[0, enc["input_ids"].shape[1] :])
    assert "Paris" in answer
    enc = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = smollm2.model.generate(**enc, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok.decode(out[0, enc["input_ids"].shape[1] :])
    assert smollm2.d_model == 576


@pytest.mark.smollm2
def test_gguf_conversion_is_cached_and_reused(smollm2_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    assert (smollm2_dir / "model.safetensors").is_file()
    assert (smollm2_dir / "difflib_gguf.json").is_file()
    real = AutoModelForCausalLM.from_pretrained

    def no_gguf(*args, **kwargs):  # the second load must not touch the GGUF again
        assert "gguf_file" not in kwargs, "GGUF was converted again instead of reusing the cache"
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_gguf)
    first = gguf_mod.convert_gguf(gguf_mod.smollm2_gguf_path())
    assert first == smollm2_dir
    loaded = load_model(EMBEDDED_DEFAULT)
    # the weight hash is cached beside the conversion and equals a fresh hash of the loaded weights
    assert loaded.identity.weight_hash == weight_hash(loaded.model)


def test_refresh_identity_rehashes_adapter_only_when_base_frozen(tinystories_656k: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from difflib_models.models import loading

    _save_lora_adapter(tinystories_656k, tmp_path / "adapter")
    adapted = load_model(tmp_path / "adapter")
    before = adapted.identity
    lora_param = next(p for n, p in adapted.model.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        lora_param.add_(0.5)
    monkeypatch.setattr(loading, "weight_hash", lambda m: pytest.fail("base weights re-hashed"))
    after = adapted.refresh_identity()
    assert after.weight_hash == before.weight_hash
    assert after.adapter_hash != before.adapter_hash


def test_load_model_accepts_model_objects(tinystories_656k: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from_dir = load_model(tinystories_656k)
    model = AutoModelForCausalLM.from_pretrained(tinystories_656k)
    tok = AutoTokenizer.from_pretrained(tinystories_656k)
    loaded = load_model(model, tokenizer=tok, name="mine")
    assert loaded.model is model and loaded.tokenizer is tok
    assert loaded.identity.source == "in_memory" and loaded.identity.name == "mine"
    assert loaded.identity.weight_hash == from_dir.identity.weight_hash
    # no tokenizer: the one named by the model's config (_name_or_path) is loaded
    auto = load_model(model)
    assert auto.tokenizer("a cat")["input_ids"] == tok("a cat")["input_ids"]


def test_load_model_object_errors_are_config_errors(tinystories_656k: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    bare = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tinystories_656k))
    bare.config._name_or_path = ""
    with pytest.raises(ConfigError, match="tokenizer"):
        load_model(bare)
    with pytest.raises(ConfigError, match="model object"):
        load_model(42)  # type: ignore[arg-type]


def test_load_model_accepts_a_peft_model_object(tinystories_656k: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    plain = load_model(tinystories_656k)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tinystories_656k),
                                LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    loaded = load_model(peft_model, tokenizer=plain.tokenizer)
    assert loaded.is_peft and loaded.identity.adapter_hash is not None
    assert loaded.identity.weight_hash == plain.identity.weight_hash


@pytest.mark.parametrize("dtype", [torch.bfloat16, "bfloat16"])
def test_dtype_and_device_map_pass_through(tinystories_656k: Path, dtype) -> None:
    # device_map places the weights (from_pretrained); `device` is then ignored: without the passthrough the
    # model would be moved to the meta device here
    loaded = load_model(tinystories_656k, dtype=dtype, device_map="cpu", device="meta")
    params = list(loaded.model.parameters())
    assert params and all(p.dtype == torch.bfloat16 for p in params)
    assert {p.device.type for p in params} == {"cpu"}
    assert loaded.identity.weight_hash == weight_hash(loaded.model)
    assert loaded.identity.weight_hash != load_model(tinystories_656k).identity.weight_hash


def test_bad_dtype_is_config_error(tinystories_656k: Path) -> None:
    with pytest.raises(ConfigError, match="dtype"):
        load_model(tinystories_656k, dtype="float13")


def test_weight_hash_is_cached_by_file_identity(tinystories_656k: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import shutil

    from difflib_models.models import loading

    model_dir = tmp_path / "model"
    shutil.copytree(tinystories_656k, model_dir)
    monkeypatch.setenv("DIFFLIB_MODELS_CACHE", str(tmp_path / "cache"))
    calls: list[int] = []

    def counting(model):
        calls.append(1)
        return weight_hash(model)

    monkeypatch.setattr(loading, "weight_hash", counting)
    first = load_model(model_dir)
    second = load_model(model_dir)
    assert len(calls) == 1  # the second load reads the hash from the user cache
    assert first.identity.weight_hash == second.identity.weight_hash == weight_hash(second.model)
    assert (tmp_path / "cache" / loading.HASH_CACHE_FILE).is_file()
    load_model(model_dir, dtype=torch.bfloat16)  # another dtype: other bytes, another hash
    assert len(calls) == 2
    weights = model_dir / "model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched: hashed again
    third = load_model(model_dir)
    assert len(calls) == 3 and third.identity.weight_hash == first.identity.weight_hash
    load_model(model_dir)
    assert len(calls) == 3


def test_content_sums_are_exact_whatever_the_thread_count_and_see_data_edits(tinystories_656k: Path) -> None:
    """The fingerprint :meth:`LoadedModel.verify_identity` compares: integer sums of the raw bits, the same on 1 and
    2 threads, and changed by an in-place edit through ``.data`` (which autograd's version counter does not see)."""
    from difflib_models.models.identity import content_sums

    loaded = load_model(tinystories_656k)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = content_sums(loaded.model)
        torch.set_num_threads(2)
        two = content_sums(loaded.model)
    finally:
        torch.set_num_threads(threads)
    assert one is not None and one == two and set(one) == set(loaded.model.state_dict())
    name = "model.layers.0.mlp.down_proj.weight"
    param = loaded.model.get_parameter(name)
    version = param._version
    param.data.view(-1)[0] += 1e-3  # no version bump: invisible to autograd
    assert param._version == version
    after = content_sums(loaded.model)
    assert after is not None and [k for k in after if after[k] != one[k]] == [name]
    with torch.device("meta"):
        meta = torch.nn.Linear(4, 4)
    assert content_sums(meta) is None  # nothing to fingerprint: verify_identity checks nothing


def test_verify_identity_rehashes_a_model_edited_in_memory(tinystories_656k: Path) -> None:
    loaded = load_model(tinystories_656k)
    before = loaded.identity
    assert loaded.verify_identity() and loaded.identity is before  # unchanged: nothing recomputed
    with torch.no_grad():
        loaded.model.get_submodule("model.layers.0.mlp.down_proj").weight.data.mul_(1.01)
    assert not loaded.verify_identity()
    assert loaded.identity.weight_hash == weight_hash(loaded.model) != before.weight_hash
    assert loaded.identity.extra.get("edited_in_memory") is True and loaded.identity.path == before.path
    assert loaded.verify_identity()  # the fingerprint follows the new hash
    plain = load_model(tinystories_656k)
    assert plain.identity.weight_hash == before.weight_hash  # the files (and their cached hash) are untouched


def test_verify_identity_of_a_peft_model_follows_base_and_adapter_edits(tinystories_656k: Path,
                                                                         tmp_path: Path) -> None:
    _save_lora_adapter(tinystories_656k, tmp_path / "adapter")
    adapted = load_model(tmp_path / "adapter")
    before = adapted.identity
    lora = next(p for n, p in adapted.model.named_parameters() if "lora_B" in n)
    lora.data.add_(0.5)  # the adapter changed (e.g. trained further in this process): a new adapter hash only
    assert not adapted.verify_identity()
    mid = adapted.identity
    assert mid.adapter_hash != before.adapter_hash and mid.weight_hash == before.weight_hash
    assert mid.base == before.base and "edited_in_memory" not in mid.extra
    base_param = next(p for n, p in adapted.model.named_parameters() if "base_layer" in n)
    base_param.data.mul_(0.5)  # the base weights under the adapter changed: the base is another model now
    assert not adapted.verify_identity()
    after = adapted.identity
    assert after.weight_hash != before.weight_hash and after.adapter_hash == mid.adapter_hash
    assert after.base is not None and after.base.weight_hash == after.weight_hash
    assert after.extra["edited_in_memory"] and after.base.extra["edited_in_memory"]
    with adapted.base_view() as base:
        assert weight_hash(base) == after.base.weight_hash


def test_refresh_during_lora_training_keeps_the_fingerprint_in_step(tinystories_656k: Path, tmp_path: Path) -> None:
    """The cheap LoRA refresh (adapter hashed only) also updates the adapter's part of the fingerprint, so a later
    verify_identity has nothing to re-hash; a base edit made before that refresh is still caught."""
    _save_lora_adapter(tinystories_656k, tmp_path / "adapter")
    adapted = load_model(tmp_path / "adapter")
    for n, p in adapted.model.named_parameters():
        p.requires_grad_("lora_" in n)
    lora = next(p for n, p in adapted.model.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        lora.add_(0.25)
    refreshed = adapted.refresh_identity()
    assert adapted.verify_identity() and adapted.identity is refreshed
    base_param = next(p for n, p in adapted.model.named_parameters() if "base_layer" in n)
    base_param.data.add_(0.1)
    adapted.refresh_identity()  # trusts the frozen base (cheap), but the fingerprint of the base stays the loaded one
    assert not adapted.verify_identity() and adapted.identity.weight_hash != refreshed.weight_hash
