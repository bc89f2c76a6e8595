"""Prompt sets: a built-in generic English set written for this project, and loading user prompt files.

``load_prompts(spec)`` accepts a built-in set name (``generic``, ``generic-questions``, ``generic-sentences``),
a ``.txt`` file (one prompt per non-empty line) or a ``.jsonl`` file whose records carry either ``"text"`` or a
chat ``"messages"`` list (``[{"role": "user", "content": "..."}]``). Chat records are rendered with the
tokenizer's chat template when a tokenizer is given (see :func:`render_messages`), otherwise as plain
``role: content`` lines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from difflib_models.errors import ConfigError, bad_value
from difflib_models.files import load_jsonl, read_text

logger = logging.getLogger(__name__)

# Written for this project (not taken from any data set): short, varied, everyday English.
_QUESTIONS: tuple[str, ...] = (
    "What is a good way to start learning to cook?",
    "How do plants get the water they need?",
    "Can you explain why the sky looks blue during the day?",
    "What should I pack for a weekend trip to the mountains?",
    "Why do cats like to sleep in boxes?",
    "How can I write a polite email asking for a deadline extension?",
    "What is the difference between weather and climate?",
    "Could you suggest a name for a small bakery?",
    "How does a bicycle stay upright when it moves?",
    "What are three tips for sleeping better?",
    "Why do we have leap years?",
    "How would you explain fractions to a child?",
    "What happens to a letter after I put it in the mailbox?",
    "Is it better to study in the morning or at night?",
    "How do I keep basil alive on a windowsill?",
    "What makes a good first sentence in a story?",
    "Why does bread go stale?",
    "Can you help me plan a simple birthday party for ten people?",
    "What is the best way to apologise to a friend?",
    "How do bees make honey?",
    "Which board games are fun for a family evening?",
    "What should I do if my phone gets wet?",
    "How far away is the moon, roughly?",
    "Why do onions make people cry?",
    "What is a healthy breakfast that takes five minutes?",
    "How can I be more patient with myself?",
    "What does a librarian do all day?",
    "Could you summarise the water cycle in two sentences?",
    "How do I politely say no to extra work?",
    "Why do leaves change colour in autumn?",
    "What are some easy exercises to do at a desk?",
    "How should I prepare for a job interview tomorrow?",
)
_SENTENCES: tuple[str, ...] = (
    "The train was late, so we shared a pot of tea on the platform.",
    "My grandmother keeps her buttons in an old biscuit tin.",
    "A small boat drifted slowly across the quiet lake.",
    "The museum opens at nine and closes early on Sundays.",
    "He forgot his umbrella and walked home in the rain.",
    "Our neighbour plays the piano every evening after dinner.",
    "The recipe calls for two eggs, a cup of flour and a pinch of salt.",
    "Fresh snow covered the village overnight.",
    "She finished the puzzle just before midnight.",
    "The children built a fort out of blankets and chairs.",
    "Every spring, the river floods the low fields near the farm.",
    "The old clock in the hall stopped at a quarter past three.",
    "We watched the stars from the roof until it got too cold.",
    "The report is due on Friday, and the team is almost finished.",
    "A stray dog followed us all the way to the market.",
    "The bakery on the corner sells bread that is still warm at dawn.",
    "His handwriting was so small that nobody could read the note.",
    "The meeting was moved to the large room on the second floor.",
    "After the storm, the garden smelled of wet earth.",
    "The bus driver waved at every child who got on.",
    "I left my keys in the door again this morning.",
    "The library has a quiet corner with a view of the park.",
    "Two owls called to each other across the dark valley.",
    "The soup needs more pepper, but the bread is perfect.",
    "Customer service answered the phone after a long wait.",
    "The kite tangled in the branches of the tallest oak.",
    "Once the paint dried, the kitchen looked brand new.",
    "The teacher asked everyone to read the first chapter by Monday.",
    "A light breeze carried the sound of bells from the town.",
    "The hikers reached the top just as the fog lifted.",
    "The shop ran out of milk before lunch.",
    "Thank you for helping me move the heavy table yesterday.",
)

BUILTIN_SETS: dict[str, tuple[str, ...]] = {
    "generic": tuple(q for pair in zip(_QUESTIONS, _SENTENCES, strict=True) for q in pair),
    "generic-questions": _QUESTIONS,
    "generic-sentences": _SENTENCES,
}


def builtin_prompts(name: str = "generic") -> list[str]:
    """A copy of the built-in prompt set ``name`` (``generic``: 64 prompts, questions and sentences mixed)."""
    if name not in BUILTIN_SETS:
        raise ConfigError(bad_value("prompts", name, sorted(BUILTIN_SETS), "or give a .txt / .jsonl file path"))
    return list(BUILTIN_SETS[name])


@dataclass(frozen=True)
class PromptRecord:
    """One prompt: plain ``text`` or a chat ``messages`` list (exactly one is set)."""

    text: str | None = None
    messages: tuple[dict[str, str], ...] | None = None

    def render(self, tokenizer: Any | None = None) -> str:
        if self.text is not None:
            return self.text
        return render_messages(list(self.messages or ()), tokenizer)


def render_messages(
    messages: list[dict[str, str]], tokenizer: Any | None = None, *, add_generation_prompt: bool | None = None
) -> str:
    """Render chat ``messages`` to text: the tokenizer's chat template when it has one, else ``role: content``.

    ``add_generation_prompt`` defaults to True when the last message is not from the assistant."""
    if add_generation_prompt is None:
        add_generation_prompt = bool(messages) and messages[-1].get("role") != "assistant"
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return str(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        )
    lines = [f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages]
    if add_generation_prompt:
        lines.append("assistant:")
    return "\n".join(lines)


def _read_jsonl(path: Path) -> list[PromptRecord]:
    records: list[PromptRecord] = []
    for row in load_jsonl(path, what="prompts"):
        obj = row.value
        if isinstance(obj, dict) and isinstance(obj.get("text"), str):
            records.append(PromptRecord(text=obj["text"]))
        elif isinstance(obj, dict) and _valid_messages(obj.get("messages")):
            records.append(PromptRecord(messages=tuple(dict(m) for m in obj["messages"])))
        else:
            raise ConfigError(
                f"{path}:{row.line}: a record needs a string 'text' or a 'messages' list of "
                "{'role': str, 'content': str}. HINT: one JSON object per line."
            )
    return records


def _valid_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in value)
    )


def load_prompt_records(spec: str | Path) -> list[PromptRecord]:
    """Prompts of ``spec`` (built-in name, ``.txt`` or ``.jsonl``) as records, chat messages unrendered."""
    if isinstance(spec, str) and spec in BUILTIN_SETS:
        return [PromptRecord(text=t) for t in BUILTIN_SETS[spec]]
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(
            bad_value(
                "prompts",
                str(spec),
                f"a built-in set ({', '.join(sorted(BUILTIN_SETS))}) or an existing .txt / .jsonl file",
                f"{path} does not exist" if not path.exists() else f"{path} is not a file",
            )
        )
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        records = _read_jsonl(path)
    elif suffix in (".txt", ""):
        lines = read_text(path, what="prompts").splitlines()
        records = [PromptRecord(text=line.strip()) for line in lines if line.strip()]
    else:
        raise ConfigError(bad_value("prompts", str(path), "a .txt (one prompt per line) or .jsonl file"))
    if not records:
        raise ConfigError(
            bad_value("prompts", str(path), "a file with at least one prompt", f"{path} contains no prompts")
        )
    logger.info("loaded %d prompts from %s", len(records), path)
    return records


def load_prompts(spec: str | Path, *, tokenizer: Any | None = None) -> list[str]:
    """Prompt texts of ``spec``; chat records are rendered with :func:`render_messages` (``tokenizer`` optional)."""
    return [record.render(tokenizer) for record in load_prompt_records(spec)]
