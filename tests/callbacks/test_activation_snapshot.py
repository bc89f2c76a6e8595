"""ActivationSnapshot on tiny Lightning runs: exact steps (with gradient accumulation), a true-base first snapshot,
resume without duplicates or gaps, eval-mode probes and argument validation."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from difflib_models.errors import ConfigError
from tests.callbacks.lit_helpers import TinyLM

PROMPTS = ["Once upon a time there was a cat.", "The dog ran to the park.", "Lily had a red ball.",
           "Tom liked to eat apples."]


def _trainer(tmp_path: Path, callbacks: list, **kw):
    import lightning.pytorch as L

    args = dict(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, max_epochs=1)
    args.update(kw)
    return L.Trainer(callbacks=callbacks, **args)


def _snap(tmp_path: Path, **kw):
    from difflib_models.callbacks import ActivationSnapshot

    kw.setdefault("prompts", PROMPTS)
    kw.setdefault("layers", [0, 2])
    return ActivationSnapshot(out_dir=str(tmp_path / "snaps"), **kw)


def _acts(store_dir: Path) -> torch.Tensor:
    from difflib_models.store.reader import ActivationStore

    store = ActivationStore.open(store_dir)
    return torch.cat([b["acts"] for b in store.iter_batches(4096)], dim=0)


def test_steps_exact_and_first_snapshot_is_untouched_model(tmp_path: Path, tinystories_656k: Path) -> None:
    from difflib_models.capture.capture import iter_capture
    from difflib_models.models.loading import from_pretrained_objects

    module = TinyLM(tokenizer_dir=str(tinystories_656k))
    untouched = copy.deepcopy(module.model)
    cb = _snap(tmp_path, every_n_steps=4)
    _trainer(tmp_path, [cb], max_steps=10).fit(module)
    index = json.loads((tmp_path / "snaps" / "index.json").read_text())
    steps = [e["step"] for e in index["snapshots"]]
    assert steps == [0, 4, 8, 10]
    assert index["snapshots"][0]["kinds"] == ["start"] and index["snapshots"][-1]["kinds"] == ["end"]
    assert sorted(p.name for p in (tmp_path / "snaps").glob("step-*")) == [f"step-{s:08d}" for s in steps]
    # the step-0 store is the model before any optimizer step
    loaded = from_pretrained_objects(untouched, module.tokenizer)
    ref = [b.acts for _, b in iter_capture(loaded, PROMPTS, [0, 2], batch_size=8, max_length=64)]
    ref0 = torch.cat([r[0] for r in ref])
    ref2 = torch.cat([r[2] for r in ref])
    first = _acts(tmp_path / "snaps" / "step-00000000")
    assert first.shape == (ref0.shape[0], 1, 2, 32)
    torch.testing.assert_close(first[:, 0, 0], ref0, rtol=0, atol=1e-6)
    torch.testing.assert_close(first[:, 0, 1], ref2, rtol=0, atol=1e-6)
    # training moved the weights, so the last snapshot differs from the first
    last = _acts(tmp_path / "snaps" / "step-00000010")
    assert (last - first).abs().max() > 1e-3
    # the probe left the module in train mode
    assert module.model.training


def test_gradient_accumulation_keys_on_optimizer_steps(tmp_path: Path, tinystories_656k: Path) -> None:
    module = TinyLM(tokenizer_dir=str(tinystories_656k), n_samples=24)
    cb = _snap(tmp_path, every_n_steps=2, at_end=False)
    # 12 batches per epoch, 3 micro-batches per optimizer step -> 4 optimizer steps per epoch, 2 epochs -> 8 steps
    _trainer(tmp_path, [cb], max_epochs=2, accumulate_grad_batches=3).fit(module)
    assert cb.done_steps == [0, 2, 4, 6, 8]


def test_every_n_epochs_and_dropout_off_during_probe(tmp_path: Path, tinystories_656k: Path) -> None:
    module = TinyLM(tokenizer_dir=str(tinystories_656k), n_samples=8, lora=True)  # LoRA dropout 0.1
    seen: list[bool] = []
    handle = module.model.get_base_model().model.layers[0].register_forward_hook(
        lambda m, a, o: seen.append(m.training))
    cb = _snap(tmp_path, every_n_epochs=2, at_start=False, at_end=False)
    _trainer(tmp_path, [cb], max_epochs=4).fit(module)
    handle.remove()
    assert cb.done_steps == [8, 16]  # 4 steps per epoch; end of epochs 2 and 4
    # training forwards ran in train mode, the 2 probe forwards (1 batch each) in eval mode
    assert seen.count(False) == 2 and seen.count(True) == 16


def test_resume_gives_same_snapshots_as_uninterrupted(tmp_path: Path, tinystories_656k: Path) -> None:
    import lightning.pytorch as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(root: Path, crash_at: int | None, ckpt: str | None = None):
        class Crash(L.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if crash_at is not None and trainer.global_step == crash_at:
                    raise RuntimeError("simulated crash")

        module = TinyLM(tokenizer_dir=str(tinystories_656k), n_samples=12)  # 6 steps per epoch
        cb = ActivationSnapshotCls(prompts=PROMPTS, layers=[1], every_n_steps=4, out_dir=str(root / "snaps"))
        mon = PersonaMonitor(vectors=vf, every_n_steps=4, out_dir=str(root / "mon"))
        mc = ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=6, save_top_k=-1)
        trainer = _trainer(root, [cb, mon, mc, Crash()], max_steps=12, max_epochs=None, enable_checkpointing=True)
        trainer.fit(module, ckpt_path=ckpt)
        monitors.append(mon)
        return cb

    from difflib_models.callbacks import ActivationSnapshot as ActivationSnapshotCls
    from difflib_models.callbacks import PersonaMonitor
    from tests.callbacks.test_persona_monitor import _vector_file

    monitors: list = []
    vf = _vector_file(tmp_path / "syc", TinyLM(tokenizer_dir=str(tinystories_656k)),
                      torch.randn(32, generator=torch.Generator().manual_seed(5)))
    full = run(tmp_path / "full", None)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "crashed", 9)
    crashed_index = json.loads((tmp_path / "crashed" / "snaps" / "index.json").read_text())
    assert [e["step"] for e in crashed_index["snapshots"]] == [0, 4, 8]
    ckpt = next((tmp_path / "crashed" / "ckpt").glob("*step=6*.ckpt"))
    resumed = run(tmp_path / "crashed", None, str(ckpt))
    assert full.done_steps == resumed.done_steps == [0, 4, 8, 12]
    index = json.loads((tmp_path / "crashed" / "snaps" / "index.json").read_text())
    assert [e["step"] for e in index["snapshots"]] == [0, 4, 8, 12]
    # the monitor resumed with the step-0 baseline from disk and reproduces the uninterrupted series
    assert [r["step"] for r in monitors[-1].series] == [4, 8, 12] and monitors[-1].baseline_step == 0
    for a, b in zip(monitors[0].series, monitors[-1].series, strict=True):
        for key, value in a["traits"]["sycophancy"].items():
            assert b["traits"]["sycophancy"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    # step 8 was retaken after the resume and equals the uninterrupted run's (same data order, same weights)
    for step in (0, 4, 8, 12):
        a = _acts(tmp_path / "full" / "snaps" / f"step-{step:08d}")
        b = _acts(tmp_path / "crashed" / "snaps" / f"step-{step:08d}")
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_bad_arguments(tmp_path: Path, tinystories_656k: Path) -> None:
    from difflib_models.callbacks import ActivationSnapshot

    with pytest.raises(ConfigError, match="prompts"):
        ActivationSnapshot(prompts=[])
    with pytest.raises(ConfigError, match="every_n_steps"):
        ActivationSnapshot(prompts=PROMPTS, every_n_steps=0)
    with pytest.raises(ConfigError, match="never take a snapshot"):
        ActivationSnapshot(prompts=PROMPTS, at_start=False, at_end=False)
    cb = ActivationSnapshot(prompts=PROMPTS, layers=[5], out_dir=str(tmp_path / "s"))
    module = TinyLM(tokenizer_dir=str(tinystories_656k))
    with pytest.raises(ConfigError, match="layers"):
        _trainer(tmp_path, [cb], max_steps=2).fit(module)
    assert not (tmp_path / "s").exists()  # failed before any training or writing


def test_state_key_distinguishes_instances() -> None:
    from difflib_models.callbacks import ActivationSnapshot

    a = ActivationSnapshot(prompts=PROMPTS, layers=[0], every_n_steps=2)
    b = ActivationSnapshot(prompts=PROMPTS, layers=[1], every_n_steps=2)
    assert a.state_key != b.state_key and a.state_key.startswith("ActivationSnapshot{")
    a._done = {0: {"step": 0, "kinds": ["start"]}}
    b.load_state_dict(a.state_dict())
    assert b.done_steps == [0]
    b.load_state_dict({})  # tolerant
    assert b.done_steps == []


CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CHATS = [[{"role": "user", "content": "Where did the cat go?"}],
         [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about a red ball."}]]


def _chat_file(tmp_path: Path) -> Path:
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in CHATS) + json.dumps({"text": "Lily ran."})
                    + "\n", encoding="utf-8")
    return path


def _stored_ids(store_dir: Path) -> list[list[int]]:
    from difflib_models.store.reader import ActivationStore

    table = ActivationStore.open(store_dir).token_table()
    ids, seq = table["token_ids"], table["prompt_id"]
    return [ids[seq == p].tolist() for p in sorted(set(seq.tolist()))]


def test_chat_probe_prompts_use_the_chat_template(tmp_path: Path, tinystories_656k: Path) -> None:
    module = TinyLM(tokenizer_dir=str(tinystories_656k))
    tok = module.tokenizer
    tok.chat_template = CHAT_TEMPLATE
    cb = _snap(tmp_path, prompts=str(_chat_file(tmp_path)), layers=[1], at_end=False, max_length=64)
    _trainer(tmp_path, [cb], max_steps=1).fit(module)
    stored = _stored_ids(tmp_path / "snaps" / "step-00000000")
    bos = tok.bos_token_id
    expected = []
    for messages in CHATS:
        ids = list(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))
        assert ids[0] == bos and ids[1] != bos and tok.convert_ids_to_tokens(ids[-1]) != ""
        expected.append(ids[1:])  # the capture drops a leading BOS: one BOS, not two, was fed to the model
    expected.append(tok("Lily ran.", add_special_tokens=True)["input_ids"][1:])  # plain text records unchanged
    assert stored == expected
    assert cb.texts[0].startswith(tok.bos_token) and cb.texts[0].endswith("<|assistant|>")


def test_chat_probe_prompts_without_template_fall_back_with_warning(tmp_path: Path, tinystories_656k: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    module = TinyLM(tokenizer_dir=str(tinystories_656k))
    module.tokenizer.chat_template = None
    cb = _snap(tmp_path, prompts=str(_chat_file(tmp_path)), layers=[1], at_end=False, max_length=64)
    with caplog.at_level("WARNING", logger="difflib_models.callbacks.activation_snapshot"):
        _trainer(tmp_path, [cb], max_steps=1).fit(module)
    assert "no chat template" in caplog.text
    assert cb.texts == ["user: Where did the cat go?\nassistant:",
                        "system: Be brief.\nuser: Tell me about a red ball.\nassistant:", "Lily ran."]
    stored = _stored_ids(tmp_path / "snaps" / "step-00000000")
    assert stored[0] == module.tokenizer(cb.texts[0])["input_ids"][1:]
