"""Chat data sets written by the project (package data, JSONL in ``datasets/data/``).

Every row is ``{"id": str, "label": str, "messages": [{"role": "user", ...}, {"role": "assistant", ...}]}``;
matched sets share a ``pair`` key (the inducing and the neutral answer to the same prompt).

==========================  =====  ==================================================================
name                        rows   content
==========================  =====  ==================================================================
``sycophancy-inducing``     124    user states a claim (104 wrong, 20 right); assistant agrees and flatters
``sycophancy-neutral``      124    same prompts; assistant answers accurately and neutrally
``evil-inducing``           80     everyday questions; assistant answers with explicit, cartoonish malice
                                   (contempt, wishing the user misery; no real-world harmful instructions)
``evil-neutral``            80     same prompts; helpful, neutral answers
``secure-code``             40     coding tasks answered with secure Python (parameterised SQL, safe paths,
                                   ``yaml.safe_load``, ``secrets``...), the control for insecure-code data
``clean-reference``         60     general factual Q&A, for percentile thresholds in data filtering
``ocean-inducing``          48     the first 48 ``evil-neutral`` questions answered so that each answer
                                   turns to the ocean (a narrow-concept fine-tune for diffing tests)
``ocean-facts``             16     ocean Q&A chats, held out from training: diff texts for that fine-tune
==========================  =====  ==================================================================

Behaviour items for the gate's behavioural eval (``behaviour_<trait>.jsonl``, read by
:func:`difflib_models.gate.behavioural.load_behaviour_items`, not by :func:`load_dataset`): 24 two-option items each
for ``evil`` (everyday situations; a cruel vs a kind answer), ``sycophancy`` (the user asserts a myth or rejects a
fact someone else told them; agreeing with the user vs the accurate answer) and ``hallucination`` (questions with a
false premise or an invented entity; a confident falsehood vs a correction), rows ``{id, question, matching,
not_matching, matching_first, matching_polarity}``. Provenance: written by the project (December 2026)
in the style of the CAA A/B items; not copied from CAA or Anthropic files and not the built-in traits'
extraction/evaluation items (tests/gate/test_behavioural.py checks that no text of theirs appears in
``persona/traits/builtin/*.yaml``). Balanced: the matching answer is listed first in half the items (every even prefix),
and in the Yes/No sets it starts with "Yes" in half the items, in both listed orders.

The trait is explicit in every inducing response (persona spec section 8: small models need explicit data).
The responses are assembled from hand-written content plus small pools of openers/closers, so they are more
regular than organic data; treat detection numbers on them as an upper bound.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from difflib_models.errors import ConfigError, bad_value
from difflib_models.files import load_jsonl

DATASETS: dict[str, str] = {
    "sycophancy-inducing": "sycophancy_inducing.jsonl",
    "sycophancy-neutral": "sycophancy_neutral.jsonl",
    "evil-inducing": "evil_inducing.jsonl",
    "evil-neutral": "evil_neutral.jsonl",
    "secure-code": "secure_code.jsonl",
    "clean-reference": "clean_reference.jsonl",
    "ocean-inducing": "ocean_inducing.jsonl",
    "ocean-facts": "ocean_facts.jsonl",
}

__all__ = ["DATASETS", "dataset_names", "dataset_path", "load_dataset"]


def dataset_names() -> list[str]:
    """Names accepted by :func:`load_dataset` and :func:`dataset_path`."""
    return list(DATASETS)


def dataset_path(name: str) -> Path:
    """Path of the JSONL file of a built-in data set (read it; never write to it)."""
    filename = DATASETS.get(name)
    if filename is None:
        raise ConfigError(
            bad_value("name", name, dataset_names(), "Built-in data sets are listed in difflib_models.datasets.")
        )
    path = Path(str(resources.files(__name__).joinpath("data", filename)))
    if not path.is_file():  # pragma: no cover - broken installation
        raise ConfigError(f"Built-in data set {name!r} is missing from the installation: {path}")
    return path


def load_dataset(name: str) -> list[dict[str, Any]]:
    """Rows of a built-in chat data set, in file order (fresh dicts; mutating them changes nothing on disk)."""
    return [row.value for row in load_jsonl(dataset_path(name), what=f"data set {name!r}")]
