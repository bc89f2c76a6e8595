"""Shape crosscoder results into the ``crosscoder`` section of report.json (see report/report.schema.json).

``{"metrics", "latent_classes", "relative_decoder_norms", "latent_scaling", "top_latents"}`` where each top latent is
``{"latent", "class", "rel_norm", "decoder_cos", "flags", "contexts"}``; fine-tune-only latents come first, ranked
by how often they fire, and Latent Scaling artifacts are flagged ``"artifact"`` (never presented as findings
without the flag).
"""

from __future__ import annotations

from typing import Any

from difflib_models.errors import ConfigError, bad_value


def report_section(
    analysis: dict[str, Any],
    scaling: dict[str, Any] | None = None,
    examples: dict[str, Any] | None = None,
    *,
    top_n: int = 20,
    low_cos: float = 0.5,
) -> dict[str, Any]:
    """Build the report section from :func:`analyze_crosscoder`, :func:`latent_scaling` and
    :func:`max_activating_examples` results."""
    if "latents" not in analysis or "class_counts" not in analysis:
        raise ConfigError(bad_value("analysis", sorted(analysis), "the dict returned by analyze_crosscoder()"))
    if top_n < 0:
        raise ConfigError(bad_value("top_n", top_n, "an integer >= 0"))
    scaled = {int(k): v for k, v in ((scaling or {}).get("latents") or {}).items()}
    rows = []
    for item in analysis["latents"]:
        if item["class"] not in ("ft_only", "base_only") and not (
            item["class"] == "shared" and item["decoder_cos"] < low_cos
        ):
            continue
        flags = []
        ls = scaled.get(item["latent"])
        if ls is not None and ls.get("artifact"):
            flags.append("artifact")
        if item["class"] == "shared" and item["decoder_cos"] < low_cos:
            flags.append("changed_direction")
        row: dict[str, Any] = {"latent": int(item["latent"]), "class": item["class"], "rel_norm": item["r"],
                               "decoder_cos": item["decoder_cos"], "flags": flags, "fires": item.get("fires")}
        if ls is not None:
            row["nu_recon"], row["nu_err"] = ls.get("nu_recon"), ls.get("nu_err")
        contexts = (examples or {}).get(str(item["latent"]))
        if contexts:
            row["contexts"] = [{"tokens": c["tokens"], "index": c["index"], "activation": c["activation"]}
                               for c in contexts]
        rows.append(row)
    order = {"ft_only": 0, "shared": 1, "base_only": 2}
    rows.sort(key=lambda r: (order[r["class"]], "artifact" in r["flags"], -(r.get("fires") or 0)))
    return {
        "metrics": analysis.get("metrics") or {},
        "latent_classes": {k: int(v) for k, v in analysis["class_counts"].items()},
        "relative_decoder_norms": [item["r"] for item in analysis["latents"] if item["class"] != "dead"],
        "latent_scaling": scaling,
        "top_latents": rows[:top_n],
    }
