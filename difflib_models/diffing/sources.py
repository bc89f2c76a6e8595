"""Text sources for diffing: a built-in generic set, a text file, a JSONL file (plain or chat), a list of
strings, or a Hugging Face ``datasets`` object (duck-typed; ``datasets`` is not a dependency).

Chat rows (``{"messages": [{"role", "content"}, ...]}``) are rendered with the tokenizer's chat template, so the
captured tokens are exactly what the chat model sees.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from difflib_models.errors import ConfigError, bad_value
from difflib_models.files import load_json, load_jsonl, read_text

log = logging.getLogger(__name__)

TEXT_FIELDS = ("text", "prompt", "content")


def load_texts(
    source: str | Path | Sequence[Any] | Any | None = "generic",
    *,
    tokenizer: Any | None = None,
    limit: int | None = None,
    text_field: str | None = None,
) -> list[str]:
    """Resolve ``source`` into a list of texts.

    - ``None`` / ``"generic"`` / another built-in name: :func:`difflib_models.capture.prompts.builtin_prompts`;
    - a ``.txt`` path: one text per non-empty line;
    - a ``.jsonl`` / ``.json`` path: rows with ``text`` (or ``prompt``/``content``) or chat ``messages``;
    - a list/tuple of strings or of such rows;
    - a Hugging Face ``datasets.Dataset`` (anything with ``column_names`` that iterates rows).

    ``limit`` keeps the first N texts. Chat rows need ``tokenizer`` (its chat template). ConfigError when the
    source is missing, unreadable or empty.
    """
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(bad_value("limit", limit, "an integer >= 1 or None"))
    if source is None:
        source = "generic"
    if isinstance(source, str | Path):
        texts = _from_spec(source, tokenizer, text_field)
        where = str(source)
    elif hasattr(source, "column_names") and not isinstance(source, Mapping):
        texts = _from_rows(_iter_dataset(source, limit), tokenizer, text_field, "dataset")
        where = f"dataset {type(source).__name__}"
    elif isinstance(source, Sequence):
        texts = _from_rows(source, tokenizer, text_field, "texts")
        where = "texts"
    else:
        raise ConfigError(
            bad_value("texts", type(source).__name__, "a built-in name, a .txt/.jsonl path, a list, or a datasets "
                      "object")
        )
    texts = [t for t in texts if t.strip()]
    if limit is not None:
        texts = texts[:limit]
    if not texts:
        raise ConfigError(bad_value("texts", where, "a source with at least one non-empty text"))
    return texts


def _from_spec(spec: str | Path, tokenizer: Any, text_field: str | None) -> list[str]:
    path = Path(spec).expanduser()
    if isinstance(spec, str) and not path.exists() and "/" not in spec and "." not in spec:
        try:
            from difflib_models.capture.prompts import builtin_prompts
        except ImportError as exc:  # pragma: no cover - capture/prompts.py is part of the package
            raise ConfigError(f"built-in prompt sets are unavailable ({exc}); pass a .txt or .jsonl file") from exc
        return list(builtin_prompts(spec))
    if not path.is_file():
        raise ConfigError(
            bad_value("texts", str(spec), "a built-in set name (e.g. 'generic'), or an existing .txt/.jsonl file",
                      "this path does not exist")
        )
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = _read_json_rows(path)
        return _from_rows(rows, tokenizer, text_field, str(path))
    return [line.rstrip("\n") for line in read_text(path, what="texts").splitlines() if line.strip()]


def _read_json_rows(path: Path) -> list[Any]:
    if path.suffix.lower() == ".json":
        data = load_json(path, what="texts")
        return list(data) if isinstance(data, list) else [data]
    return [row.value for row in load_jsonl(path, what="texts")]


def _iter_dataset(ds: Any, limit: int | None) -> Iterable[Any]:
    for i, row in enumerate(ds):
        if limit is not None and i >= limit:
            break
        yield row


def _from_rows(rows: Iterable[Any], tokenizer: Any, text_field: str | None, where: str) -> list[str]:
    out: list[str] = []
    for i, row in enumerate(rows):
        if isinstance(row, str):
            out.append(row)
        elif isinstance(row, Mapping):
            if "messages" in row and (text_field is None or text_field == "messages"):
                out.append(render_chat(row["messages"], tokenizer, where=f"{where}[{i}]"))
            else:
                fields = (text_field,) if text_field else TEXT_FIELDS
                value = next((row[f] for f in fields if f in row and isinstance(row[f], str)), None)
                if value is None:
                    raise ConfigError(
                        bad_value(f"{where}[{i}]", sorted(row)[:10], f"a row with one of {list(fields)} or "
                                  "'messages'", "pass text_field= to name the column")
                    )
                out.append(value)
        else:
            raise ConfigError(bad_value(f"{where}[{i}]", row, "a string or a mapping row"))
    return out


def render_chat(messages: Any, tokenizer: Any, *, where: str = "messages") -> str:
    """A conversation rendered with the tokenizer's chat template (no generation prompt appended)."""
    if not isinstance(messages, Sequence) or not messages or not all(
        isinstance(m, Mapping) and "role" in m and "content" in m for m in messages
    ):
        raise ConfigError(bad_value(where, messages, "a non-empty list of {'role', 'content'} messages"))
    if tokenizer is None or getattr(tokenizer, "chat_template", None) is None:
        raise ConfigError(
            bad_value(
                "tokenizer.chat_template", None, "a tokenizer with a chat template",
                f"{where} holds chat messages; use a chat model's tokenizer or plain-text rows",
            )
        )
    return str(tokenizer.apply_chat_template(list(messages), tokenize=False))


def split_stories(text: str) -> list[str]:
    """Split a TinyStories-style text file into stories: stories are joined by a single newline and paragraphs by
    blank lines, so a new story starts on a non-empty line that directly follows a non-empty line."""
    stories: list[str] = []
    current: list[str] = []
    previous_nonempty = False
    for line in text.split("\n"):
        nonempty = bool(line.strip())
        if nonempty and previous_nonempty and current:
            stories.append("\n".join(current).strip())
            current = []
        if nonempty or current:
            current.append(line)
        previous_nonempty = nonempty
    if current and "\n".join(current).strip():
        stories.append("\n".join(current).strip())
    return stories


def select_by_keyword(
    texts: Sequence[str], keywords: str | Sequence[str], *, min_hits: int = 1, exclude: bool = False
) -> list[str]:
    """Texts mentioning any of ``keywords`` (whole-word prefix match, case-insensitive) at least ``min_hits``
    times; with ``exclude`` the texts that mention none of them."""
    words = [keywords] if isinstance(keywords, str) else list(keywords)
    if not words or not all(isinstance(w, str) and w.strip() for w in words):
        raise ConfigError(bad_value("keywords", keywords, "one or more non-empty words"))
    if min_hits < 1:
        raise ConfigError(bad_value("min_hits", min_hits, "an integer >= 1"))
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(w.strip()) for w in words) + ")", re.IGNORECASE)
    if exclude:
        return [t for t in texts if not pattern.search(t)]
    return [t for t in texts if len(pattern.findall(t)) >= min_hits]
