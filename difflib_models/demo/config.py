"""Configuration of the end-to-end demo: the run options and the two size profiles (``quick`` and ``full``).

A profile fixes every amount of work (training rows and steps, probe and diff text counts, crosscoder size); the
stage fingerprints include it, so switching profile or seed re-runs the stages it affects and nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from difflib_models.errors import ConfigError, bad_value
from difflib_models.outputs import check_outputs

TRAIT = "sycophancy"
INDUCING = "sycophancy-inducing"
NEUTRAL = "sycophancy-neutral"


@dataclass(frozen=True)
class DemoProfile:
    """Amounts of work of one demo profile."""

    name: str
    train_rows: int
    """Rows of each chat set used for fine-tuning (the first N, in file order)."""
    steps: int
    """Optimizer steps of each LoRA fine-tune."""
    batch_size: int
    lr: float
    lora_r: int
    lora_alpha: float
    max_length: int
    """Token budget of a training row."""
    monitor_every: int
    """PersonaMonitor check interval (optimizer steps)."""
    snapshot_every: int
    """ActivationSnapshot interval (optimizer steps); snapshots are also taken before and after training."""
    snapshot_prompts: int
    """Built-in generic probe prompts captured by each snapshot."""
    diff_texts: int
    """Texts harvested through base and fine-tune for the drift and crosscoder diff."""
    diff_max_length: int
    crosscoder_dict_size: int
    crosscoder_k: int
    crosscoder_steps: int
    crosscoder_batch: int
    vector_instructions: int
    """Instruction pairs used to extract each persona vector (prompt contrast)."""
    vector_questions: int
    """Extraction questions per persona vector."""
    vector_eval_questions: int
    """Held-out evaluation questions used to validate each vector (AUROC)."""
    gate_behaviour_items: int
    """Behaviour items per trait in the gate's position-balanced A/B eval (the first N of each shipped set, every
    item asked in both option orders; the default policy asks all 24). Must be at least the policy's
    ``behavioural.min_scored`` (10) and even (every even prefix of a set is balanced between the option orders)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PROFILES: dict[str, DemoProfile] = {
    "quick": DemoProfile(
        name="quick", train_rows=48, steps=12, batch_size=4, lr=3e-3, lora_r=8, lora_alpha=16.0, max_length=96,
        monitor_every=6, snapshot_every=6, snapshot_prompts=8, diff_texts=16, diff_max_length=64,
        crosscoder_dict_size=256, crosscoder_k=8, crosscoder_steps=60, crosscoder_batch=256,
        vector_instructions=2, vector_questions=6, vector_eval_questions=10, gate_behaviour_items=12,
    ),
    "full": DemoProfile(
        name="full", train_rows=124, steps=60, batch_size=8, lr=2e-3, lora_r=16, lora_alpha=32.0, max_length=128,
        monitor_every=10, snapshot_every=20, snapshot_prompts=32, diff_texts=124, diff_max_length=128,
        crosscoder_dict_size=2048, crosscoder_k=32, crosscoder_steps=1000, crosscoder_batch=1024,
        vector_instructions=3, vector_questions=10, vector_eval_questions=20, gate_behaviour_items=24,
    ),
}


@dataclass
class DemoConfig:
    """Options of one ``difflib-models demo`` run."""

    out: str | Path = "difflib-demo"
    """Output directory (stage markers, vectors, adapters, snapshots, diffs, gate reports)."""
    profile: str = "quick"
    """``quick`` (CPU, a few minutes) or ``full`` (bigger; uses CUDA when available)."""
    tracking_uri: str | None = None
    """MLflow tracking URI; None: ``sqlite:///<out>/mlflow.db`` (every output stays inside ``out``)."""
    control: bool = True
    """Also fine-tune on the matched neutral set and use it as the inducing run's control."""
    seed: int = 0
    device: str | None = None
    """``cpu`` or ``cuda``; None: ``cuda`` for the full profile when available, else ``cpu``."""
    model: str | None = None
    """Model spec for load_model (None: the embedded SmolLM2-135M-Instruct)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Profile fields to override (tests and tuning), e.g. ``{"steps": 8}``."""

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ConfigError(bad_value("--profile", self.profile, list(PROFILES), "use --quick or --full"))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(bad_value("--seed", self.seed, "an integer >= 0"))
        if self.device not in (None, "cpu", "cuda"):
            raise ConfigError(bad_value("device", self.device, ["cpu", "cuda", None]))
        known = {f.name for f in dataclasses.fields(DemoProfile)} - {"name"}
        unknown = sorted(set(self.overrides) - known)
        if unknown:
            raise ConfigError(bad_value("overrides", unknown, sorted(known), "only profile fields can be overridden"))
        self.out = Path(self.out)
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(bad_value("--out", str(self.out), "a directory (or a path that does not exist yet)"))
        check_outputs({"--out": self.out}, {"model": self.model})
        plan = self.resolved_profile()
        for name in ("train_rows", "steps", "batch_size", "lora_r", "max_length", "monitor_every",
                     "snapshot_every", "snapshot_prompts", "diff_texts", "diff_max_length", "crosscoder_dict_size",
                     "crosscoder_k", "crosscoder_steps", "crosscoder_batch", "vector_instructions",
                     "vector_questions", "vector_eval_questions", "gate_behaviour_items"):
            value = getattr(plan, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(bad_value(name, value, "an integer >= 1"))
        from difflib_models.gate.policy import load_policy

        min_scored = load_policy(None).behavioural.min_scored
        if plan.gate_behaviour_items < min_scored or plan.gate_behaviour_items % 2:
            raise ConfigError(bad_value("gate_behaviour_items", plan.gate_behaviour_items,
                                        f"an even integer >= {min_scored} (the default policy's behavioural.min_scored)",
                                        "fewer items make the gate's behavioural checks an error"))
        if not plan.lr > 0:
            raise ConfigError(bad_value("lr", plan.lr, "a number > 0"))

    def resolved_profile(self) -> DemoProfile:
        """The profile with ``overrides`` applied."""
        return dataclasses.replace(PROFILES[self.profile], **self.overrides)

    def resolved_device(self) -> str:
        if self.device is not None:
            return self.device
        if self.profile == "full":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return "cpu"

    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(Path(self.out) / 'mlflow.db').resolve()}"


NO_HEADROOM = "passed, but the base already answers like the trait: no increase could show (no evidence)"
"""The demo summary's reason for a response check that passed without headroom (docs/gate-policy.md, Headroom)."""
