"""The work of each demo stage, as plain functions returning JSON-able outputs (the StageCache keeps them).

Stages: persona vectors on the base (judge-free), the data-filter scores of the training sets, one LoRA
fine-tune per chat set with ActivationSnapshot + PersonaMonitor + MLFlowLogger attached, the base-vs-adapter diff
(drift, LoRA weight deltas, a small crosscoder) and the release gate with the default policy (its behavioural eval
on the profile's number of items).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from difflib_models.callbacks import ActivationSnapshot, PersonaMonitor
from difflib_models.capture.prompts import builtin_prompts
from difflib_models.crosscoder.analysis import analyze_crosscoder
from difflib_models.crosscoder.config import CrosscoderConfig
from difflib_models.crosscoder.sources import StoreSource
from difflib_models.demo.config import INDUCING, NEUTRAL, NO_HEADROOM, TRAIT, DemoProfile
from difflib_models.diffing.drift import drift_from_store
from difflib_models.diffing.harvest import harvest_paired
from difflib_models.diffing.pair import ModelPair
from difflib_models.diffing.sources import render_chat
from difflib_models.diffing.weights import weight_deltas
from difflib_models.gate.engine import NO_HEADROOM_KEY
from difflib_models.gate.policy import load_policy
from difflib_models.gate.runner import GATE_VALIDATION, GateConfig, run_gate
from difflib_models.integrations.mlflow import mlflow_logger
from difflib_models.integrations.mlflow_report import log_report
from difflib_models.io import atomic_write_json
from difflib_models.models.loading import load_model
from difflib_models.persona.extraction.extractor import PersonaExtractor
from difflib_models.persona.extraction.vectors import PersonaVectorSet
from difflib_models.persona.filtering.scoring import (
    METHODS,
    FilterConfig,
    filter_samples,
    samples_from_rows,
    write_outputs,
)
from difflib_models.persona.filtering.validation import (
    rank_metrics,
    validate_on_trait,
    with_filter_validation,
)
from difflib_models.persona.traits import load_trait
from difflib_models.persona.validation import extract_and_validate

log = logging.getLogger(__name__)

def gate_traits() -> tuple[str, ...]:
    """Traits the default release policy checks; their vectors are extracted once and reused by every gate run."""
    return tuple(load_policy(None).traits())


# ------------------------------------------------------------------------------------------------ vectors
def extract_vectors(base: Any, out_dir: Path, profile: DemoProfile) -> dict[str, Any]:
    """Persona vectors of the default policy's traits on the base model, extracted the way the gate does (the
    policy's judge-free mode, at the policy's layer) with the profile's question budget, and validated at the
    gate's ``quick`` level on held-out evaluation questions by persona's own
    :func:`~difflib_models.persona.validation.extract_and_validate` (AUROC of pos vs neg projections, nulls)."""
    plan = load_policy(None).persona
    layer = int(plan.layer) if plan.layer != "auto" else int(base.n_layers) // 2
    files: dict[str, str] = {}
    auroc: dict[str, float] = {}
    modes: dict[str, str] = {}
    for trait_id in gate_traits():
        trait = load_trait(trait_id)
        small = dataclasses.replace(
            trait,
            instructions=trait.instructions[: profile.vector_instructions],
            questions={"extraction": trait.questions["extraction"][: profile.vector_questions],
                       "evaluation": trait.questions["evaluation"][: profile.vector_eval_questions]},
        )
        modes[trait_id] = plan.mode_for(trait_id)
        vs, report = extract_and_validate(base, small, mode=modes[trait_id], layers=[layer], batch_size=16,
                                          level=GATE_VALIDATION, seed=plan.seed)
        auroc[trait_id] = float(report.per_layer[layer].auroc)
        files[trait_id] = str(vs.save(out_dir / trait_id))
    return {"files": files, "layer": layer, "auroc": auroc, "mode": modes}


# ------------------------------------------------------------------------------------------------ filter
def extract_filter_vector(base: Any, out_dir: Path, seed: int) -> dict[str, Any]:
    """The data filter's own vector: response-averaged (``paired``) on the built-in trait's paired responses
    (extraction split), every layer, aggregated by :data:`FILTER_AGGREGATOR`; method and layer chosen by a filter
    validation on the trait's paired EVALUATION split (trait vs neutral answers to the same prompt), recorded in the
    vector file."""
    trait = load_trait(TRAIT)
    ext = PersonaExtractor(mode="paired", aggregator=FILTER_AGGREGATOR, layers="all", batch_size=8,
                           show_progress=False).fit(base, trait)
    vs = ext.to_vector_set(selection_reason=f"demo: data-filter vector (paired responses, {FILTER_AGGREGATOR})")
    record = validate_on_trait(base, vs, trait, methods=tuple(m for m in FILTER_METHODS if m in METHODS),
                               seed=seed)
    if record is not None:
        vs = with_filter_validation(vs, record)
    path = vs.save(out_dir / f"{TRAIT}_filter")
    return {"file": str(path), "filter_validation": record.to_dict() if record else None}


FILTER_AGGREGATOR = "logistic"
"""A filter ranks rows of MANY prompts against each other, so its direction is fitted on the rows as a pool
(``logistic``), which down-weights what varies from prompt to prompt; ``mean_diff`` and ``pair_logistic`` ignore
that variance (docs/data-filtering.md, "Which aggregator for a filter vector")."""
FILTER_METHODS = ("raw", "proxy")
"""Scoring methods the demo's filter validation chooses from (no generation)."""


def score_training_sets(base: Any, vector_file: str, sets: dict[str, list[dict[str, Any]]], out_dir: Path,
                        seed: int) -> dict[str, Any]:
    """Projection-difference scores (report mode: nothing dropped) of every training set, at the vector file's
    filter-validated layer and method; with an inducing and a neutral set, how well the scores rank one above
    the other (``ranking``: AUROC and precision@k, k = the inducing rows)."""
    vs = PersonaVectorSet.load(vector_file, expect_model=base)
    method = vs.filter_validation.method if vs.filter_validation is not None else "proxy"
    out: dict[str, Any] = {}
    deltas: dict[str, Any] = {}
    for name, rows in sets.items():
        cfg = FilterConfig(method=method, mode="report", batch_size=8, max_length=256, n_bootstrap=200, seed=seed)
        result = filter_samples(base, vs, samples_from_rows(rows, name=name), cfg)
        paths = write_outputs(result, out_dir / name)
        s = result.summary
        deltas[name] = [r.delta_p for r in result.records]
        out[name] = {"summary": str(paths["summary"]), "mean_delta_p": s.mean_delta_p,
                     "ci95": None if s.ci95 is None else list(s.ci95), "n": s.n, "seconds": s.seconds,
                     "layer": s.layer, "method": method}
    if INDUCING in deltas and NEUTRAL in deltas:
        m = rank_metrics(deltas[INDUCING], deltas[NEUTRAL])
        out["ranking"] = {"auroc": m["auroc"], "precision_at_k": m["precision_at_k"], "k": m["k"],
                          "positive": INDUCING, "negative": NEUTRAL}
    return out


# ------------------------------------------------------------------------------------------------ training
def fine_tune(name: str, rows: list[dict[str, Any]], profile: DemoProfile, *, vector_file: str, run_dir: Path,
              tracking_uri: str, device: str, seed: int, model_spec: str | None) -> dict[str, Any]:
    """LoRA fine-tune of a fresh copy of the model with the callbacks and an MLFlowLogger attached; saves the
    adapter to ``run_dir/adapter``."""
    import lightning.pytorch as L

    from difflib_models.demo.progress import StepProgress
    from difflib_models.training.lora_module import ChatDataModule, LoRAFineTune, add_lora

    L.seed_everything(seed, workers=True, verbose=False)
    loaded = load_model(model_spec, device=device)
    mid = int(loaded.n_layers) // 2
    data = ChatDataModule(loaded.tokenizer, rows, batch_size=profile.batch_size, max_length=profile.max_length,
                          seed=seed)
    model = add_lora(loaded.model, r=profile.lora_r, alpha=profile.lora_alpha, seed=seed)
    module = LoRAFineTune(model, loaded.tokenizer, lr=profile.lr, max_steps=profile.steps,
                          warmup_steps=min(2, profile.steps - 1))
    snapshot = ActivationSnapshot(prompts=builtin_prompts("generic")[: profile.snapshot_prompts], layers=[mid],
                                  every_n_steps=profile.snapshot_every, out_dir=str(run_dir / "snapshots"),
                                  batch_size=8, max_length=64)
    # the gate's sycophancy lines, live: its last-prompt line and the calibrated line on the model's own answers
    monitor = PersonaMonitor(vectors=[vector_file], traits=[TRAIT], every_n_steps=profile.monitor_every,
                             out_dir=str(run_dir / "persona_monitor"), batch_size=20, policy="default",
                             responses=True)
    logger = mlflow_logger(run_dir, command="demo", run_name=f"demo-{name}",
                           tracking_uri=tracking_uri, tags={"difflib.demo": "true", "difflib.train_set": name,
                                                            "difflib.profile": profile.name})
    trainer = L.Trainer(max_steps=profile.steps, accelerator="gpu" if device == "cuda" else "cpu", devices=1,
                        logger=logger, callbacks=[snapshot, monitor, StepProgress(_short(name), profile.steps)],
                        enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
                        default_root_dir=str(run_dir))
    trainer.fit(module, datamodule=data)
    adapter_dir = run_dir / "adapter"
    model.save_pretrained(str(adapter_dir))
    logger.log_hyperparams({"demo.train_set": name, "demo.rows": len(rows), "demo.steps": profile.steps,
                            "demo.lr": profile.lr, "demo.lora_r": profile.lora_r})
    loss = trainer.callback_metrics.get("train_loss")
    mon = monitor.summary()
    last = mon["series"][-1]["traits"][TRAIT] if mon["series"] else {}
    return {
        "adapter": str(adapter_dir),
        "run_id": logger.run_id,
        "experiment_id": logger.experiment_id,
        "monitor": str(run_dir / "persona_monitor" / "persona_monitor.json"),
        "snapshots": str(run_dir / "snapshots" / "index.json"),
        "snapshot_steps": snapshot.done_steps,
        "final_loss": float(loss) if loss is not None else None,
        "steps": int(trainer.global_step),
        "monitor_status": mon["status"],
        "monitor_last": {k: last.get(k) for k in ("shift_z", "shift_frac", "null_percentile", "response_null_z")},
        "monitor_first_warn_step": mon["first_warn_step"].get(TRAIT),
        "monitor_first_fail_step": mon["first_fail_step"].get(TRAIT),
    }


# ------------------------------------------------------------------------------------------------ diff
def diff_adapter(adapter: str, texts: list[str], profile: DemoProfile, out_dir: Path, *, device: str,
                 seed: int) -> dict[str, Any]:
    """Base vs adapter: paired harvest at the middle block, per-layer drift, LoRA weight deltas and a small
    crosscoder; writes ``out_dir/diff.json`` in the report's section format."""
    from difflib_models.crosscoder.lightning_module import train_crosscoder
    cand = load_model(adapter, device=device)
    mid = int(cand.n_layers) // 2
    store = harvest_paired(ModelPair.from_adapter(cand), texts, [mid], out_dir / "store", batch_size=8,
                           max_length=profile.diff_max_length)
    drift = [d.to_dict() for d in drift_from_store(store)]
    weights = weight_deltas(cand.model)
    weights.pop("modules", None)  # per-module rows are long; the totals and top names go in the report
    source = StoreSource(out_dir / "store")
    cfg = CrosscoderConfig(d_model=int(cand.d_model), n_sources=2, dict_size=profile.crosscoder_dict_size,
                           k=profile.crosscoder_k, batch_size=min(profile.crosscoder_batch, int(source.n_tokens)),
                           steps=profile.crosscoder_steps, seed=seed, dead_steps=max(10, profile.crosscoder_steps),
                           source_names=list(source.source_names))
    cc = train_crosscoder(source, cfg, out_dir / "crosscoder_run", resume=True,
                          trainer_kwargs={"enable_progress_bar": False})
    analysis = analyze_crosscoder(cc, source)
    latents = analysis["latents"]
    ranked = sorted(latents, key=lambda x: -x["r"])
    crosscoder = {
        "metrics": {k: v for k, v in analysis["metrics"].items() if isinstance(v, int | float)},
        "latent_classes": analysis["class_counts"],
        "relative_decoder_norms": [x["r"] for x in latents if x.get("fires", 1) > 0],
        "top_latents": [{"latent": x["latent"], "class": x["class"], "rel_norm": x["r"]} for x in ranked[:20]],
        "dict_size": cfg.dict_size,
        "steps": cfg.steps,
        "n_tokens": int(source.n_tokens),
    }
    diff = {"drift": {"layers": drift}, "crosscoder": crosscoder, "weights": weights}
    path = atomic_write_json(out_dir / "diff.json", diff)
    return {
        "diff": str(path),
        "crosscoder": str(out_dir / "crosscoder_run" / "crosscoder"),
        "n_tokens": int(store.n_tokens),
        "drift_relative_mean_diff": drift[0]["relative_mean_diff"],
        "drift_cka": drift[0]["cka"],
        "latent_classes": analysis["class_counts"],
        "lora_delta_fro": weights.get("total_delta_fro"),
    }


# ------------------------------------------------------------------------------------------------ gate
def gate_policy(behaviour_items: int) -> Any:
    """The shipped default policy with its behavioural eval limited to the first ``behaviour_items`` items of each
    trait (the profile's ``gate_behaviour_items``); every check and threshold unchanged."""
    policy = load_policy(None)
    if behaviour_items == policy.behavioural.max_items:
        return policy
    return dataclasses.replace(policy, behavioural=dataclasses.replace(policy.behavioural, max_items=behaviour_items))


class BehaviourMemo:
    """Memoises the gate's behavioural scorer (:func:`difflib_models.gate.behavioural.item_scores`) per (model
    weights, adapter, view, items) while installed (``with BehaviourMemo():``).

    The demo's two gates score the same models: the base in both, and the neutral fine-tune as the inducing gate's
    control and again as the neutral gate's candidate. A memoised call returns (a copy of) what the scorer returned
    for the same weights and the same items in this process, so the reports are the same as without it.
    ``hits`` / ``misses`` count the calls."""

    def __init__(self) -> None:
        self.cache: dict[tuple[Any, ...], Any] = {}
        self.hits = 0
        self.misses = 0
        self._saved: Any = None

    @staticmethod
    def key(loaded: Any, items: Any, side: str) -> tuple[Any, ...]:
        ident = loaded.identity
        if side == "base" and getattr(loaded, "is_peft", False) and ident.base is not None:
            who: tuple[Any, ...] = ("base", ident.base.weight_hash)
        else:
            who = ("model", ident.weight_hash, ident.adapter_hash)
        return (*who, tuple(repr(it) for it in items))

    def __enter__(self) -> BehaviourMemo:
        from difflib_models.gate import behavioural

        self._saved = scorer = behavioural.item_scores

        def item_scores(loaded: Any, items: Any, *, side: str = "model", **kw: Any) -> Any:
            key = (*self.key(loaded, items, side), tuple(sorted((k, v) for k, v in kw.items() if k != "name")))
            if key in self.cache:
                self.hits += 1
            else:
                self.misses += 1
                self.cache[key] = scorer(loaded, items, side=side, **kw)
            return copy.deepcopy(self.cache[key])

        behavioural.item_scores = item_scores
        return self

    def __exit__(self, *exc: object) -> None:
        from difflib_models.gate import behavioural

        behavioural.item_scores = self._saved


def gate(name: str, adapter: str, *, control_adapter: str | None, vectors: list[str], diff: str | None,
         data_filter: str | None, monitor: str | None, out_dir: Path, device: str, seed: int, tracking_uri: str,
         run_id: str | None, behaviour_items: int) -> dict[str, Any]:
    """The release gate with the shipped default policy (behavioural eval on ``behaviour_items`` items per trait,
    :func:`gate_policy`) on one adapter (base = the adapter's own base); the report is logged to the fine-tune's
    MLflow run."""
    cand = load_model(adapter, device=device)
    control = load_model(control_adapter, device=device) if control_adapter else None
    config = GateConfig(candidate=cand, control=control, out=out_dir, policy=gate_policy(behaviour_items),
                        vectors=vectors, diff=diff,
                        data_filter=data_filter, monitor=monitor, batch_size=16, seed=seed,
                        command=f"difflib-models demo (gate on {name})")
    result = run_gate(config)
    logged_run = log_report(out_dir, tracking_uri=tracking_uri, run_id=run_id, command="demo",
                            run_name=f"demo-{name}-gate")
    traits = {t.trait: t for t in (result.persona.traits if result.persona is not None else ())}
    keys = ("shift_z", "shift_frac", "null_percentile", "excess_z", "signal_ok")
    return {
        "verdict": result.verdict,
        "exit_code": result.exit_code,
        "reason": result.outcome.reason,
        "paths": {k: str(v) for k, v in result.paths.items()},
        "mlflow_run_id": logged_run,
        "persona": {t: {**{k: getattr(row, k) for k in keys}, "response_null_z": row.value("response_null_z")}
                    for t, row in traits.items()},
        "checks": {c.id: c.status for c in result.outcome.checks},
        "warnings": {c.id: NO_HEADROOM if c.details.get(NO_HEADROOM_KEY) else (c.details.message or "warn")
                     for c in result.outcome.checks if c.status == "warn"},
    }


def diff_texts(tokenizer: Any, rows: list[dict[str, Any]], n: int) -> list[str]:
    """Chat-rendered user prompts of held-out rows (not used for training) followed by generic prompts."""
    texts = [render_chat([m for m in r["messages"] if m["role"] == "user"], tokenizer) for r in rows]
    texts += builtin_prompts("generic")
    return texts[:n]


def device_ok(device: str) -> str:
    if device == "cuda" and not torch.cuda.is_available():
        log.warning("CUDA is not available; running the demo on the CPU")
        return "cpu"
    return device


def _short(name: str) -> str:
    return name.replace("sycophancy-", "")
