"""Script behind tests/callbacks/test_fsdp.py: a 2-process CPU run with FSDP2 (``fully_shard`` through Lightning's
ModelParallelStrategy, gloo) and the callbacks attached. Lightning's subprocess launcher re-executes this script
for rank 1, so it must run as a script, not inside pytest.

    python tests/callbacks/fsdp_run.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from tests.callbacks.lit_helpers import MetricRecorder, TinyLM  # noqa: E402

PROMPTS = ["Once upon a time there was a cat.", "The dog ran to the park.", "Lily had a red ball."]


class ShardedTinyLM(TinyLM):
    """TinyLM whose blocks and root are sharded with FSDP2 over the data-parallel mesh."""

    def configure_model(self) -> None:
        from torch.distributed.fsdp import fully_shard

        mesh = self.device_mesh["data_parallel"]
        for block in self.model.model.layers:
            fully_shard(block, mesh=mesh)
        fully_shard(self.model, mesh=mesh)


def main(out: Path) -> None:
    import lightning.pytorch as L
    from lightning.pytorch.strategies import ModelParallelStrategy

    from difflib_models.callbacks import ActivationSnapshot, PersonaMonitor
    from tests.callbacks.test_persona_monitor import _vector_file

    tokenizer = sys.argv[2]
    module = ShardedTinyLM(tokenizer_dir=tokenizer, n_samples=16)
    vf = _vector_file(out / "syc", module, torch.randn(32, generator=torch.Generator().manual_seed(5)))
    snap = ActivationSnapshot(prompts=PROMPTS, layers=[0, 1], every_n_steps=2, out_dir=str(out / "snaps"))
    # responses=True: each check generates through the sharded model (every forward is a collective)
    mon = PersonaMonitor(vectors=vf, every_n_steps=2, responses=True, response_tokens=4, response_prompts=4,
                         fail_response_null_z=None, out_dir=str(out / "mon"))
    trainer = L.Trainer(
        default_root_dir=out, accelerator="cpu", devices=2, max_steps=5, logger=False, enable_checkpointing=False,
        strategy=ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[snap, mon, MetricRecorder(str(out / "ranks"))],
    )
    trainer.fit(module)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
