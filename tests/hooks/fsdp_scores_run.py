"""Script behind tests/hooks/test_fsdp.py: a 2-process CPU run with FSDP2 (``fully_shard`` through Lightning's
ModelParallelStrategy, gloo) with the DataFilterCallback and the PersonaMonitor attached. Both score the model
before its first step (filter round 0, monitor baseline) through the sharded model on every rank. Lightning's
subprocess launcher re-executes this script for rank 1, so it must run as a script, not inside pytest.

    python tests/hooks/fsdp_scores_run.py OUT_DIR TOKENIZER_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from tests.callbacks.lit_helpers import ChatLM  # noqa: E402

N_ROWS = 12
FILTER = {"method": "proxy", "mode": "top_k", "top_k": 4, "batch_size": 4}


class ShardedChatLM(ChatLM):
    """ChatLM whose blocks and root are sharded with FSDP2 over the data-parallel mesh."""

    def configure_model(self) -> None:
        from torch.distributed.fsdp import fully_shard

        mesh = self.device_mesh["data_parallel"]
        for block in self.model.model.layers:
            fully_shard(block, mesh=mesh)
        fully_shard(self.model, mesh=mesh)


def vector_file(out: Path, module: torch.nn.Module) -> str:
    from tests.callbacks.test_persona_monitor import _vector_file

    return _vector_file(out / "syc", module, torch.randn(32, generator=torch.Generator().manual_seed(7)))


def main(out: Path, tokenizer: str) -> None:
    import lightning.pytorch as L
    from lightning.pytorch.strategies import ModelParallelStrategy

    from difflib_models.callbacks import DataFilterCallback, PersonaMonitor

    module = ShardedChatLM(tokenizer_dir=tokenizer, n_rows=N_ROWS)
    vf = vector_file(out, module)
    filt = DataFilterCallback(vectors=vf, out_dir=str(out / "filter"), **FILTER)
    mon = PersonaMonitor(vectors=vf, every_n_steps=1, out_dir=str(out / "mon"))
    trainer = L.Trainer(
        default_root_dir=out, accelerator="cpu", devices=2, max_steps=1, logger=False, enable_checkpointing=False,
        strategy=ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
        enable_progress_bar=False, enable_model_summary=False, callbacks=[filt, mon],
    )
    trainer.fit(module)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
