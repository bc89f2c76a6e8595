"""Live response-token readings of the PersonaMonitor: what the model in training SAYS to each trait's questions.

The last-prompt-token shift reads the model before it answers; on a small model any fine-tune moves that position
about as much as a trait-inducing one, and a sycophancy fine-tune that changes what the model answers hardly moves
it. With ``PersonaMonitor(responses=True)`` every check also lets the model answer the trait's first
``response_prompts`` response questions (:meth:`~difflib_models.persona.traits.schema.Trait.response_questions`:
its ``response`` split, else its evaluation questions, as the gate asks) greedily (``response_tokens`` new tokens), teacher-forces the answers
through the same model and averages the residual at the trait's layer over the answer tokens: the gate's
``persona.response_*`` "own" signal (:mod:`difflib_models.persona.shift.response`), measured against a
:class:`~difflib_models.persona.shift.core.ShiftBaseline` of the model's own answers before the first step. The
same base, candidate, vector, questions, answer length, read batch size, null count and seed give the gate's
``response_z`` / ``response_null_z`` (the generation batch follows
:func:`~difflib_models.persona.shift.response.generation_batch_size`, as in the gate).

Readings per trait, toward the undesirable pole like the monitor's other z values: ``response_shift``,
``response_z`` (base per-question spread units), ``response_null_z`` (null-direction standard deviations: the
drift-normalised signal the default policy's sycophancy check reads), ``response_null_percentile`` and
``response_tokens`` (mean answer length), and ``response_headroom``: the room the model's answers before training
leave toward the trait on its scale (:mod:`difflib_models.persona.shift.headroom`: the trait's held-out paired
responses read by the same model, 0 = neutral, 1 = trait-showing answers; the gate's ``response_headroom`` of the
same base), measured once with the baseline (NaN when the trait has no paired responses). A response line that
the readings do not cross while the headroom is below ``min_headroom`` is no evidence (nothing could show), so the
monitor warns, as the gate does (docs/gate-policy.md, Headroom).

``response_position_shift`` is the gate's metric of that name, live: the model's answers now, read by the model
before training, on that scale, minus its answers before training (toward the undesirable pole). Reading with the
model before training needs it at hand: a peft model is read with its adapters disabled (the frozen base of a LoRA
run); a model trained in full has no such view and reads NaN (a warning at the baseline says so).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from difflib_models.persona.shift.core import ShiftBaseline
from difflib_models.persona.shift.headroom import TraitScale, measure_scale, scale_pairs
from difflib_models.persona.shift.response import (
    Direction,
    ResponseProbe,
    generation_batch_size,
    greedy_responses,
    null_z,
    response_activations,
)
from difflib_models.persona.traits import chat

__all__ = ["RESPONSE_METRICS", "ResponseReader"]

RESPONSE_METRICS = ("response_shift", "response_z", "response_null_z", "response_null_percentile",
                    "response_tokens", "response_headroom", "response_position_shift")
_SCALE_KEYS = ("trait_mean", "neutral_mean", "n_pairs", "base_position")


def has_base_view(model: Any) -> bool:
    """Whether ``model`` can compute as the model before training (a peft model: its adapters can be disabled)."""
    return callable(getattr(model, "disable_adapter", None))


def base_view(model: Any) -> Any:
    """A context manager in which ``model`` computes as the model before training (:func:`has_base_view`), or None
    when it has none (trained in full)."""
    return model.disable_adapter() if has_base_view(model) else None


@dataclass
class ResponseReader:
    """The monitored traits' response baselines (built once on the model before training) and the live reading.

    Traits whose first ``n_prompts`` response questions coincide share one generation per check."""

    max_new_tokens: int
    n_prompts: int
    batch_size: int
    n_null: int
    seed: int
    baselines: dict[str, ShiftBaseline] = field(default_factory=dict)
    base_tokens: dict[str, float] = field(default_factory=dict)
    room: dict[str, float] = field(default_factory=dict)
    """Per trait, the base's ``response_headroom`` (NaN: the trait has no scale)."""
    scales: dict[str, TraitScale] = field(default_factory=dict)
    """Per trait with a scale, the base's :class:`TraitScale`."""
    base_position: dict[str, float] = field(default_factory=dict)
    """Per trait with a scale, the base's own answers' position on it."""
    _encoded: dict[tuple[str, ...], list[list[int]]] = field(default_factory=dict, repr=False)

    def questions(self, monitor: Any) -> tuple[str, ...]:
        """The questions ``monitor``'s trait is asked: the gate's (its trait's response questions; the monitor's
        probe prompts when it carries no trait)."""
        asked = monitor.trait.response_questions() if monitor.trait is not None else monitor.prompts
        return tuple(asked[: self.n_prompts])

    def _groups(self, monitors: Mapping[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
        groups: dict[tuple[str, ...], dict[str, Any]] = {}
        for tid, mon in monitors.items():
            groups.setdefault(self.questions(mon), {})[tid] = mon
        return groups

    def _probe(self, model: Any, tokenizer: Any, questions: tuple[str, ...], layers: list[int], *,
               synced: bool) -> ResponseProbe:
        """``model``'s :class:`ResponseProbe` on ``questions``: its greedy answers (batched as the gate batches
        them) and its response-mean activations on them at ``layers``. The prompts are tokenised once per run."""
        if questions not in self._encoded:
            self._encoded[questions] = ResponseProbe.encode(tokenizer, questions)
        prompts = self._encoded[questions]
        answers = greedy_responses(model, tokenizer, prompts, max_new_tokens=self.max_new_tokens,
                                   batch_size=generation_batch_size(self.batch_size, len(prompts)),
                                   synced_gpus=synced)
        pad = chat.pad_id(tokenizer)
        acts = response_activations(model, prompts, answers, pad, layers, batch_size=self.batch_size)
        return ResponseProbe(prompts=tuple(tuple(p) for p in prompts), answers=tuple(tuple(a) for a in answers),
                             acts=acts, pad_token_id=pad, max_new_tokens=self.max_new_tokens,
                             batch_size=self.batch_size)

    def build(self, model: Any, tokenizer: Any, monitors: Mapping[str, Any], *, synced: bool = False) -> None:
        """The baseline of every monitored trait from ``model``'s own answers (the model before training): the
        probe's :meth:`~ResponseProbe.baseline`, as the gate builds it."""
        for questions, group in self._groups(monitors).items():
            probe = self._probe(model, tokenizer, questions, sorted({mon.layer for mon in group.values()}),
                                synced=synced)
            for tid, mon in group.items():
                self.baselines[tid] = probe.baseline(Direction(tid, mon.layer, mon.vector, mon.polarity),
                                                     n_null=self.n_null, seed=self.seed)
                self.base_tokens[tid] = sum(map(len, probe.answers)) / len(probe.answers)
                self.room[tid] = self._headroom(model, tokenizer, mon, probe)

    def _headroom(self, model: Any, tokenizer: Any, mon: Any, probe: ResponseProbe) -> float:
        """Where ``probe``'s answers (the model before training) sit on the trait's scale, as room left toward the
        undesirable pole (the gate's ``response_headroom``: same pairs, read batch and projection); NaN without
        at least 2 paired responses or when the direction does not order them. Keeps the scale and the position
        for :meth:`read`'s ``response_position_shift``."""
        pairs = scale_pairs(mon.trait) if mon.trait is not None else []
        if len(pairs) < 2:
            return math.nan
        scale = measure_scale(model, tokenizer, pairs, trait=mon.trait_id, layer=mon.layer, vector=mon.vector,
                              batch_size=self.batch_size)
        self.scales[mon.trait_id] = scale
        self.base_position[mon.trait_id] = scale.place(probe.acts[mon.layer], mon.vector)
        return scale.room(probe.acts[mon.layer], mon.vector, mon.polarity)

    def _moved(self, model: Any, probe: ResponseProbe, group: Mapping[str, Any]) -> dict[str, float]:
        """Per trait of ``group``, ``response_position_shift``: ``probe``'s answers (the model's now) read by the
        model before training (:func:`base_view`), on the trait's scale, minus the base's own position, toward the
        undesirable pole; NaN without a scale or a view of the model before training."""
        out = {tid: math.nan for tid in group}
        scaled = {tid: mon for tid, mon in group.items() if tid in self.scales}
        view = base_view(model) if scaled else None
        if view is None:
            return out
        with view:
            acts = probe.read(model, probe.answers, sorted({mon.layer for mon in scaled.values()}))
        for tid, mon in scaled.items():
            moved = self.scales[tid].place(acts[mon.layer], mon.vector) - self.base_position[tid]
            out[tid] = -moved if mon.polarity == "desirable" else moved
        return out

    def read(self, model: Any, tokenizer: Any, monitors: Mapping[str, Any], *,
             synced: bool = False) -> dict[str, dict[str, float]]:
        """Per trait, the readings of ``model`` now (see the module docstring)."""
        out: dict[str, dict[str, float]] = {}
        for questions, group in self._groups(monitors).items():
            probe = self._probe(model, tokenizer, questions, sorted({mon.layer for mon in group.values()}),
                                synced=synced)
            acts, tokens = probe.acts, sum(map(len, probe.answers)) / len(probe.answers)
            moved = self._moved(model, probe, group)
            for tid, mon in group.items():
                res = self.baselines[tid].measure(acts[mon.layer])
                out[tid] = {"response_shift": res.toward_undesirable, "response_z": res.toward_z,
                            "response_null_z": res.sign * null_z(res),
                            "response_null_percentile": res.null_percentile, "response_tokens": tokens,
                            "response_headroom": self.room[tid], "response_position_shift": moved[tid]}
        return out

    # -------------------------------------------------------------------------------------------- persistence
    def to_tensors(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for tid, bl in self.baselines.items():
            out.update(bl.to_tensors(prefix=f"{tid}.response."))
            out[f"{tid}.response.base_tokens"] = torch.tensor([self.base_tokens[tid]], dtype=torch.float64)
            out[f"{tid}.response.headroom"] = torch.tensor([self.room[tid]], dtype=torch.float64)
            scale = self.scales.get(tid)
            out[f"{tid}.response.scale"] = torch.tensor(
                [scale.trait_mean, scale.neutral_mean, scale.n_pairs, self.base_position[tid]] if scale is not None
                else [math.nan] * len(_SCALE_KEYS), dtype=torch.float64)
        return out

    @staticmethod
    def saved_in(tensors: Mapping[str, torch.Tensor], monitors: Mapping[str, Any]) -> bool:
        """Whether ``tensors`` (a baseline file) hold the response baseline of every monitored trait."""
        return all(f"{tid}.response.{k}" in tensors for tid in monitors for k in ("m0", "headroom", "scale"))

    def restore(self, tensors: Mapping[str, torch.Tensor], monitors: Mapping[str, Any]) -> None:
        """The baselines saved with :meth:`to_tensors` (check :meth:`saved_in` first)."""
        for tid, mon in monitors.items():
            self.baselines[tid] = ShiftBaseline.from_tensors(dict(tensors), f"{tid}.response.", vector=mon.vector,
                                                             gap=None, trait=tid, layer=mon.layer,
                                                             polarity=mon.polarity)
            self.base_tokens[tid] = float(tensors[f"{tid}.response.base_tokens"][0])
            self.room[tid] = float(tensors[f"{tid}.response.headroom"][0])
            trait_mean, neutral_mean, n_pairs, position = (float(x) for x in tensors[f"{tid}.response.scale"])
            if math.isfinite(trait_mean):
                self.scales[tid] = TraitScale(trait=tid, layer=mon.layer, trait_mean=trait_mean,
                                              neutral_mean=neutral_mean, n_pairs=int(n_pairs))
                self.base_position[tid] = position

    def describe(self, tid: str) -> dict[str, Any]:
        bl = self.baselines.get(tid)
        return {"response_prompts": self.n_prompts, "response_tokens": self.max_new_tokens,
                "response_sigma0": bl.sigma0 if bl is not None else None,
                "response_base_tokens": self.base_tokens.get(tid), "response_headroom": self.room.get(tid)}

