"""`Crosscoder`: a sparse dictionary shared by M activation sources (models x layers), pure torch.

pre = sum_m a[m] @ W_enc[m] + b_enc, f = activation(pre), a_hat[m] = f @ W_dec[:, m] + b_dec[m].
Shapes: W_enc [M, d, n], b_enc [n], W_dec [n, M, d], b_dec [M, d]. Inputs are [B, M, d] activations already
multiplied by the per-source normalisation scalars (``normalize`` / ``denormalize``; the scalars are a buffer
so they are saved with the weights).

With ``exclusive_latents`` E > 0 (dedicated feature crosscoder) latents [m*E, (m+1)*E) connect to model m's
sources only: ``source_mask`` [n, M] zeroes their other encoder and decoder weights at initialisation and in
every forward, so those weights get no gradient and stay exactly zero.

TopK / BatchTopK training uses the sparse path of :mod:`difflib_models.crosscoder.sparse` (only active latents
are decoded, and gradients touch only active rows); ``sparse=False`` switches to the dense reference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from difflib_models.crosscoder.config import ARCHITECTURE_FIELDS, CrosscoderConfig
from difflib_models.crosscoder.sparse import (
    SparsePattern,
    active_encoder_values,
    batch_topk_pairs,
    sparse_decode,
    topk_pairs,
)
from difflib_models.errors import ConfigError, IdentityMismatchError, bad_value
from difflib_models.files import load_json
from difflib_models.io import atomic_write, atomic_write_json

logger = logging.getLogger(__name__)

FORMAT = "difflib_models.crosscoder/1"
WEIGHTS_FILE = "crosscoder.safetensors"
CONFIG_FILE = "crosscoder.json"


@dataclass
class StepOutput:
    """What one training forward produced (losses carry gradients, the rest is detached)."""

    loss: Tensor
    mse: Tensor
    penalty: Tensor
    aux: Tensor
    fve: Tensor
    l0: Tensor
    fired: Tensor
    min_kept_score: Tensor | None


class Crosscoder(nn.Module):
    def __init__(self, config: CrosscoderConfig, *, sparse: bool = True) -> None:
        super().__init__()
        self.config = config
        self.sparse = sparse
        m, d, n = config.n_sources, config.d_model, config.dict_size
        gen = torch.Generator().manual_seed(config.seed)
        w_dec = torch.randn(n, m, d, generator=gen)
        w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True) * config.dec_init_norm
        mask = self._source_mask(config)
        if mask is not None:
            w_dec = w_dec * mask[:, :, None]
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.permute(1, 2, 0).contiguous())
        self.register_buffer("source_mask", mask if mask is not None else torch.ones(0), persistent=False)
        price = torch.ones(n)
        if mask is not None:
            price[: config.n_models * config.exclusive_latents] = float(config.exclusive_penalty)
        self.register_buffer("latent_price", price, persistent=False)
        self.b_enc = nn.Parameter(torch.zeros(n))
        self.b_dec = nn.Parameter(torch.zeros(m, d))
        self.register_buffer("theta", torch.tensor(-1.0))
        self.register_buffer("steps_since_fired", torch.zeros(n, dtype=torch.long))
        self.register_buffer("norm_scale", torch.ones(m))

    # ---------------------------------------------------------------- shapes and helpers
    @staticmethod
    def _source_mask(config: CrosscoderConfig) -> Tensor | None:
        """[n, M] 1 where a latent may read/write a source; None for a plain crosscoder."""
        e = config.exclusive_latents
        if not e:
            return None
        mask = torch.ones(config.dict_size, config.n_sources)
        for model in range(config.n_models):
            rows = slice(model * e, (model + 1) * e)
            mask[rows] = 0.0
            mask[rows, config.sources_of_model(model)] = 1.0
        return mask

    def enc_weight(self) -> Tensor:
        """W_enc [M, d, n] as used (dedicated latents' other-model weights masked)."""
        if self.source_mask.numel() == 0:
            return self.W_enc
        return self.W_enc * self.source_mask.T[:, None, :].to(self.W_enc.dtype)

    def dec_weight(self) -> Tensor:
        """W_dec [n, M, d] as used (dedicated latents' other-model weights masked)."""
        if self.source_mask.numel() == 0:
            return self.W_dec
        return self.W_dec * self.source_mask[:, :, None].to(self.W_dec.dtype)

    @property
    def n_latents(self) -> int:
        return self.config.dict_size

    def _check_input(self, x: Tensor) -> Tensor:
        m, d = self.config.n_sources, self.config.d_model
        if x.dim() != 3 or x.shape[1] != m or x.shape[2] != d:
            raise ConfigError(bad_value("x.shape", tuple(x.shape), f"[batch, {m}, {d}]"))
        return x.to(self.W_enc.dtype)

    def normalize(self, x_raw: Tensor) -> Tensor:
        return x_raw * self.norm_scale[None, :, None].to(x_raw.dtype)

    def denormalize(self, x: Tensor) -> Tensor:
        return x / self.norm_scale[None, :, None].to(x.dtype)

    def decoder_norms(self) -> Tensor:
        """[n, M]: norm of each latent's decoder vector per source."""
        return self.W_dec.norm(dim=-1)

    @torch.no_grad()
    def init_b_dec(self, mean: Tensor) -> None:
        """Set b_dec to the per-source mean of (normalised) activations [M, d]."""
        self.b_dec.copy_(mean.reshape_as(self.b_dec))

    def pre_activation(self, x: Tensor) -> Tensor:
        x = self._check_input(x)
        return x.reshape(x.shape[0], -1) @ self.enc_weight().reshape(-1, self.n_latents) + self.b_enc

    def _score_weight(self) -> Tensor:
        """[n] ranking weight of TopK / BatchTopK: summed decoder norm over the latent's sparsity price."""
        return self.decoder_norms().sum(-1).detach() / self.latent_price

    def _scores(self, post: Tensor) -> Tensor:
        return post * self._score_weight()

    def _select(self, scores: Tensor, *, use_threshold: bool) -> tuple[Tensor, Tensor]:
        cfg = self.config
        if cfg.activation == "topk":
            return topk_pairs(scores, cfg.k)
        if use_threshold:
            rows, cols = torch.nonzero(scores > self.theta.clamp_min(0.0), as_tuple=True)
            return rows, cols
        return batch_topk_pairs(scores, cfg.k * scores.shape[0])

    def _use_threshold(self, use_threshold: bool | None) -> bool:
        if self.config.activation != "batchtopk":
            return False
        if use_threshold is None:
            use_threshold = not self.training
        if use_threshold and float(self.theta) < 0:
            logger.warning("BatchTopK threshold not estimated yet (untrained crosscoder): using batch top-k")
            return False
        return use_threshold

    # ---------------------------------------------------------------- inference
    def encode(self, x: Tensor, *, use_threshold: bool | None = None) -> Tensor:
        """Dense latent activations f [B, n]. BatchTopK uses the learned threshold outside training."""
        pre = self.pre_activation(x)
        post = torch.relu(pre)
        if self.config.activation == "l1":
            return post
        rows, cols = self._select(self._scores(post), use_threshold=self._use_threshold(use_threshold))
        mask = torch.zeros_like(post, dtype=torch.bool)
        mask[rows, cols] = True
        return post * mask

    def decode(self, f: Tensor) -> Tensor:
        """Reconstruction [B, M, d] from dense latents f [B, n]."""
        out = f @ self.dec_weight().reshape(self.n_latents, -1)
        return out.reshape(f.shape[0], *self.b_dec.shape) + self.b_dec

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    # ---------------------------------------------------------------- training
    def training_step_output(self, x: Tensor, *, penalty_scale: float = 1.0) -> StepOutput:
        """Loss and metrics of one batch of normalised activations [B, M, d] (training path)."""
        cfg = self.config
        x = self._check_input(x)
        batch = x.shape[0]
        x_flat = x.reshape(batch, -1)
        w_enc = self.enc_weight().reshape(-1, self.n_latents)
        w_dec = self.dec_weight().reshape(self.n_latents, -1)
        b_dec = self.b_dec.reshape(-1)
        min_kept = None
        zero = x_flat.new_zeros(())
        if cfg.activation == "l1":
            f = torch.relu(x_flat @ w_enc + self.b_enc)
            x_hat = f @ w_dec + b_dec
            penalty = (f * (self.decoder_norms().sum(-1) * self.latent_price)).sum(-1).mean()
            fired = (f > 0).any(0)
            l0 = (f > 0).float().sum(-1).mean()
            pre_nograd = None
        else:
            with torch.no_grad():
                pre_nograd = x_flat @ w_enc + self.b_enc
                # rank by activation x summed decoder norm; negative entries can only be picked when fewer than
                # k*B are positive, and ReLU makes them inactive, so ReLU before ranking is not needed
                scores = pre_nograd * self._score_weight()
                rows, cols = self._select(scores, use_threshold=False)
                pattern = SparsePattern.build(rows, cols, batch, self.n_latents)
                kept = scores[pattern.rows, pattern.cols]
                if cfg.activation == "batchtopk":
                    positive = kept[kept > 0]
                    # always a tensor, so every DDP rank joins the same all-reduce
                    min_kept = positive.min() if positive.numel() else kept.new_zeros(())
            if self.sparse:
                vals = torch.relu(active_encoder_values(x_flat, w_enc, self.b_enc, pre_nograd, pattern))
                x_hat = sparse_decode(vals, w_dec, pattern) + b_dec
            else:
                mask = pattern.dense(torch.ones(pattern.nnz, dtype=x.dtype)).bool()
                f = torch.relu(x_flat @ w_enc + self.b_enc) * mask
                vals = f[pattern.rows, pattern.cols]
                x_hat = f @ w_dec + b_dec
            active = vals.detach() > 0
            fired = torch.zeros(self.n_latents, dtype=torch.bool, device=x.device)
            fired[pattern.cols[active]] = True
            l0 = active.float().sum() / batch
            penalty = zero
        err = x_flat - x_hat
        mse = err.pow(2).sum(-1).mean()
        aux = zero
        if cfg.activation != "l1" and cfg.aux_coeff > 0:
            aux = self._aux_loss(x_flat, err.detach(), pre_nograd, w_enc, w_dec)
        loss = mse + cfg.l1_coeff * penalty_scale * penalty + cfg.aux_coeff * aux
        with torch.no_grad():
            total = (x_flat - x_flat.mean(0)).pow(2).sum()
            fve = 1 - err.detach().pow(2).sum() / total.clamp_min(1e-12)
        return StepOutput(loss, mse.detach(), penalty.detach(), aux.detach(), fve, l0, fired, min_kept)

    def dead_mask(self) -> Tensor:
        return self.steps_since_fired >= self.config.dead_steps

    def _aux_loss(self, x_flat: Tensor, residual: Tensor, pre: Tensor | None, w_enc: Tensor,
                  w_dec: Tensor) -> Tensor:
        """AuxK: reconstruct the residual error with the top-k_aux dead latents, normalised by its variance."""
        dead = self.dead_mask()
        n_dead = int(dead.sum())
        if n_dead == 0 or pre is None:
            return x_flat.new_zeros(())
        k_aux = min(self.config.effective_aux_k, n_dead)
        with torch.no_grad():
            scores = torch.relu(pre).masked_fill(~dead, -1.0)
            rows, cols = topk_pairs(scores, k_aux)
            pattern = SparsePattern.build(rows, cols, x_flat.shape[0], self.n_latents)
        if self.sparse:
            vals = torch.relu(active_encoder_values(x_flat, w_enc, self.b_enc, pre, pattern))
            recon = sparse_decode(vals, w_dec, pattern)
        else:
            mask = pattern.dense(torch.ones(pattern.nnz, dtype=x_flat.dtype)).bool()
            recon = (torch.relu(x_flat @ w_enc + self.b_enc) * mask) @ w_dec
        denom = (residual - residual.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-12)
        return (residual - recon).pow(2).sum(-1).mean() / denom

    @torch.no_grad()
    def update_state(self, fired: Tensor, min_kept: Tensor | None) -> None:
        """After an optimiser step: dead-latent counters and the BatchTopK threshold EMA."""
        self.steps_since_fired += 1
        self.steps_since_fired[fired] = 0
        if min_kept is not None and self.config.activation == "batchtopk":
            if float(self.theta) < 0:
                self.theta.copy_(min_kept)
            else:
                mom = self.config.theta_momentum
                self.theta.mul_(mom).add_((1 - mom) * min_kept)

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | Path, *, extra: dict | None = None) -> Path:
        """Write ``crosscoder.safetensors`` + ``crosscoder.json`` (config, format) into ``directory``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"format": FORMAT}))
        atomic_write_json(
            directory / CONFIG_FILE, {"format": FORMAT, "config": self.config.to_dict(), "extra": extra or {}}
        )
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, *, expected: CrosscoderConfig | None = None, map_location: str = "cpu"
    ) -> Crosscoder:
        """Load a saved crosscoder; refuses one whose architecture differs from ``expected`` (field named)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        if not cfg_path.is_file() or not w_path.is_file():
            raise ConfigError(
                bad_value("directory", str(directory), f"a folder with {CONFIG_FILE} and {WEIGHTS_FILE}",
                          "pass the folder written by Crosscoder.save() or `crosscoder train`")
            )
        meta = load_json(cfg_path, what="crosscoder")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("config"), dict):
            raise ConfigError(bad_value("crosscoder", str(cfg_path), f"a {FORMAT} config with a `config` object",
                                        "pass the folder written by Crosscoder.save() or `crosscoder train`"))
        try:
            config = CrosscoderConfig.from_dict(meta["config"])
        except TypeError as exc:  # wrong field types/arity that the dataclass rejects
            raise ConfigError(bad_value("crosscoder", str(cfg_path), "a valid crosscoder config", str(exc))) from None
        if expected is not None:
            diff = config.mismatch(expected, keys=ARCHITECTURE_FIELDS)
            if diff:
                field = diff[0]
                raise IdentityMismatchError(
                    bad_value(field, getattr(config, field), [getattr(expected, field)],
                              f"the checkpoint in {directory} was trained with a different {field}; "
                              f"mismatching fields: {', '.join(diff)}")
                )
        model = cls(config)
        try:
            state = load_file(str(w_path), device=map_location)
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for a truncated file
            raise ConfigError(bad_value("crosscoder", str(w_path), "a readable .safetensors file",
                                        f"{exc}; retrain or restore the crosscoder folder")) from None
        own = model.state_dict()
        for name, tensor in own.items():
            if name not in state:
                raise IdentityMismatchError(bad_value(name, None, "present in the checkpoint"))
            if tuple(state[name].shape) != tuple(tensor.shape):
                raise IdentityMismatchError(
                    bad_value(f"{name}.shape", tuple(state[name].shape), [tuple(tensor.shape)],
                              "weights do not match the config stored beside them")
                )
        model.load_state_dict(state)
        return model
