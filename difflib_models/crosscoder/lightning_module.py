"""`CrosscoderLightningModule` and `train_crosscoder`: crosscoder training through Lightning (imports Lightning).

Lightning supplies checkpointing, resume, loggers (CSV, TensorBoard, MLflow, ...) and DDP. The module keeps
the dead-latent counters and the BatchTopK threshold as buffers of the crosscoder, so they are checkpointed;
under DDP the "fired" masks are OR-reduced and the threshold estimates averaged across ranks every step.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from difflib_models.crosscoder.config import CrosscoderConfig
from difflib_models.crosscoder.datamodule import CrosscoderDataModule
from difflib_models.crosscoder.model import Crosscoder
from difflib_models.crosscoder.sources import PairedActivationSource
from difflib_models.errors import ConfigError, bad_value
from difflib_models.files import check_torch_checkpoint
from difflib_models.io import atomic_write_bytes
from difflib_models.progress import progress_enabled

_log = logging.getLogger(__name__)


def lr_factor(step: int, total: int, warmup_frac: float, decay_frac: float) -> float:
    """Linear warm-up over the first ``warmup_frac`` of steps, constant, linear decay to 0 over the last
    ``decay_frac``.

    Kept rather than transformers' ``get_wsd_schedule(warmup_type="linear", decay_type="linear")``: that gives
    the same factors after warm-up, but its warm-up is ``step / warm`` (learning rate 0 at step 0, a wasted
    step) where this one is ``(step + 1) / warm`` (tests/crosscoder/test_lightning_module.py checks both)."""
    warm = int(round(warmup_frac * total))
    decay = int(round(decay_frac * total))
    if warm > 0 and step < warm:
        return (step + 1) / warm
    if decay > 0 and step >= total - decay:
        return max(0.0, (total - step) / decay)
    return 1.0


def penalty_factor(step: int, total: int, warmup_frac: float) -> float:
    warm = int(round(warmup_frac * total))
    return 1.0 if warm == 0 else min(1.0, (step + 1) / warm)


class CrosscoderLightningModule(pl.LightningModule):
    """Trains a :class:`Crosscoder` on raw activation batches [B, M, d] (normalised inside)."""

    def __init__(self, config: CrosscoderConfig | dict[str, Any], *, sparse: bool = True,
                 norm_scales: Tensor | None = None, b_dec_init: Tensor | None = None) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = CrosscoderConfig.from_dict(config)
        self.save_hyperparameters({"config": config.to_dict(), "sparse": sparse})
        self.config = config
        self.crosscoder = Crosscoder(config, sparse=sparse)
        if norm_scales is not None:
            if norm_scales.shape != (config.n_sources,):
                raise ConfigError(bad_value("norm_scales.shape", tuple(norm_scales.shape), [(config.n_sources,)]))
            self.crosscoder.norm_scale.copy_(norm_scales)
        if b_dec_init is not None:
            self.crosscoder.init_b_dec(b_dec_init)

    def configure_optimizers(self) -> Any:
        cfg = self.config
        opt = torch.optim.Adam(self.crosscoder.parameters(), lr=cfg.effective_lr, betas=(0.9, 0.999))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, cfg.steps, cfg.warmup_frac, cfg.decay_frac)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        cfg = self.config
        x = self.crosscoder.normalize(batch.to(self.device, torch.float32))
        scale = penalty_factor(self.global_step, cfg.steps, cfg.l1_warmup_frac)
        out = self.crosscoder.training_step_output(x, penalty_scale=scale)
        fired, min_kept = out.fired, out.min_kept_score
        if self.trainer.world_size > 1:
            fired = self.trainer.strategy.reduce(fired.float(), reduce_op="sum") > 0
            if min_kept is not None:
                min_kept = self.trainer.strategy.reduce(min_kept.detach(), reduce_op="mean")
        self.crosscoder.update_state(fired, min_kept)
        dead_frac = self.crosscoder.dead_mask().float().mean()
        metrics = {"train/loss": out.loss.detach(), "train/mse": out.mse, "train/fve": out.fve,
                   "train/l0": out.l0, "train/dead_frac": dead_frac}
        if cfg.activation == "l1":
            metrics["train/penalty"] = out.penalty
        elif cfg.aux_coeff > 0:
            metrics["train/aux"] = out.aux
        self.log_dict(metrics, on_step=True, prog_bar=False, sync_dist=self.trainer.world_size > 1)
        return out.loss


def _init_stats(source: PairedActivationSource, scales: Tensor, seed: int, n: int = 8192) -> Tensor:
    """Per-source mean of normalised activations (b_dec init) from one sample batch."""
    batch = next(iter(source.iter_batches(min(n, source.n_tokens), shuffle=True, seed=seed)))
    return (batch.float() * scales[None, :, None]).mean(0)


def train_crosscoder(
    source: PairedActivationSource,
    config: CrosscoderConfig,
    out_dir: str | Path,
    *,
    max_steps: int | None = None,
    logger: Any = None,
    resume: bool = True,
    sparse: bool = True,
    checkpoint_every: int | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
) -> Crosscoder:
    """Train a crosscoder on ``source`` and save it to ``out_dir/crosscoder`` (safetensors + JSON).

    Checkpoints go to ``out_dir/checkpoints`` (``last.ckpt``); with ``resume`` an existing ``last.ckpt`` is
    continued. ``max_steps`` (default ``config.steps``) is where this call stops; the schedules always span
    ``config.steps``. ``trainer_kwargs`` go to ``lightning.pytorch.Trainer`` (e.g. ``strategy="ddp_spawn",
    devices=2``); CPU is the default accelerator."""
    if source.n_sources != config.n_sources or source.d_model != config.d_model:
        raise ConfigError(
            bad_value("config (n_sources, d_model)", (config.n_sources, config.d_model),
                      [(source.n_sources, source.d_model)], "the config must match the activation source")
        )
    max_steps = config.steps if max_steps is None else max_steps
    if max_steps < 1:
        raise ConfigError(bad_value("max_steps", max_steps, "an integer >= 1"))
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    pl.seed_everything(config.seed, workers=True, verbose=False)
    scales = source.norm_scales().float()
    module = CrosscoderLightningModule(config, sparse=sparse, norm_scales=scales,
                                       b_dec_init=_init_stats(source, scales, config.seed))
    data = CrosscoderDataModule(source, config.batch_size, seed=config.seed)
    every = checkpoint_every or max(1, min(1000, max_steps // 4))
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0,
                                              every_n_train_steps=every)
    kwargs: dict[str, Any] = {
        "accelerator": "cpu", "devices": 1, "max_steps": max_steps, "logger": logger if logger is not None else False,
        "callbacks": [checkpoint], "enable_progress_bar": _progress(), "enable_model_summary": False,
        "log_every_n_steps": max(1, min(50, max_steps // 10)),
    }
    kwargs.update(trainer_kwargs or {})
    kwargs.setdefault("plugins", [AtomicCheckpointIO()])
    trainer = pl.Trainer(**kwargs)
    _remove_stale_temp_files(ckpt_dir, out_dir / "crosscoder")
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if resume and last.is_file() else None
    if ckpt_path:
        check_torch_checkpoint(last, what="resume checkpoint",
                               fix=f"delete {last} (or pass --no-resume / resume=False) to train from scratch")
        _log.info("resuming crosscoder training from %s", ckpt_path)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    crosscoder = module.crosscoder.cpu().eval()
    if trainer.is_global_zero:
        extra: dict[str, Any] = {"source_names": list(getattr(source, "source_names", [])) or config.source_names,
                                 "steps": int(trainer.global_step)}
        if getattr(source, "identities", None):  # the models the activations came from, in model order
            extra["identities"] = list(source.identities)
        crosscoder.save(out_dir / "crosscoder", extra=extra)
    return crosscoder


class AtomicCheckpointIO(pl.plugins.io.TorchCheckpointIO):
    """Lightning checkpoints written like every other artefact: temp file in the same directory, fsync, rename.

    Lightning's own writer goes through an fsspec transaction whose temp file lives in the system temp directory
    (a copy, not a rename, when that is another filesystem, and no fsync), so a SIGKILL could leave a truncated
    ``last.ckpt``; with this one ``last.ckpt`` is always the previous or the new complete checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint does not take storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())


def _remove_stale_temp_files(*dirs: Path) -> None:
    """Temp files (``.NAME.XXXX.tmp``) of atomic writes a killed run left behind; never real outputs."""
    for directory in dirs:
        if directory.is_dir():
            for item in directory.glob(".*.tmp"):
                if item.is_file():
                    _log.info("removing temp file %s of an interrupted run", item)
                    item.unlink(missing_ok=True)


def _progress() -> bool:
    return progress_enabled()
