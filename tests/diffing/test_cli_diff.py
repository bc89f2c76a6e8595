from __future__ import annotations

import json

import pytest

from difflib_models.cli.app import main
from difflib_models.diffing.finetune import LoraFinetuneConfig, lora_finetune
from difflib_models.models.loading import load_model


def _run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(args)
    return int(exc.value.code)


@pytest.fixture(scope="module")
def tiny_finetunes(tinystories_656k, tmp_path_factory):
    """A LoRA adapter of TinyStories-656K and the same fine-tune merged into a full model directory."""
    import torch

    root = tmp_path_factory.mktemp("ft")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: the per-test one-thread fixture is not active yet
    lm = load_model(tinystories_656k)
    texts = ["Once upon a time, there was a fish named Fin. Fin liked to swim in the sea."] * 4
    res = lora_finetune(lm.model, lm.tokenizer, texts, LoraFinetuneConfig(r=4, steps=5, batch_size=4, lr=1e-2))
    res.model.save_pretrained(root / "adapter")
    merged = res.model.merge_and_unload()
    merged.save_pretrained(root / "full")
    lm.tokenizer.save_pretrained(root / "full")
    torch.set_num_threads(threads)
    return root


@pytest.mark.shared
def test_diff_command_adapter_and_full(tinystories_656k, tiny_finetunes, tmp_path, capsys) -> None:
    texts = tmp_path / "texts.jsonl"
    texts.write_text("\n".join(json.dumps({"text": f"Tom saw a big dog number {i}. They played."}) for i in range(12)))
    common = ["--layers", "0,1", "--no-crosscoder", "--batch-size", "4"]
    code = _run(["diff", "--base", str(tinystories_656k), "--adapter", str(tiny_finetunes / "adapter"),
                 "--out", str(tmp_path / "a"), "--prompts", str(texts), *common])
    assert code == 0
    out = capsys.readouterr().out
    assert "ADL blocks.1 top tokens" in out and "diff.json" in out
    a = json.loads((tmp_path / "a" / "diff.json").read_text())
    assert a["pair_mode"] == "adapter" and a["identities"]["finetuned"]["adapter_hash"]
    assert a["weight_deltas"]["kind"] == "lora" and a["weight_deltas"]["n_modules"] == 2 * 7
    # the old spellings (--finetuned, --texts) still work for one release, with a warning on stderr
    code = _run(["diff", "--base", str(tinystories_656k), "--finetuned", str(tiny_finetunes / "full"),
                 "--out", str(tmp_path / "f"), "--texts", str(texts), *common])
    assert code == 0
    err = capsys.readouterr().err
    assert "--finetuned is deprecated" in err and "--texts is deprecated" in err
    f = json.loads((tmp_path / "f" / "diff.json").read_text())
    assert f["pair_mode"] == "two_models" and f["weight_deltas"]["kind"] == "full"
    # the merged full fine-tune and the adapter are the same function: same drift and ADL
    for da, df in zip(a["drift"]["layers"], f["drift"]["layers"], strict=True):
        assert df["mean_diff_norm"] == pytest.approx(da["mean_diff_norm"], rel=1e-3, abs=1e-6)
        assert df["cka"] == pytest.approx(da["cka"], abs=1e-4)
    assert f["adl"]["layers"]["1"]["norm"] == pytest.approx(a["adl"]["layers"]["1"]["norm"], rel=1e-3)
    # LoRA B@A norms equal the full weight deltas of the merged modules
    lora = {m["name"]: m["delta_fro"] for m in a["weight_deltas"]["modules"]}
    full = {m["name"].removesuffix(".weight"): m["delta_fro"] for m in f["weight_deltas"]["modules"]}
    assert set(lora) == set(full)
    for name, value in lora.items():
        assert full[name] == pytest.approx(value, rel=1e-3)
    # crosscoder options reach the crosscoder: an L1 dedicated feature crosscoder
    code = _run(["diff", "--base", str(tinystories_656k), "--adapter", str(tiny_finetunes / "adapter"),
                 "--out", str(tmp_path / "c"), "--layers", "1", "--texts", str(texts), "--batch-size", "4", "--no-kl",
                 "--dict-size", "64", "--steps", "20", "--cc-batch-size", "64", "--activation", "l1",
                 "--exclusive-latents", "4", "--exclusive-penalty", "1.5"])
    assert code == 0
    cc = json.loads((tmp_path / "c" / "diff.json").read_text())["crosscoder"]
    assert cc["status"] == "trained"
    assert (cc["config"]["activation"], cc["config"]["exclusive_latents"], cc["config"]["exclusive_penalty"]) == (
        "l1", 4, 1.5)


@pytest.mark.shared
def test_diff_command_bad_input_exits_2(tinystories_656k, stories260k, tiny_finetunes, tmp_path, capsys) -> None:
    assert _run(["diff", "--base", str(tinystories_656k), "--out", str(tmp_path / "x")]) == 2
    assert "--candidate" in capsys.readouterr().err
    assert _run(["diff", "--base", str(tinystories_656k), "--candidate", str(stories260k), "--adapter",
                 str(tiny_finetunes / "adapter"), "--out", str(tmp_path / "x")]) == 2
    assert _run(["diff", "--base", str(tinystories_656k), "--candidate", str(stories260k),
                 "--out", str(tmp_path / "x"), "--no-crosscoder"]) == 2
    assert "tokenizer" in capsys.readouterr().err
    assert _run(["diff", "--base", str(tinystories_656k), "--adapter", str(tiny_finetunes / "adapter"),
                 "--layers", "5", "--out", str(tmp_path / "y"), "--no-crosscoder"]) == 2
