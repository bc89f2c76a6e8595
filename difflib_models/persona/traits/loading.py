"""Load a trait by built-in id, trait YAML, or a data file the importers read (Anthropic evals ``.jsonl``,
CAA ``.json``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from difflib_models.errors import ConfigError, bad_value
from difflib_models.files import parse_yaml, read_text
from difflib_models.persona.traits.importers import import_trait_file
from difflib_models.persona.traits.schema import Trait

__all__ = ["builtin_traits", "load_trait"]


def builtin_traits() -> list[str]:
    """Ids of the built-in traits written by the project."""
    root = resources.files("difflib_models.persona.traits") / "builtin"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_trait(spec: str | Path | Trait) -> Trait:
    """A Trait from a built-in id, a trait YAML, or an importable data file (Anthropic / CAA / EM)."""
    if isinstance(spec, Trait):
        return spec
    text = str(spec)
    if text in builtin_traits():
        res = resources.files("difflib_models.persona.traits") / "builtin" / f"{text}.yaml"
        return _from_yaml_text(res.read_text(encoding="utf-8"), source=f"builtin:{text}", path=res)
    path = Path(text)
    if not path.exists():
        raise ConfigError(bad_value("trait", text, builtin_traits() + ["a trait YAML", "an evals .jsonl", "a CAA .json"],
                                    "Pass a built-in id or an existing file."))
    if path.suffix in (".jsonl", ".json"):
        return import_trait_file(path)
    if path.suffix not in (".yaml", ".yml"):
        raise ConfigError(bad_value("trait", text, ".yaml/.yml trait files, .jsonl (Anthropic), .json (CAA)"))
    return _from_yaml_text(read_text(path, what="trait"), source=str(path), path=path)


def _from_yaml_text(text: str, *, source: str, path: Any) -> Trait:
    return Trait.from_dict(parse_yaml(text, what="trait", path=path), source=source)
