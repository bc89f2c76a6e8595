"""Run a release gate end to end: load base / candidate (/ control), compute what the policy needs, evaluate the
checks, write report.json + renderings, and return the exit code.

What is computed depends on the policy's checks:

- persona metrics -> per trait: a persona vector (from ``--vectors`` files, else extracted on the BASE with
  persona-core's extractor), probe activations of base / candidate / control on the trait's evaluation
  questions (last prompt token), shifts with :func:`difflib_models.persona.shift.compute_shift` against
  covariance-realistic null directions, and the excess over a matched control fine-tune when one is given.
  A vector that fails validation (held-out AUROC below ``persona.min_auroc``) or a degenerate base spread marks the
  trait ``signal_ok: false``: the report says the signal is too weak for a verdict instead of emitting one.
- behavioural metrics -> the behavioural eval (offline A/B probabilities by default; a judge endpoint if given).
- crosscoder / drift / any other report path -> read from a diffing result merged with ``diff=``.
- data_filter metrics -> a data-filter summary JSON given with ``data_filter=``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from difflib_models.errors import ConfigError, DifflibError, ModelLoadError, bad_value
from difflib_models.files import load_json
from difflib_models.gate.behavioural import model_view
from difflib_models.gate.engine import evaluate, exit_code
from difflib_models.gate.policy import (
    BEHAVIOURAL_METRICS,
    CROSSCODER_METRICS,
    DATA_FILTER_METRICS,
    PERSONA_METRICS,
    Policy,
    load_policy,
)
from difflib_models.report.builder import data_entry, merge_diff, monitor_section, new_report, write_report

log = logging.getLogger(__name__)


@dataclass
class GateConfig:
    """Inputs of one gate run (the CLI builds it from its options)."""

    candidate: Any
    base: Any = None
    control: Any = None
    out: str | Path = "gate-out"
    policy: Policy | str | Path | None = None
    vectors: Sequence[str | Path] = ()
    diff: str | Path | None = None
    crosscoder: str | Path | None = None
    data_filter: str | Path | None = None
    monitor: str | Path | None = None
    judge_url: str | None = None
    judge_model: str = "gpt-4o-mini"
    em_questions: str | Path | None = None
    batch_size: int = 8
    seed: int = 0
    fail_exit_code: int = 1
    extra_outputs: Mapping[str, str | Path] = field(default_factory=dict)
    command: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.fail_exit_code, int) or not 1 <= self.fail_exit_code <= 255 \
                or self.fail_exit_code in (2, 3):
            raise ConfigError(bad_value("--fail-exit-code", self.fail_exit_code, "an int in 1..255 except 2 and 3",
                                        "2 and 3 mean usage and runtime errors"))
        if self.batch_size < 1:
            raise ConfigError(bad_value("batch_size", self.batch_size, ">= 1"))


@dataclass
class GateResult:
    report: dict[str, Any]
    paths: dict[str, Path]
    exit_code: int

    @property
    def verdict(self) -> str:
        return str(self.report["verdict"])


# ------------------------------------------------------------------------------------------------ loading
def _load(spec: Any, what: str) -> Any:
    """A LoadedModel from a spec (or pass one through); unexpected loader failures become ModelLoadError."""
    if hasattr(spec, "model") and hasattr(spec, "tokenizer"):
        return spec
    from difflib_models.models.loading import load_model

    try:
        return load_model(spec)
    except DifflibError:
        raise
    except Exception as exc:  # noqa: BLE001 - any loader crash means "could not load" (exit 3)
        raise ModelLoadError(f"could not load the {what} model {str(spec)!r}: {type(exc).__name__}: {exc}") from exc


def _sides(config: GateConfig) -> dict[str, tuple[Any, str]]:
    """name -> (LoadedModel, side) where side "base" means a peft model's base view."""
    cand = _load(config.candidate, "candidate")
    sides: dict[str, tuple[Any, str]] = {}
    if config.base is None:
        if not getattr(cand, "is_peft", False):
            raise ConfigError(bad_value("--base", None, "a base model spec",
                                        "only a peft adapter candidate carries its own base"))
        sides["base"] = (cand, "base")
    else:
        sides["base"] = (_load(config.base, "base"), "model")
    sides["candidate"] = (cand, "model")
    if config.control is not None:
        sides["control"] = (_load(config.control, "control"), "model")
    return sides


# ------------------------------------------------------------------------------------------------ persona
def _vector_files(paths: Sequence[str | Path], base: Any) -> dict[str, Any]:
    from difflib_models.persona.vectors import PersonaVectorSet

    out: dict[str, Any] = {}
    for p in paths:
        vs = PersonaVectorSet.load(p, expect_model=base)
        out[vs.trait_id] = vs
    return out


def _auroc_of(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """P(pos projection > neg projection), ties counted half (the Mann-Whitney AUROC)."""
    diff = pos.double()[:, None] - neg.double()[None, :]
    return float((diff > 0).double().mean() + 0.5 * (diff == 0).double().mean())


def _extract(base_loaded: Any, side: str, trait: Any, layer: int, plan: Any) -> Any:
    """Persona vector of ``trait`` at ``layer`` on the BASE model with persona-core's extractor, validated on the
    trait's held-out evaluation split (AUROC of pos vs neg projections)."""
    import dataclasses

    from difflib_models.models.loading import from_pretrained_objects
    from difflib_models.persona.extraction import PersonaExtractor

    small = dataclasses.replace(
        trait,
        instructions=trait.instructions[: plan.max_instructions],
        questions={"extraction": trait.questions["extraction"][: plan.max_extraction_questions],
                   "evaluation": trait.questions["evaluation"][: plan.max_probe_prompts]},
    )
    with model_view(base_loaded, side) as model:
        view = base_loaded if side != "base" else from_pretrained_objects(model, base_loaded.tokenizer,
                                                                          name="base (adapter disabled)")
        ext = PersonaExtractor(mode=plan.mode, layers=[layer]).fit(view, small)
        pos, neg = ext.features(view, small, "evaluation")
    unit = ext.unit(layer)
    auroc = _auroc_of(pos[layer] @ unit, neg[layer] @ unit)
    return ext.to_vector_set(selected_layer=layer, selection_reason="gate policy layer",
                             validation={"auroc": {str(layer): auroc}, "split": "evaluation",
                                         "n_pos": int(pos[layer].shape[0]), "n_neg": int(neg[layer].shape[0])})


def _auroc(validation: Any, layer: int) -> float | None:
    """Held-out AUROC of a vector file's validation summary at ``layer``, when recorded."""
    if not isinstance(validation, Mapping):
        return None
    for key in ("layers", "per_layer"):
        per = validation.get(key)
        if isinstance(per, Mapping):
            row = per.get(str(layer), per.get(layer))
            if isinstance(row, Mapping) and isinstance(row.get("auroc"), int | float):
                return float(row["auroc"])
    auroc = validation.get("auroc")
    if isinstance(auroc, Mapping):
        val = auroc.get(str(layer), auroc.get(layer))
        return float(val) if isinstance(val, int | float) else None
    return float(auroc) if isinstance(auroc, int | float) else None


def persona_section(sides: Mapping[str, tuple[Any, str]], policy: Policy, *, vectors: Mapping[str, Any],
                    batch_size: int = 8, save_dir: str | Path | None = None,
                    units: dict[str, tuple[int, torch.Tensor]] | None = None,
                    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``persona`` report section and the data entries (trait hashes) for the policy's traits.

    Vectors extracted here are saved to ``save_dir/<trait>.safetensors`` (reuse them with ``--vectors``)."""
    from difflib_models.persona.shift import (
        compute_shift,
        covariance_null_directions,
        probe_activations,
        usable_gap,
    )
    from difflib_models.persona.traits import load_trait

    plan = policy.persona
    base_loaded, base_side = sides["base"]
    n_layers = int(base_loaded.n_layers)
    rows: list[dict[str, Any]] = []
    data: list[dict[str, Any]] = []
    for trait_id in policy.traits():
        trait = load_trait(trait_id)
        vs = vectors.get(trait_id)
        if plan.layer != "auto":
            layer = int(plan.layer)
        elif vs is not None and vs.selected_layer is not None:
            layer = int(vs.selected_layer)
        else:
            layer = n_layers // 2
        if not 0 <= layer < n_layers:
            raise ConfigError(bad_value("persona.layer", layer, f"0..{n_layers - 1}"))
        vector_file = None
        if vs is None:
            vs = _extract(base_loaded, base_side, trait, layer, plan)
            if save_dir is not None:
                vector_file = str(vs.save(Path(save_dir) / trait_id))
        if layer not in vs.vectors:
            raise ConfigError(bad_value("persona.layer", layer, vs.layers, f"the {trait_id} vector file's layers"))
        prompts = trait.split_questions("evaluation")[: plan.max_probe_prompts]
        acts: dict[str, torch.Tensor] = {}
        for name, (loaded, side) in sides.items():
            with model_view(loaded, side) as model:
                acts[name] = probe_activations(model, loaded.tokenizer, prompts, [layer], batch_size=batch_size)[layer]
        unit = vs.unit(layer)
        if units is not None:
            units[trait_id] = (layer, unit)
        base_proj = acts["base"].double() @ unit.double()
        base_std = float(base_proj.std())
        gap = vs.gap.get(layer)
        nulls = covariance_null_directions(acts["base"], plan.null_directions, seed=plan.seed)
        g = usable_gap(gap, base_std)
        kw = dict(gap=g if g is not None else float("nan"), base_std=base_std, null_dirs=nulls, trait=trait_id,
                  layer=layer, polarity=vs.polarity)
        res = compute_shift(acts["base"], acts["candidate"], unit, **kw)
        delta = (acts["candidate"].double().mean(0) - acts["base"].double().mean(0))
        u = nulls.double() / nulls.double().norm(dim=1, keepdim=True)
        row: dict[str, Any] = {
            "trait": trait_id, "layer": layer, "polarity": vs.polarity, "shift": res.shift,
            "shift_z": _finite(res.shift_z), "shift_frac": _finite(res.shift_frac),
            "null_percentile": _finite(res.null_percentile), "drift_cos": res.drift_cos,
            "drift_norm": res.drift_norm, "n_probe_prompts": len(prompts), "vector_mode": vs.mode,
            "vector_file": vector_file,
            "null_shifts": [float(x) for x in (u @ delta)],
            "base_projections": [float(x) for x in base_proj],
            "candidate_projections": [float(x) for x in acts["candidate"].double() @ unit.double()],
        }
        if "control" in acts:
            ctl = compute_shift(acts["base"], acts["control"], unit, **kw)
            row["control_shift"] = ctl.shift
            row["control_shift_z"] = _finite(ctl.shift_z)
            if row["shift_z"] is not None and row["control_shift_z"] is not None:
                row["excess_z"] = row["shift_z"] - row["control_shift_z"]
        notes = []
        auroc = _auroc(vs.validation, layer)
        if auroc is not None:
            row["vector_auroc"] = auroc
            if auroc < plan.min_auroc:
                notes.append(f"held-out AUROC {auroc:.2f} < {plan.min_auroc:.2f}: the vector does not separate "
                             "the trait in this model")
        if not base_std > 1e-8:
            notes.append("base projections have no spread (sigma_0 = 0)")
        if gap is None or not abs(float(gap)) > 1e-8:
            notes.append("no pos-neg gap recorded for this vector (shift_frac unavailable)")
        elif g is None:
            notes.append(f"pos-neg gap {float(gap):.3g} is not above the base spread {base_std:.3g}: the vector does "
                         "not read the instruction contrast (shift_frac unavailable)")
        weak = [n for n in notes if "shift_frac unavailable" not in n]
        row["signal_ok"] = not weak
        if notes:
            row["signal_note"] = "; ".join(notes)
        rows.append(row)
        data.append({"name": f"trait:{trait_id}", "path": trait.source, "sha256": trait.hash,
                     "n_items": len(prompts)})
    null_kind = f"covariance-realistic N(0, Sigma_hat) with shrinkage, K={plan.null_directions}"
    return {"vector_source": "files" if vectors else "extracted on base", "null_kind": null_kind,
            "traits": rows}, data


def _finite(x: float | None) -> float | None:
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else float(x)


# ------------------------------------------------------------------------------------------------ run
def _read_json(path: str | Path, what: str) -> Any:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(bad_value(what, str(path), "an existing JSON file"))
    return load_json(p, what=what)


def run_gate(config: GateConfig) -> GateResult:
    """Run the gate; always writes a report (even when a check errors) and returns the exit code."""
    t0 = time.perf_counter()
    policy = config.policy if isinstance(config.policy, Policy) else load_policy(config.policy)
    metrics = {c.metric for c in policy.checks}
    timings: dict[str, float] = {}
    sides = _sides(config)
    timings["load_s"] = time.perf_counter() - t0
    base_loaded, _ = sides["base"]
    cand_loaded, _ = sides["candidate"]
    ident_base = base_loaded.identity.base if sides["base"][1] == "base" and base_loaded.identity.base \
        else base_loaded.identity
    report = new_report("gate", base=ident_base, candidate=cand_loaded.identity,
                        control=sides["control"][0].identity if "control" in sides else None,
                        hook_points=base_loaded.hook_points, seeds={"gate": config.seed,
                                                                     "null_directions": policy.persona.seed},
                        command=config.command)
    if sides["base"][1] == "base" and report["models"]["base"] is None:
        report["notes"].append("base = the candidate adapter's base model (adapter disabled)")
    if config.diff is not None:
        merge_diff(report, config.diff)
    if metrics & set(PERSONA_METRICS + CROSSCODER_METRICS):
        t = time.perf_counter()
        vectors = _vector_files(config.vectors, base_loaded)
        units: dict[str, tuple[int, torch.Tensor]] = {}
        report["persona"], data = persona_section(sides, policy, vectors=vectors, batch_size=config.batch_size,
                                                  save_dir=Path(config.out) / "vectors", units=units)
        if config.crosscoder is not None:
            from difflib_models.gate.alignment import crosscoder_alignment

            report["crosscoder"] = dict(report.get("crosscoder") or {})
            report["crosscoder"]["persona_alignment"] = crosscoder_alignment(config.crosscoder, units)
        report["data"].extend(data)
        timings["persona_s"] = time.perf_counter() - t
        for row in report["persona"]["traits"]:
            if not row["signal_ok"]:
                report["notes"].append(f"{row['trait']}: signal too weak for a verdict ({row.get('signal_note')})")
    if metrics & set(BEHAVIOURAL_METRICS):
        t = time.perf_counter()
        report["behavioural"] = behavioural_section(sides, policy, config)
        if config.judge_url and config.em_questions is not None:
            report["data"].append(data_entry("em_questions", config.em_questions))
        timings["behavioural_s"] = time.perf_counter() - t
    if config.data_filter is not None:
        df_path = Path(config.data_filter)
        report["data_filter"] = _read_json(df_path / "summary.json" if df_path.is_dir() else df_path, "--data-filter")
    elif metrics & set(DATA_FILTER_METRICS):
        log.warning("the policy checks data_filter metrics but no --data-filter summary was given")
    if config.monitor is not None:
        report["monitor"] = monitor_section(_read_json(config.monitor, "--monitor"))
    evaluate(report, policy)
    timings["total_s"] = time.perf_counter() - t0
    report["timings"] = timings
    paths = write_report(report, config.out, paths=config.extra_outputs)
    code = exit_code(report["verdict"], fail_exit_code=config.fail_exit_code)
    log.info("gate verdict %s (%s), exit %d", report["verdict"], report["verdict_reason"], code)
    return GateResult(report=report, paths=paths, exit_code=code)


def behavioural_section(sides: Mapping[str, tuple[Any, str]], policy: Policy, config: GateConfig) -> dict[str, Any]:
    from difflib_models.gate import behavioural as beh

    if config.judge_url:
        if config.em_questions is None:
            raise ConfigError(bad_value("--em-questions", None, "an EM evaluation YAML", "needed with --judge-url"))
        questions = beh.load_em_questions(config.em_questions, max_questions=policy.behavioural.max_items)
        judge = beh.OpenAICompatibleJudge(config.judge_url, config.judge_model)
        return beh.evaluate_judge(sides, questions, judge, seed=config.seed)
    from difflib_models.persona.traits import load_trait

    trait = load_trait(policy.behavioural.trait)
    items = trait.split_ab("evaluation")[: policy.behavioural.max_items]
    return beh.evaluate_ab(sides, items, trait=trait.id, batch_size=config.batch_size)
