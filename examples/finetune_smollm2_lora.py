"""LoRA fine-tune of SmolLM2-135M-Instruct with the difflib_models callbacks attached (runs offline on CPU).

    python examples/finetune_smollm2_lora.py --data sycophancy-inducing --steps 40 --out runs/syc
    python examples/finetune_smollm2_lora.py --data sycophancy-neutral  --steps 40 --out runs/control

1. extracts a judge-free sycophancy vector (prompt contrast) from the base model, unless ``--vectors`` is given;
2. fine-tunes a LoRA adapter on a built-in chat set (or a chat JSONL file) with
   - ActivationSnapshot (probe set ``generic``, the middle block, before training, every ``--snapshot-every`` steps
     and at the end),
   - PersonaMonitor (shift along the vector every ``--check-every`` steps; ``--stop-on-fail`` stops training),
   - an MLflow logger on an embedded sqlite store in the run directory (``mlflow ui --backend-store-uri
     sqlite:///<out>/mlflow.db`` shows the metrics, artifacts and the run note);
3. prints where everything went. Compare a trait-inducing run with a matched control run: the monitor's
   thresholds are uncalibrated defaults.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

log = logging.getLogger("finetune_smollm2_lora")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="sycophancy-inducing", help="built-in chat set name or a chat JSONL file")
    p.add_argument("--out", default="runs/smollm2-lora", help="run directory")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--trait", default="sycophancy", help="built-in trait id or trait YAML for the vector")
    p.add_argument("--vectors", default=None, help="an existing persona vector file of SmolLM2 (skips extraction)")
    p.add_argument("--layer", type=int, default=None, help="block to monitor (default: the middle block)")
    p.add_argument("--check-every", type=int, default=10)
    p.add_argument("--snapshot-every", type=int, default=20)
    p.add_argument("--stop-on-fail", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import lightning.pytorch as L

    from difflib_models.callbacks import ActivationSnapshot, PersonaMonitor
    from difflib_models.datasets import dataset_names, load_dataset
    from difflib_models.integrations.mlflow import mlflow_logger
    from difflib_models.models.loading import load_model
    from difflib_models.persona.filtering.scoring import read_chat_jsonl
    from difflib_models.training.lora_module import ChatDataModule, LoRAFineTune, add_lora

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_model()  # the embedded SmolLM2-135M-Instruct (GGUF converted once into the cache)
    layer = args.layer if args.layer is not None else loaded.n_layers // 2
    vectors = args.vectors
    if vectors is None:
        from difflib_models.persona.extraction.extractor import PersonaExtractor

        log.info("extracting the %s vector at blocks.%d (prompt contrast)", args.trait, layer)
        ext = PersonaExtractor(mode="prompt_contrast", layers=[layer], batch_size=8).fit(loaded, args.trait)
        vectors = str(ext.to_vector_set(selected_layer=layer).save(out / f"{args.trait}.safetensors"))
    if args.data in dataset_names():
        rows = load_dataset(args.data)
    else:
        import json

        rows = [json.loads(s.raw) for s in read_chat_jsonl(args.data)]

    module = LoRAFineTune(add_lora(loaded.model, r=8, alpha=16), loaded.tokenizer, lr=args.lr, max_steps=args.steps)
    data = ChatDataModule(loaded.tokenizer, rows, batch_size=args.batch_size, max_length=args.max_length)
    snapshot = ActivationSnapshot(prompts="generic", layers=[layer], every_n_steps=args.snapshot_every,
                                  out_dir=str(out / "snapshots"))
    monitor = PersonaMonitor(vectors=vectors, layer=layer, every_n_steps=args.check_every,
                             stop_on_fail=args.stop_on_fail, out_dir=str(out / "persona_monitor"))
    logger = mlflow_logger(out, run_name=f"lora-{Path(str(args.data)).stem}")
    trainer = L.Trainer(accelerator="cpu", max_steps=args.steps, logger=logger, callbacks=[snapshot, monitor],
                        default_root_dir=out, log_every_n_steps=1, enable_checkpointing=False)
    trainer.fit(module, datamodule=data)

    summary = monitor.summary()
    log.info("persona monitor: %s (first fail step %s, stopped at %s)", summary["status"],
             summary["first_fail_step"], summary["stopped_at_step"])
    log.info("snapshots at steps %s in %s", snapshot.done_steps, out / "snapshots")
    log.info("MLflow: mlflow ui --backend-store-uri %s", logger._tracking_uri)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
