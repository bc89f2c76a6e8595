"""`CrosscoderConfig`: every hyper-parameter of a crosscoder, validated up front, JSON round-trip."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from difflib_models.errors import ConfigError, bad_value

ACTIVATIONS = ("l1", "topk", "batchtopk")

QUICK_PRESET: dict[str, int] = {"steps": 500, "batch_size": 1024}
"""The one documented exception to the defaults below: `difflib-models diff` (DiffConfig) trains a quick crosscoder
(500 steps of 1024 tokens, minutes on a CPU) as one stage among many. Every other entry point (`crosscoder train`,
the Python API) takes its defaults from :class:`CrosscoderConfig` through :func:`config_default`."""


@dataclass
class CrosscoderConfig:
    """Hyper-parameters of a crosscoder over ``n_sources`` = models x layers activation sources."""

    d_model: int
    """Width of each source's activation vector."""
    n_sources: int = 2
    """Number of sources M (models x layers); source m = model * n_layers + layer."""
    dict_size: int = 1024
    """Number of latents n (8-64x d_model is typical)."""
    activation: str = "batchtopk"
    """"l1" (ReLU + decoder-norm weighted L1), "topk" (k per token) or "batchtopk" (k*B per batch)."""
    k: int = 32
    """Active latents per token (TopK) or on average per token (BatchTopK)."""
    l1_coeff: float = 1.0
    """Weight of the decoder-norm weighted L1 penalty (L1 variant only)."""
    l1_warmup_frac: float = 0.05
    """Fraction of the steps over which the L1 coefficient ramps linearly from 0."""
    lr: float | None = None
    """Adam learning rate; None: 1e-4 / sqrt(dict_size / 2**14)."""
    warmup_frac: float = 0.01
    """Fraction of steps of linear lr warm-up."""
    decay_frac: float = 0.2
    """Fraction of steps (at the end) of linear lr decay to 0."""
    aux_k: int | None = None
    """Dead latents used by the AuxK loss per token; None: d_model // 2 (capped by the number of dead latents)."""
    aux_coeff: float = 1.0 / 32.0
    """Weight of the AuxK loss; 0 disables it."""
    dead_steps: int = 200
    """A latent that has not fired for this many steps counts as dead."""
    theta_momentum: float = 0.99
    """EMA momentum of the BatchTopK inference threshold."""
    dec_init_norm: float = 0.1
    """Initial norm of each decoder row, per source."""
    batch_size: int = 4096
    """Tokens per optimisation step (global, over all DDP ranks)."""
    steps: int = 10_000
    """Total optimisation steps (the lr and penalty schedules are laid out over them)."""
    seed: int = 0
    """Seed of the initialisation and of the data order."""
    n_models: int = 2
    """How many models the sources come from (sources = n_models x layers); 2 for base/fine-tuned."""
    source_names: list[str] = field(default_factory=list)
    """Optional names of the sources, e.g. ["base/blocks.3", "finetuned/blocks.3"]."""
    exclusive_latents: int = 0
    """Dedicated feature crosscoder (DFC): latents reserved per model. Latents ``[m*E, (m+1)*E)`` read from and
    write to model m's sources only (their other encoder and decoder weights are held at zero), so differences
    have room that the shared latents cannot absorb; 0: a plain crosscoder."""
    exclusive_penalty: float = 1.0
    """Sparsity price of a dedicated latent relative to a shared one: its L1 penalty is multiplied by this, and
    its TopK / BatchTopK ranking score divided by it. Above 1, a feature both models have is cheaper as one
    shared latent than as a pair of dedicated ones, so dedicated latents keep what only one model has."""

    def __post_init__(self) -> None:
        def positive_int(name: str, value: Any, minimum: int = 1) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(bad_value(name, value, f"an integer >= {minimum}"))

        positive_int("d_model", self.d_model)
        positive_int("n_sources", self.n_sources)
        positive_int("dict_size", self.dict_size)
        positive_int("k", self.k)
        positive_int("batch_size", self.batch_size)
        positive_int("steps", self.steps)
        positive_int("dead_steps", self.dead_steps)
        positive_int("n_models", self.n_models)
        positive_int("seed", self.seed, 0)
        positive_int("exclusive_latents", self.exclusive_latents, 0)
        if self.n_models * self.exclusive_latents >= self.dict_size:
            raise ConfigError(
                bad_value("exclusive_latents", self.exclusive_latents,
                          f"fewer than dict_size / n_models = {self.dict_size / self.n_models:g}",
                          "some latents must stay shared; a few percent of dict_size is typical")
            )
        if self.activation not in ACTIVATIONS:
            raise ConfigError(bad_value("activation", self.activation, ACTIVATIONS))
        if self.activation != "l1" and self.k > self.dict_size:
            raise ConfigError(bad_value("k", self.k, f"at most dict_size={self.dict_size}"))
        if self.n_sources % self.n_models:
            raise ConfigError(
                bad_value("n_sources", self.n_sources, f"a multiple of n_models={self.n_models}",
                          "sources are models x layers")
            )
        if self.aux_k is not None:
            positive_int("aux_k", self.aux_k)
        if not isinstance(self.exclusive_penalty, int | float) or not (
            math.isfinite(self.exclusive_penalty) and self.exclusive_penalty > 0
        ):
            raise ConfigError(bad_value("exclusive_penalty", self.exclusive_penalty, "a finite number > 0"))
        for name in ("l1_coeff", "aux_coeff"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(bad_value(name, value, "a finite number >= 0"))
        if self.lr is not None and (not math.isfinite(self.lr) or self.lr <= 0):
            raise ConfigError(bad_value("lr", self.lr, "a positive number or None (default schedule)"))
        if not isinstance(self.dec_init_norm, int | float) or not self.dec_init_norm > 0:
            raise ConfigError(bad_value("dec_init_norm", self.dec_init_norm, "a positive number"))
        for name in ("l1_warmup_frac", "warmup_frac", "decay_frac"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ConfigError(bad_value(name, value, "a fraction in [0, 1]"))
        if self.warmup_frac + self.decay_frac > 1:
            raise ConfigError(
                bad_value("warmup_frac + decay_frac", self.warmup_frac + self.decay_frac, "at most 1")
            )
        if not 0 <= self.theta_momentum < 1:
            raise ConfigError(bad_value("theta_momentum", self.theta_momentum, "a number in [0, 1)"))
        self.source_names = list(self.source_names)
        if self.source_names and len(self.source_names) != self.n_sources:
            raise ConfigError(
                bad_value("source_names", self.source_names, f"{self.n_sources} names (one per source) or none")
            )

    @property
    def n_layers(self) -> int:
        """Layers per model."""
        return self.n_sources // self.n_models

    @property
    def effective_lr(self) -> float:
        """The learning rate used: ``lr`` or 1e-4 / sqrt(dict_size / 2**14)."""
        if self.lr is not None:
            return float(self.lr)
        return 1e-4 / math.sqrt(self.dict_size / 2**14)

    @property
    def effective_aux_k(self) -> int:
        return self.aux_k if self.aux_k is not None else max(1, self.d_model // 2)

    def exclusive_model(self, latent: int) -> int | None:
        """The model latent ``latent`` is dedicated to, or None for a shared-pool latent."""
        e = self.exclusive_latents
        return latent // e if e and latent < self.n_models * e else None

    def sources_of_model(self, model: int) -> list[int]:
        """Source indices belonging to model ``model`` (0 = base, 1 = fine-tuned for a pair)."""
        if not 0 <= model < self.n_models:
            raise ConfigError(bad_value("model", model, f"0..{self.n_models - 1}"))
        return [model * self.n_layers + layer for layer in range(self.n_layers)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CrosscoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                bad_value("config keys", unknown, sorted(known), "was it written by a newer version?")
            )
        return cls(**data)

    def mismatch(self, other: CrosscoderConfig, *, keys: tuple[str, ...] | None = None) -> list[str]:
        """Names of the fields whose values differ (only ``keys`` if given)."""
        names = keys or tuple(f.name for f in fields(self))
        return [n for n in names if getattr(self, n) != getattr(other, n)]


# fields that define the shape/meaning of the weights; a checkpoint must agree on these
ARCHITECTURE_FIELDS = ("d_model", "n_sources", "dict_size", "activation", "k", "n_models", "exclusive_latents")


def config_default(name: str) -> Any:
    """The default of one :class:`CrosscoderConfig` field: the single source every entry point reads."""
    for f in fields(CrosscoderConfig):
        if f.name == name:
            return f.default
    raise KeyError(name)
