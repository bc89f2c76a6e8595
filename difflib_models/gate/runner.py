"""Run a release gate end to end: load base / candidate (/ control), compute what the policy needs, evaluate the
checks, write report.json + renderings, and return the exit code.

What is computed depends on the policy's checks:

- persona metrics -> per trait: a persona vector (from ``--vectors`` files, else extracted on the BASE with
  persona-core's extractor), probe activations of base / candidate / control on the trait's evaluation
  questions (last prompt token), shifts with :class:`difflib_models.persona.shift.ShiftBaseline` (the shift core the PersonaMonitor uses too) against
  covariance-realistic null directions, and the excess over a matched control fine-tune when one is given.
  A vector without a held-out AUROC at the layer used, with one below ``persona.min_auroc``, with a pos-neg gap
  not above the base spread, or a degenerate base spread marks the trait ``signal_ok: false``
  (:func:`signal_notes`): the report says the signal is too weak for a verdict instead of emitting one.
- behavioural metrics -> the behavioural eval (offline A/B probabilities by default; a judge endpoint if given).
- crosscoder / drift / any other report path -> read from a diffing result merged with ``diff=``; the
  ``crosscoder.ft_only_aligned`` metric from ``crosscoder=`` (finite weights and recorded identities of this
  base/candidate required, see :func:`difflib_models.gate.alignment.crosscoder_alignment`).
- data_filter metrics -> a data-filter summary JSON given with ``data_filter=``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from difflib_models.errors import (
    ConfigError,
    DifflibError,
    ModelLoadError,
    NonFiniteActivationError,
    bad_value,
)
from difflib_models.files import load_json
from difflib_models.finite import finite_or_none
from difflib_models.gate import behavioural as beh
from difflib_models.gate import vector_cache
from difflib_models.gate.alignment import crosscoder_alignment
from difflib_models.gate.behavioural import model_view
from difflib_models.gate.engine import exit_code, judge
from difflib_models.gate.policy import (
    BALANCED_METRICS,
    BEHAVIOURAL_METRICS,
    CROSSCODER_METRICS,
    DATA_FILTER_METRICS,
    PERSONA_METRICS,
    RESPONSE_METRICS,
    Policy,
    load_policy,
)
from difflib_models.gate.response_signals import response_fields
from difflib_models.hooks import BlockReader, EarlyStop, probe_mode, run_forward
from difflib_models.models.compat import check_compatible, model_label
from difflib_models.models.loading import LoadedModel, from_pretrained_objects, load_model
from difflib_models.outputs import check_outputs
from difflib_models.persona.contracts import ValidationSummary
from difflib_models.persona.extraction.extractor import PersonaExtractor
from difflib_models.persona.extraction.vectors import PersonaVectorSet, vector_paths
from difflib_models.persona.filtering.records import FilterSummary
from difflib_models.persona.shift import PROBE_BATCH_SIZE, ShiftBaseline
from difflib_models.persona.shift.core import probe_activations
from difflib_models.persona.shift.headroom import scale_pairs
from difflib_models.persona.traits import load_trait
from difflib_models.persona.validation.validate import validate_vectors
from difflib_models.report.behaviour_records import BehaviouralSection
from difflib_models.report.builder import (
    attach_alignment,
    attach_behavioural,
    attach_data_filter,
    attach_persona,
    attach_verdict,
    data_entry,
    merge_diff,
    monitor_section,
    new_report,
    write_report,
)
from difflib_models.report.records import GateVerdict, PersonaRow, PersonaSection, VectorCacheInfo

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
    use_cache: bool = True
    """Reuse / store the persona vectors the gate extracts (:mod:`~difflib_models.gate.vector_cache`) and the base's
    response probes and A/B scores (:mod:`~difflib_models.gate.base_cache`) in the per-base cache (``--no-cache``:
    extract and measure again)."""
    em_questions: str | Path | None = None
    batch_size: int = PROBE_BATCH_SIZE
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
    """A gate run: the written report document (``report``, as in report.json), where it went, the exit code, and
    the typed records behind it (``outcome``: verdict and checks; ``persona`` / ``behavioural``: those sections, when
    measured)."""

    report: dict[str, Any]
    paths: dict[str, Path]
    exit_code: int
    outcome: GateVerdict
    persona: PersonaSection | None = None
    behavioural: BehaviouralSection | None = None

    @property
    def verdict(self) -> str:
        return self.outcome.verdict


# ------------------------------------------------------------------------------------------------ loading
def _load(spec: Any, what: str) -> Any:
    """A LoadedModel from a spec (or pass one through); unexpected loader failures become ModelLoadError. A
    LoadedModel passed in is checked against its identity first (re-hashed, with a warning, when its weights were
    changed in memory after loading: the report and the gate's caches must name the weights the gate measures)."""
    if hasattr(spec, "model") and hasattr(spec, "tokenizer"):
        if callable(getattr(spec, "verify_identity", None)):
            spec.verify_identity()
        return spec
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
    # before any compute: one tokenizer, one hidden size, one depth (ConfigError naming the models, exit 2)
    check_compatible([(name, loaded) for name, (loaded, _) in sides.items()])
    return sides


_FINITE_PROBE = "Once upon a time, the model answered a question."


def _check_finite(sides: Mapping[str, tuple[Any, str]]) -> None:
    """One short forward per side, read by the hooks layer's reader (:class:`difflib_models.hooks.BlockReader`) at
    every block's output, plus the logits: a model that computes NaN/inf is named up front, with the first block
    where it appears, instead of turning into NaN metrics later (NonFiniteActivationError, exit 3)."""
    def nonfinite(hidden: torch.Tensor) -> torch.Tensor:  # the reader's select: [any NaN, any inf]
        return torch.stack([torch.isnan(hidden).any(), torch.isinf(hidden).any()])

    for name, (loaded, side) in sides.items():
        enc = loaded.tokenizer(_FINITE_PROBE, return_tensors="pt")
        device = next(loaded.model.parameters()).device
        with model_view(loaded, side) as model, probe_mode(model), \
                BlockReader(model, range(int(loaded.n_layers)), nonfinite, early_stop=EarlyStop.never()) as reader:
            out = run_forward(model, input_ids=enc["input_ids"].to(device),
                              attention_mask=enc["attention_mask"].to(device), use_cache=False)
            flags = {f"the output of blocks.{layer}": f for layer, f in reader.take().items()}
        flags["the logits"] = nonfinite(out.logits)
        bad = next(((where, f) for where, f in flags.items() if bool(f.any())), None)
        if bad is not None:
            where, f = bad
            raise NonFiniteActivationError(
                f"{model_label(name, loaded)}{' (adapter disabled)' if side == 'base' else ''} computes "
                f"{'NaN' if bool(f[0]) else 'inf'} activations ({where}) on a plain text; no metric of it would "
                "mean anything. HINT: check its weights (NaN/inf after training?) and dtype (fp16 overflow); run in "
                "float32 or bfloat16."
            )


@contextlib.contextmanager
def _naming(name: str, loaded: Any) -> Iterator[None]:
    """Prefix a NonFiniteActivationError raised inside with the model it came from."""
    try:
        yield
    except NonFiniteActivationError as exc:
        raise NonFiniteActivationError(f"{model_label(name, loaded)}: {exc}") from exc


# ------------------------------------------------------------------------------------------------ persona
def _vector_files(paths: Sequence[str | Path], base: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in paths:
        vs = PersonaVectorSet.load(p, expect_model=base)
        out[vs.trait_id] = vs
    return out


GATE_VALIDATION = "quick"
"""The gate validates the vectors it extracts at the ``quick`` level: held-out AUROC at the used layer and its
nulls (no steering dose-response, which only ``persona extract --validation full`` runs)."""


def extraction_settings(plan: Any, layer: int, batch_size: int, trait_id: str) -> dict[str, Any]:
    """What the gate's extraction of one trait depends on besides the base weights and the trait file (the
    vector-cache key, :func:`difflib_models.gate.vector_cache.cache_key`)."""
    return {"mode": plan.mode_for(trait_id), "aggregator": "mean_diff", "layer": int(layer), "position": "last_prompt_token",
            "max_instructions": plan.max_instructions, "max_extraction_questions": plan.max_extraction_questions,
            "max_probe_prompts": plan.max_probe_prompts, "batch_size": int(batch_size),
            "validation": GATE_VALIDATION}


def _base_view(peft_loaded: Any, model: Any) -> Any:
    """A LoadedModel of a peft model's base view (``model``: the peft model inside ``disable_adapter()``) that the
    extractor records as the base: the adapter load's base identity (its weights were hashed, and verified by
    :func:`_load`, already), else one hashed here (a peft model object passed in carries no base identity)."""
    base_ident = peft_loaded.identity.base
    if base_ident is None:
        return from_pretrained_objects(model, peft_loaded.tokenizer, name="base (adapter disabled)")
    return LoadedModel(model=model, tokenizer=peft_loaded.tokenizer,
                       identity=dataclasses.replace(base_ident, name="base (adapter disabled)"))


def _extract(base_loaded: Any, side: str, trait: Any, layer: int, plan: Any, *,
             probe_acts: torch.Tensor | None = None, batch_size: int = PROBE_BATCH_SIZE) -> Any:
    """Persona vector of ``trait`` at ``layer`` on the BASE model with persona-core's extractor, validated at the
    ``quick`` level on the trait's held-out evaluation split (AUROC of pos vs neg projections, label-permutation
    and random-direction nulls). ``probe_acts`` ([P, d], the base's last-prompt residuals of the probe prompts at
    ``layer``) spares the extractor its own sigma_0 probe forward."""
    small = dataclasses.replace(
        trait,
        instructions=trait.instructions[: plan.max_instructions],
        questions={"extraction": trait.questions["extraction"][: plan.max_extraction_questions],
                   "evaluation": trait.questions["evaluation"][: plan.max_probe_prompts]},
    )
    t0 = time.perf_counter()
    with model_view(base_loaded, side) as model:
        view = base_loaded if side != "base" else _base_view(base_loaded, model)
        ext = PersonaExtractor(mode=plan.mode_for(trait.id), layers=[layer], batch_size=batch_size).fit(
            view, small, probe_acts=None if probe_acts is None else {layer: probe_acts})
        t1 = time.perf_counter()
        log.info("extracted %s at layer %d in %.1f s; validating (%s)", trait.id, layer, t1 - t0, GATE_VALIDATION)
        vs = ext.to_vector_set()
        report = validate_vectors(vs, ext.trait_features(view, small), level=GATE_VALIDATION, seed=plan.seed)
    log.info("validated %s in %.1f s: held-out AUROC %.3f at layer %d", trait.id, time.perf_counter() - t1,
             report.summary.auroc_at(layer) or float("nan"), layer)
    return vs.with_validation(report.summary, selection_reason="gate policy layer")


def _auroc(validation: ValidationSummary | None, layer: int) -> float | None:
    """Held-out AUROC of a vector file's typed validation summary at ``layer`` (the layer the gate USES), or None
    (not validated, not validated at that layer, or not finite). The selected layer's AUROC is never used for
    another layer."""
    return validation.auroc_at(layer) if validation is not None else None


def signal_notes(auroc: float | None, gap: Any, usable: float | None, base_std: float, *, layer: int,
                 min_auroc: float, mode: str = "prompt_contrast") -> list[str]:
    """Why a vector's persona values are no evidence at ``layer`` (empty list: the signal is usable).

    A vector needs a held-out AUROC at the used layer of at least ``min_auroc``, a base spread, and a pos-neg
    gap above the base spread (:func:`difflib_models.persona.shift.core.usable_gap`); a vector extracted with
    ``--validation none`` (``--no-validate``) or read at another layer than it was validated on has no AUROC there.
    The gap is the instruction contrast at the last prompt token: a ``paired`` vector is fitted on response tokens
    and need not read it, so for ``paired`` the gap is not required (its ``shift_frac`` is then None, and a
    ``shift_frac`` check on it is inconclusive by itself)."""
    notes: list[str] = []
    if auroc is None:
        notes.append(f"no held-out AUROC recorded at the used layer {layer}: validate the vector at this layer "
                     "(persona extract with --validation quick or full) or set persona.layer to a validated layer")
    elif auroc < min_auroc:
        notes.append(f"held-out AUROC {auroc:.2f} < {min_auroc:.2f}: the vector does not separate "
                     "the trait in this model")
    if not base_std > 1e-8:
        notes.append("base projections have no spread (sigma_0 = 0)")
    if mode == "paired":
        return notes
    if gap is None or finite_or_none(gap) is None:
        notes.append("no finite pos-neg gap recorded for this vector at the used layer")
    elif usable is None:
        notes.append(f"pos-neg gap {float(gap):.3g} is not above the base spread {base_std:.3g}: the vector does "
                     "not read the instruction contrast")
    return notes


def _probe_all(sides: Mapping[str, tuple[Any, str]], requests: Mapping[str, tuple[Sequence[str], int]], *,
               batch_size: int) -> dict[str, dict[str, torch.Tensor]]:
    """ONE probe pass per model for every trait: the union of the traits' probe prompts (each distinct prompt
    once) read at the union of their layers. Returns {side name: {trait id: [P, d] at the trait's layer}}."""
    prompts: list[str] = []
    row: dict[str, int] = {}
    for trait_prompts, _ in requests.values():
        for p in trait_prompts:
            if p not in row:
                row[p] = len(prompts)
                prompts.append(p)
    layers = sorted({layer for _, layer in requests.values()})
    out: dict[str, dict[str, torch.Tensor]] = {name: {} for name in sides}
    if not prompts:  # no trait (a crosscoder-only policy): nothing to probe
        return out
    for name, (loaded, side) in sides.items():
        with _naming(name, loaded), model_view(loaded, side) as model:
            acts = probe_activations(model, loaded.tokenizer, prompts, layers, batch_size=batch_size)
        out[name] = {tid: acts[layer][[row[p] for p in trait_prompts]] for tid, (trait_prompts, layer)
                     in requests.items()}
    return out


def persona_section(sides: Mapping[str, tuple[Any, str]], policy: Policy, *, vectors: Mapping[str, Any],
                    batch_size: int = PROBE_BATCH_SIZE, save_dir: str | Path | None = None,
                    units: dict[str, tuple[int, torch.Tensor]] | None = None,
                    protect: Sequence[str | Path] = (), use_cache: bool = True,
                    timings: dict[str, float] | None = None,
                    ) -> tuple[PersonaSection, list[dict[str, Any]]]:
    """The ``persona`` report section (a typed :class:`~difflib_models.report.records.PersonaSection`) and the data
    entries (trait hashes) for the policy's traits.

    Each model is probed once for all traits (:func:`_probe_all`). A trait without a ``--vectors`` file takes its
    vector from the per-base cache (:mod:`difflib_models.gate.vector_cache`, unless ``use_cache`` is False) or
    extracts it on the base (and caches it); each row's ``vector_source`` says which (``file``, ``cache``,
    ``extracted``). Vectors not from files are saved to ``save_dir/<trait id>.safetensors`` + ``.json`` (reuse
    them with ``--vectors``); the file name is the trait's validated id, never a path taken from the policy, and
    never one of the ``protect`` files (the ``--vectors`` inputs)."""
    plan = policy.persona
    base_loaded, base_side = sides["base"]
    base_ident = base_loaded.identity.base if base_side == "base" and base_loaded.identity.base \
        else base_loaded.identity
    n_layers = int(base_loaded.n_layers)
    rows: list[PersonaRow] = []
    data: list[dict[str, Any]] = []
    saved: set[str] = set()
    protected = {q.resolve() for p in protect for q in _vector_paths(p)}
    plans: dict[str, tuple[Any, int, Any]] = {}  # trait id -> (trait, layer, vector set or None)
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
        if vs is not None and layer not in vs.vectors:
            raise ConfigError(bad_value("persona.layer", layer, vs.layers, f"the {trait_id} vector file's layers"))
        plans[trait_id] = (trait, layer, vs)
    timings = {} if timings is None else timings
    t = time.perf_counter()
    probes = _probe_all(sides, {tid: (trait.split_questions("evaluation")[: plan.max_probe_prompts], layer)
                                for tid, (trait, layer, _) in plans.items()}, batch_size=batch_size)
    timings["persona_probe_s"] = time.perf_counter() - t
    timings["persona_extract_s"] = 0.0
    sources: dict[str, str] = {}
    for trait_id, (trait, layer, vs) in plans.items():
        vector_file = None
        if vs is None:
            key = vector_cache.cache_key(base_ident, trait.hash, extraction_settings(plan, layer, batch_size, trait.id))
            vs = vector_cache.load_cached(key, trait.id, base_ident) if use_cache else None
            sources[trait_id] = "cache" if vs is not None else "extracted"
            if vs is None:
                t = time.perf_counter()
                with _naming("base", base_loaded):
                    vs = _extract(base_loaded, base_side, trait, layer, plan, probe_acts=probes["base"][trait_id],
                                  batch_size=batch_size)
                vector_cache.store(key, vs)
                timings["persona_extract_s"] += time.perf_counter() - t
            if save_dir is not None:
                vector_file = str(_save_vectors(vs, save_dir, trait.id, saved, protected))
        else:
            sources[trait_id] = "file"
        acts = {name: per[trait_id] for name, per in probes.items()}
        if units is not None:
            units[trait_id] = (layer, vs.unit(layer))
        baseline = ShiftBaseline.from_activations(acts["base"], vs.vector(layer), gap=vs.gap.get(layer),
                                                  n_null=plan.null_directions, seed=plan.seed, trait=trait_id,
                                                  layer=layer, polarity=vs.polarity)
        res = baseline.measure(acts["candidate"])
        ctl = baseline.measure(acts["control"]) if "control" in acts else None
        shift_z, control_z = finite_or_none(res.shift_z), finite_or_none(ctl.shift_z) if ctl is not None else None
        response = None
        if any(c.metric in RESPONSE_METRICS and c.trait == trait_id for c in policy.checks):
            response = response_fields(sides, trait.response_questions()[: plan.max_probe_prompts], layer,
                                       vs.vector(layer), trait=trait_id, polarity=vs.polarity,
                                       max_new_tokens=plan.response_tokens, n_null=plan.null_directions,
                                       seed=plan.seed, batch_size=batch_size, use_cache=use_cache,
                                       scale_pairs=scale_pairs(trait))
        auroc = _auroc(vs.validation, layer)
        notes = signal_notes(auroc, baseline.gap, baseline.usable_gap, baseline.sigma0, layer=layer,
                             min_auroc=plan.min_auroc, mode=vs.mode)
        rows.append(PersonaRow(
            trait=trait_id, layer=layer, polarity=vs.polarity, shift=res.shift, shift_z=shift_z,
            shift_frac=finite_or_none(res.shift_frac), null_percentile=finite_or_none(res.null_percentile),
            drift_cos=res.drift_cos, drift_norm=res.drift_norm, n_probe_prompts=baseline.n_prompts,
            vector_mode=vs.mode, vector_file=vector_file, vector_source=sources[trait_id],
            vector_validation_level=vs.validation_level, null_shifts=tuple(res.null_shifts),
            base_projections=tuple(float(x) for x in baseline.projections),
            candidate_projections=tuple(res.projections),
            has_control=ctl is not None, control_shift=ctl.shift if ctl is not None else None,
            control_shift_z=control_z,
            excess_z=shift_z - control_z if shift_z is not None and control_z is not None else None,
            vector_auroc=auroc, signal_ok=not notes, signal_note="; ".join(notes) if notes else None,
            response=response,
        ))
        data.append({"name": f"trait:{trait_id}", "path": trait.source, "sha256": trait.hash,
                     "n_items": baseline.n_prompts})
    null_kind = f"covariance-realistic N(0, Sigma_hat) with shrinkage, K={plan.null_directions}"
    kinds = set(sources.values())
    source = ("files" if kinds == {"file"} else "extracted on base" if kinds == {"extracted"}
              else "cache" if kinds == {"cache"} else "mixed" if kinds else "files")
    cache = VectorCacheInfo(enabled=use_cache, dir=str(vector_cache.cache_root()),
                            hits=tuple(sorted(t for t, k in sources.items() if k == "cache"))) \
        if kinds - {"file"} else None
    section = PersonaSection(traits=tuple(rows), vector_source=source, null_kind=null_kind, vector_cache=cache)
    return section, data


def _vector_paths(path: str | Path) -> tuple[Path, Path]:
    return vector_paths(path)


def _save_vectors(vs: Any, save_dir: str | Path, trait_id: str, taken: set[str],
                  protected: set[Path] | None = None) -> Path:
    """Save extracted vectors as ``save_dir/<trait id>.safetensors`` (+ ``.json`` sidecar). The name comes from the
    trait's validated id (``[a-z0-9][a-z0-9_.-]*``), never from the policy's trait spec, which may be an input
    file's path; a second trait with the same id, or a name whose files are ``protected`` (input vector files),
    gets ``-2``, ``-3``... The result is checked to lie inside ``save_dir``."""
    root = Path(save_dir).resolve()
    name, n = trait_id, 1
    while name in taken or any(p in (protected or set()) for p in _vector_paths(root / name)):
        n += 1
        name = f"{trait_id}-{n}"
    target = root / f"{name}.safetensors"
    if target.parent != root:
        raise ConfigError(bad_value("trait.id", trait_id, "a plain file name", "trait ids never hold a path"))
    taken.add(name)
    return Path(vs.save(target))


# ------------------------------------------------------------------------------------------------ run
def _check_outputs(config: GateConfig, policy: Policy) -> None:
    """Before loading anything: no output (``--out``, the report files in it, ``--json/--md/--junit``) is an
    input file or lies in an input directory (ConfigError, exit 2)."""
    out = Path(config.out)
    outputs: dict[str, Any] = {"--out": out, **{f"--out/{n}": out / n for n in
                                                ("report.json", "report.html", "report.md", "junit.xml")}}
    outputs.update({f"--{k}": v for k, v in config.extra_outputs.items()})
    vector_files = [p for v in config.vectors for p in _vector_paths(v)]
    check_outputs(outputs, {
        "candidate model": config.candidate, "base model": config.base, "control model": config.control,
        "--policy": policy.path or config.policy, "--vectors file": vector_files, "--diff": config.diff,
        "--crosscoder": config.crosscoder, "--data-filter": config.data_filter, "--monitor": config.monitor,
        "--em-questions": config.em_questions, "policy trait file": list(policy.traits()),
    })


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
    _check_outputs(config, policy)
    sides = _sides(config)
    _check_finite(sides)
    timings["load_s"] = time.perf_counter() - t0
    base_loaded, _ = sides["base"]
    cand_loaded, _ = sides["candidate"]
    persona: PersonaSection | None = None
    behavioural: BehaviouralSection | None = None
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
        persona, data = persona_section(sides, policy, vectors=vectors, batch_size=config.batch_size,
                                        save_dir=Path(config.out) / "vectors", units=units,
                                        protect=config.vectors, use_cache=config.use_cache, timings=timings)
        attach_persona(report, persona)
        if config.crosscoder is not None:
            attach_alignment(report, crosscoder_alignment(
                config.crosscoder, units, expected={"base": ident_base, "candidate": cand_loaded.identity}))
        report["data"].extend(data)
        timings["persona_s"] = time.perf_counter() - t
        for row in persona.traits:
            if not row.signal_ok:
                report["notes"].append(f"{row.trait}: signal too weak for a verdict ({row.signal_note})")
    if metrics & set(BEHAVIOURAL_METRICS):
        t = time.perf_counter()
        behavioural = behavioural_section(sides, policy, config)
        attach_behavioural(report, behavioural)
        if config.judge_url and config.em_questions is not None:
            report["data"].append(data_entry("em_questions", config.em_questions))
        timings["behavioural_s"] = time.perf_counter() - t
    if config.data_filter is not None:
        df_path = Path(config.data_filter)
        summary = _read_json(df_path / "summary.json" if df_path.is_dir() else df_path, "--data-filter")
        if isinstance(summary, Mapping):
            attach_data_filter(report, FilterSummary.from_dict(summary))
        else:  # not an object: copied as given, for the engine to refuse (a check error, exit 3)
            report["data_filter"] = summary
    elif metrics & set(DATA_FILTER_METRICS):
        log.warning("the policy checks data_filter metrics but no --data-filter summary was given")
    if config.monitor is not None:
        report["monitor"] = monitor_section(_read_json(config.monitor, "--monitor"))
    outcome = judge(report, policy)
    attach_verdict(report, outcome, policy.to_dict())
    timings["total_s"] = time.perf_counter() - t0
    report["timings"] = timings
    paths = write_report(report, config.out, paths=config.extra_outputs)
    code = exit_code(outcome.verdict, fail_exit_code=config.fail_exit_code)
    log.info("gate verdict %s (%s), exit %d", outcome.verdict, outcome.reason, code)
    return GateResult(report=report, paths=paths, exit_code=code, outcome=outcome, persona=persona,
                      behavioural=behavioural)


def behavioural_section(sides: Mapping[str, tuple[Any, str]], policy: Policy, config: GateConfig
                        ) -> BehaviouralSection:
    """The behavioural eval the policy's checks need: the offline A/B section, or with ``--judge-url`` the judge's
    section (plus the A/B blocks when a balanced check reads them)."""
    if config.judge_url:
        if config.em_questions is None:
            raise ConfigError(bad_value("--em-questions", None, "an EM evaluation YAML", "needed with --judge-url"))
        questions = beh.load_em_questions(config.em_questions, max_questions=policy.behavioural.max_items)
        judge = beh.OpenAICompatibleJudge(config.judge_url, config.judge_model)
        section = beh.evaluate_judge(sides, questions, judge, seed=config.seed)
        if any(c.metric in BALANCED_METRICS for c in policy.checks):  # balanced checks read the A/B blocks
            ab = beh.ab_section(sides, policy.behavioural_traits(), max_items=policy.behavioural.max_items,
                                batch_size=config.batch_size, n_boot=policy.behavioural.n_boot, seed=config.seed,
                                use_cache=config.use_cache)
            section = section.with_traits(ab.traits or {})
        return section
    return beh.ab_section(sides, policy.behavioural_traits(), max_items=policy.behavioural.max_items,
                          batch_size=config.batch_size, n_boot=policy.behavioural.n_boot, seed=config.seed,
                          use_cache=config.use_cache)
