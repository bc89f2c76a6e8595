"""The `diff` pipeline: paired harvest -> baselines (weight deltas, drift, next-token KL, ADL) -> crosscoder
(train, analyse, Latent Scaling, max-activating contexts) -> ``OUT/diff.json``.

Resumable: each finished stage leaves a marker ``OUT/stages/<stage>.json`` holding its result and a key (hash
of the inputs that determine it); a rerun with the same key reuses the result instead of redoing the stage. The
harvest store and the crosscoder's Lightning checkpoints resume partial work on their own.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from difflib_models._version import __version__
from difflib_models.crosscoder.analysis import analyze_crosscoder
from difflib_models.crosscoder.config import QUICK_PRESET, CrosscoderConfig, config_default
from difflib_models.crosscoder.examples import max_activating_examples
from difflib_models.crosscoder.latent_scaling import latent_scaling
from difflib_models.crosscoder.sources import StoreSource
from difflib_models.crosscoder.splice import splice_metrics
from difflib_models.diffing.adl import activation_difference_lens, logit_lens
from difflib_models.diffing.drift import drift_from_store, next_token_kl
from difflib_models.diffing.harvest import harvest_paired, texts_hash
from difflib_models.diffing.pair import ModelPair
from difflib_models.diffing.sources import load_texts
from difflib_models.diffing.weights import weight_deltas
from difflib_models.errors import ConfigError, bad_value
from difflib_models.io import atomic_write, atomic_write_json
from difflib_models.models.hookpoints import LAYER_CONVENTION, parse_layers
from difflib_models.stages import StageCache, fingerprint
from difflib_models.store.reader import ActivationStore

log = logging.getLogger(__name__)

DIFF_FORMAT = "difflib_models.diff/1"
STAGES = ("harvest", "weight_deltas", "drift", "adl", "crosscoder")


@dataclass
class DiffConfig:
    """Settings of :func:`run_diff` (the `difflib-models diff` options)."""

    out: Path
    """Output directory (diff.json, the paired store, stage markers, crosscoder)."""
    layers: str | list[int] = "mid"
    """Blocks to compare: '3', '0,2', 'all', 'mid', '-1' (blocks.i = residual after block i)."""
    texts: Any = "generic"
    """Text source: built-in name, .txt/.jsonl path, list of strings or a datasets object."""
    max_texts: int | None = None
    batch_size: int = 8
    max_length: int = 128
    adl_k: int = 5
    """ADL: mean difference over the first k tokens of each text."""
    top_tokens: int = 20
    kl: bool = True
    """Compute next-token KL per position (one extra forward per side)."""
    crosscoder: bool = True
    """Train and analyse a crosscoder (needs lightning)."""
    dict_size: int | None = None
    """Crosscoder latents; default 8 x d_model."""
    k: int = config_default("k")
    steps: int = QUICK_PRESET["steps"]
    """Crosscoder steps: the quick preset (crosscoder/config.py QUICK_PRESET), not CrosscoderConfig's full run."""
    cc_batch_size: int = QUICK_PRESET["batch_size"]
    activation: str = config_default("activation")
    exclusive_latents: int = 0
    """Dedicated feature crosscoder: latents reserved per model (0: a plain crosscoder)."""
    exclusive_penalty: float = 1.0
    """Sparsity price of a dedicated latent relative to a shared one."""
    top_latents: int = 10
    """Fine-tune-only latents reported with max-activating contexts."""
    n_examples: int = 5
    example_tokens: int = 50_000
    """At most this many stored tokens are scanned for max-activating contexts."""
    splice_texts: int = 16
    """Texts used for the splice-in CE/KL recovered of a single-layer crosscoder (0 skips it)."""
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        for name in ("batch_size", "max_length", "adl_k", "top_tokens", "k", "steps", "cc_batch_size",
                     "top_latents", "n_examples", "example_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(bad_value(name, value, "an integer >= 1"))
        if self.max_length < 2:
            raise ConfigError(bad_value("max_length", self.max_length, "an integer >= 2"))
        if self.dict_size is not None and (not isinstance(self.dict_size, int) or self.dict_size < 2):
            raise ConfigError(bad_value("dict_size", self.dict_size, "an integer >= 2 or None (8 x d_model)"))
        if not isinstance(self.splice_texts, int) or self.splice_texts < 0:
            raise ConfigError(bad_value("splice_texts", self.splice_texts, "an integer >= 0"))
        if self.max_texts is not None and self.max_texts < 1:
            raise ConfigError(bad_value("max_texts", self.max_texts, "an integer >= 1 or None"))
        if self.activation not in ("batchtopk", "topk", "l1"):
            raise ConfigError(bad_value("activation", self.activation, ("batchtopk", "topk", "l1")))
        if not isinstance(self.exclusive_latents, int) or isinstance(self.exclusive_latents, bool) or (
            self.exclusive_latents < 0
        ):
            raise ConfigError(bad_value("exclusive_latents", self.exclusive_latents, "an integer >= 0"))

    def key_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out)
        d["texts"] = self.texts if isinstance(self.texts, str | Path) or self.texts is None else "<in-memory>"
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def crosscoder_available() -> bool:
    """True when the crosscoder package and Lightning can be imported."""
    return all(
        importlib.util.find_spec(m) is not None
        for m in ("difflib_models.crosscoder.lightning_module", "lightning")
    )


def run_diff(pair: ModelPair, config: DiffConfig) -> dict[str, Any]:
    """Run every stage for ``pair`` and write ``config.out / "diff.json"``; returns the JSON dict."""
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    texts = load_texts(config.texts, tokenizer=pair.tokenizer, limit=config.max_texts)
    layers = parse_layers(config.layers, pair.n_layers)
    identities = pair.identities()
    base_key = [identities, layers, texts_hash(texts), config.max_length]
    stages = StageCache(out)
    store_dir = out / "store"

    def harvest() -> dict[str, Any]:
        store = harvest_paired(pair, texts, layers, store_dir, batch_size=config.batch_size,
                               max_length=config.max_length)
        return {"path": "store", "n_tokens": store.n_tokens, "n_texts": len(texts), "layers": store.layers}

    harvest_info = stages.run("harvest", base_key, harvest,
                              valid=lambda: (store_dir / "manifest.json").is_file())

    def open_store() -> Any:
        return ActivationStore.open(store_dir)

    def weights() -> dict[str, Any]:
        if pair.finetuned is None:
            return weight_deltas(pair.base.model)
        return weight_deltas(pair.base.model, pair.finetuned.model)

    weight_info = stages.run("weight_deltas", identities, weights)

    def drift() -> dict[str, Any]:
        result: dict[str, Any] = {"layers": [d.to_dict() for d in drift_from_store(open_store())]}
        if config.kl:
            result["next_token_kl"] = next_token_kl(pair, texts, batch_size=config.batch_size,
                                                    max_length=config.max_length)
        return result

    drift_info = stages.run("drift", [base_key, config.kl], drift)

    def adl() -> dict[str, Any]:
        from safetensors.torch import save_file

        store = open_store()
        results, vectors = {}, {}
        for layer in layers:
            res = activation_difference_lens(pair, layer=layer, k=config.adl_k, top_n=config.top_tokens,
                                             store=store)
            results[str(layer)] = res.to_dict()
            vectors[f"blocks.{layer}"] = res.vector.detach().float().contiguous()
        meta = {"layer_convention": LAYER_CONVENTION, "k": str(config.adl_k), "kind": "adl_mean_difference"}
        atomic_write(out / "adl_vectors.safetensors", lambda p: save_file(vectors, str(p), metadata=meta))
        return {"k": config.adl_k, "vectors_file": "adl_vectors.safetensors", "layers": results}

    adl_info = stages.run("adl", [base_key, config.adl_k, config.top_tokens], adl,
                          valid=lambda: (out / "adl_vectors.safetensors").is_file())

    if not config.crosscoder:
        cc_info: dict[str, Any] = {"status": "skipped", "reason": "disabled (--no-crosscoder)"}
    elif not crosscoder_available():
        cc_info = {"status": "unavailable", "reason": "difflib_models.crosscoder or lightning cannot be imported"}
    else:
        cc_key = fingerprint([base_key, config.dict_size, config.k, config.steps, config.cc_batch_size,
                              config.activation, config.seed, config.top_latents, config.n_examples,
                              config.splice_texts,
                              *((config.exclusive_latents, config.exclusive_penalty) if config.exclusive_latents
                                else ())])
        cc_info = stages.run(
            "crosscoder", cc_key,
            lambda: _crosscoder_stage(pair, config, store_dir, f"crosscoder/{cc_key[:12]}", texts, layers),
            valid=lambda: (out / "crosscoder" / cc_key[:12] / "crosscoder").is_dir(),
        )

    result = {
        "format": DIFF_FORMAT,
        "library_version": __version__,
        "identities": identities,
        "pair_mode": pair.mode,
        "layers": layers,
        "layer_convention": LAYER_CONVENTION,
        "hook_points": pair.base.hook_points.to_dict(),
        "texts": {"source": config.key_dict()["texts"], "n": len(texts), "sha256": texts_hash(texts),
                  "max_length": config.max_length},
        "store": harvest_info,
        "weight_deltas": weight_info,
        "drift": drift_info,
        "adl": adl_info,
        "crosscoder": cc_info,
        "config": config.key_dict(),
        "stages": stages.summary(),
    }
    atomic_write_json(out / "diff.json", result)
    log.info("wrote %s", out / "diff.json")
    return result


def _splice(pair: ModelPair, cc: Any, texts: list[str], layer: int, config: DiffConfig) -> dict[str, Any]:
    """Splice-in CE/KL recovered (mean ablation) for both models of a single-layer crosscoder. An adapter pair
    is split into two modules for this: the peft model (adapter on) and a copy with the LoRA layers unloaded."""
    _, ids, mask = next(pair.batches(texts, batch_size=len(texts), max_length=config.max_length))
    if pair.finetuned is None:
        base_module = copy.deepcopy(pair.base.model).unload()
        ft_module = pair.base.model
    else:
        base_module, ft_module = pair.base.model, pair.finetuned.model
    out = {}
    for target, side in ((0, "base"), (1, "finetuned")):
        out[side] = splice_metrics(cc, [base_module, ft_module], ids, mask, layer=layer, target_model=target,
                                   block_override=pair.hook_override)
    return out


def _decoder_bias_shift(pair: ModelPair, cc: Any, layers: list[int], top_n: int) -> dict[str, Any]:
    """Per layer, ``b_dec[ft] - b_dec[base]`` in activation units, and its logit-lens reading. A fine-tune's
    token-independent shift lands in the decoder biases, not in any latent, so this is where it shows."""
    b = cc.denormalize(cc.b_dec.detach()[None])[0]
    base_src, ft_src = cc.config.sources_of_model(0), cc.config.sources_of_model(1)
    out = {}
    for i, layer in enumerate(layers):
        vec = (b[ft_src[i]] - b[base_src[i]]).float()
        with pair.side("finetuned") as model:
            top, _ = logit_lens(model, vec, pair.tokenizer, top_n=top_n)
        out[str(layer)] = {"norm": float(vec.norm()), "top_tokens": top}
    return out


def _crosscoder_stage(pair: ModelPair, config: DiffConfig, store_dir: Path, rel_dir: str, texts: list[str],
                      layers: list[int]) -> dict:
    """Train a crosscoder on the paired store (into ``out/rel_dir``: one directory per settings key, so a
    checkpoint of other settings is never resumed), analyse it, run Latent Scaling on the fine-tune-only latents
    and collect max-activating contexts of the top ones."""
    import torch

    from difflib_models.crosscoder.lightning_module import train_crosscoder
    source = StoreSource(store_dir)
    d = pair.d_model
    batch = min(config.cc_batch_size, source.n_tokens)
    cfg = CrosscoderConfig(
        d_model=d,
        n_sources=source.n_sources,
        n_models=2,
        dict_size=config.dict_size or 8 * d,
        activation=config.activation,
        k=min(config.k, (config.dict_size or 8 * d) // 2),
        batch_size=batch,
        steps=config.steps,
        seed=config.seed,
        source_names=source.source_names,
        exclusive_latents=config.exclusive_latents,
        exclusive_penalty=config.exclusive_penalty,
    )
    cc = train_crosscoder(source, cfg, config.out / rel_dir, max_steps=config.steps)
    analysis = analyze_crosscoder(cc, source)
    bias_shift = _decoder_bias_shift(pair, cc, layers, config.top_tokens)
    splice: dict[str, Any] | None = None
    if len(layers) == 1 and config.splice_texts > 0:
        splice = _splice(pair, cc, texts[: config.splice_texts], layers[0], config)
    latents = analysis.pop("latents")
    ft_only = [row for row in latents if row["class"] == "ft_only"]
    scaling = latent_scaling(cc, source, [row["latent"] for row in ft_only])
    per_latent = {int(j): v for j, v in scaling["latents"].items()}
    ranked = sorted(ft_only, key=lambda row: (not per_latent.get(row["latent"], {}).get("artifact", False),
                                              row.get("fires", 0)), reverse=True)
    top = ranked[: config.top_latents]
    leaning: list[dict[str, Any]] = []
    if not top:  # no latent passes the ft-only cut-off: show the most fine-tune-leaning live latents instead
        alive = [row for row in latents if row["class"] != "dead" and row.get("fires", 1) > 0]
        leaning = sorted(alive, key=lambda row: row["r"], reverse=True)[: config.top_latents]

    store = ActivationStore.open(store_dir)
    acts, table, n = [], {"token_ids": [], "seq_index": [], "pos_index": []}, 0
    for b in store.iter_batches(4096):
        a = b["acts"]
        acts.append(a.reshape(a.shape[0], -1, a.shape[-1]))
        table["token_ids"].append(b["token_ids"])
        table["seq_index"].append(b["prompt_id"])  # contexts are grouped per prompt, not per capture batch row
        table["pos_index"].append(b["pos_index"])
        n += a.shape[0]
        if n >= config.example_tokens:
            break
    examples: dict[str, Any] = {}
    if top or leaning:
        examples = max_activating_examples(
            cc, torch.cat(acts), {k: torch.cat(v) for k, v in table.items()},
            [r["latent"] for r in top + leaning], pair.tokenizer, top_n=config.n_examples,
        )

    def with_examples(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for row in rows:
            entry = dict(row)
            entry["latent_scaling"] = per_latent.get(row["latent"])
            entry["examples"] = [{k: c[k] for k in ("activation", "seq", "pos", "text", "tokens", "index")}
                                 for c in examples.get(str(row["latent"]), [])]
            out.append(entry)
        return out
    return {
        "status": "trained",
        "dir": rel_dir,
        "config": cfg.to_dict(),
        "metrics": analysis.get("metrics", {}),
        "splice": splice,  # None for multi-layer crosscoders (splicing replaces one layer)
        "decoder_bias_shift": bias_shift,
        "class_counts": analysis["class_counts"],
        "thresholds": analysis["thresholds"],
        "r_histogram": analysis["r_histogram"],
        "shared_decoder_cos": analysis["shared_decoder_cos"],
        "latent_scaling": {"n_ft_only": len(ft_only), "n_artifacts": scaling["n_artifacts"],
                           "artifact_threshold": scaling["artifact_threshold"]},
        "top_ft_only_latents": with_examples(top),
        # only when no latent is fine-tune-only: the live latents with the highest r (not findings by themselves)
        "top_ft_leaning_latents": with_examples(leaning),
    }
