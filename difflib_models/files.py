"""Readers for user files: one :class:`~difflib_models.errors.ConfigError` line for every bad file.

Every file a user hands the library (prompts, traits, policies, vector sidecars, data-filter summaries, monitor
and diff JSON, EM questions, adapter configs) is read through these functions. A missing or unreadable file,
bytes that are not UTF-8, invalid JSON/JSONL/YAML and YAML alias bombs all become one ``ConfigError`` that names
the file, the line and column where known, and the fix, so the CLI exits 2 with one line instead of a traceback.

``what`` is the argument or role of the file in messages (``"--policy"``, ``"trait"``, ``"prompts"``).
YAML is parsed with a ``SafeLoader`` whose alias expansion is capped (:data:`MAX_ALIAS_NODES`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from difflib_models.errors import ConfigError, bad_value

if TYPE_CHECKING:
    import yaml

MAX_ALIAS_NODES = 100_000
"""YAML nodes that aliases (``*name``) may expand to in one document; an alias bomb goes far past it."""

_UTF8_FIX = "re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 IN > OUT`)"


@dataclass(frozen=True)
class JsonlRow:
    """One non-empty line of a JSONL file: its 1-based line number, the parsed value and the raw line."""

    line: int
    value: Any
    raw: str


def file_error(what: str, path: str | os.PathLike[str], allowed: str, problem: str, *,
               line: int | None = None, column: int | None = None) -> ConfigError:
    """A ConfigError naming ``path`` (and ``line``/``column``) with ``problem`` and the fix, on one line."""
    where = ""
    if line is not None:
        where = f"line {line}" + (f", column {column}" if column is not None else "") + ": "
    hint = " ".join(f"{where}{problem}".split())  # one line, whatever the problem text held
    return ConfigError(bad_value(what, str(path), allowed, hint))


def read_bytes(path: str | os.PathLike[str], *, what: str, allowed: str = "a readable file") -> bytes:
    """The bytes of ``path``; ConfigError when it is missing, a directory or unreadable."""
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise file_error(what, path, allowed, "the file does not exist; check the path") from None
    except IsADirectoryError:
        raise file_error(what, path, allowed, "this is a directory; pass the file inside it") from None
    except OSError as exc:
        raise file_error(what, path, allowed, f"cannot be read ({exc.strerror or exc}); check its permissions"
                         ) from None


def decode_utf8(data: bytes, *, what: str, path: str | os.PathLike[str], allowed: str = "a UTF-8 text file"
                ) -> str:
    """``data`` decoded as UTF-8 (a leading BOM is dropped); a bad byte names its line and column."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        obj, start = exc.object, exc.start  # positions in exc.object: the bytes after a BOM
        line = obj.count(b"\n", 0, start) + 1
        column = start - (obj.rfind(b"\n", 0, start) + 1) + 1  # in bytes, 1-based
        bad = obj[start:exc.end].hex(" ")
        raise file_error(what, path, allowed, f"byte 0x{bad} is not UTF-8; {_UTF8_FIX}",
                         line=line, column=column) from None


def read_text(path: str | os.PathLike[str], *, what: str) -> str:
    """The text of a UTF-8 file (ConfigError naming the file for missing, unreadable or non-UTF-8 files)."""
    return decode_utf8(read_bytes(path, what=what, allowed="a UTF-8 text file"), what=what, path=path)


def parse_json(text: str, *, what: str, path: str | os.PathLike[str]) -> Any:
    """``json.loads(text)`` with errors as one ConfigError naming ``path`` and the line/column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise file_error(what, path, "valid JSON", f"not valid JSON ({exc.msg}); fix the JSON there",
                         line=exc.lineno, column=exc.colno) from None
    except RecursionError:
        raise file_error(what, path, "valid JSON", "nested too deeply to parse; flatten the structure") from None


def load_json(path: str | os.PathLike[str], *, what: str) -> Any:
    """Parse a JSON file (UTF-8); every failure is one ConfigError naming the file and, where known, the line."""
    return parse_json(read_text(path, what=what), what=what, path=path)


def load_jsonl(path: str | os.PathLike[str], *, what: str) -> list[JsonlRow]:
    """Parse a JSONL file: one :class:`JsonlRow` per non-empty line; a bad line is named in the ConfigError.
    The library's one JSONL reader (with :func:`parse_jsonl` for text already read, e.g. package resources)."""
    return parse_jsonl(read_text(path, what=what), what=what, path=path)


def parse_jsonl(text: str, *, what: str, path: str | os.PathLike[str]) -> list[JsonlRow]:
    """JSONL ``text`` (read from ``path``, named in errors): one :class:`JsonlRow` per non-empty line."""
    rows = []
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 etc. may sit inside a JSON string
        line = line[:-1] if line.endswith("\r") else line
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise file_error(what, path, "one JSON value per line (JSONL)",
                             f"not valid JSON ({exc.msg}); fix the JSON on this line", line=n, column=exc.colno
                             ) from None
        except RecursionError:
            raise file_error(what, path, "one JSON value per line (JSONL)",
                             "nested too deeply to parse; flatten the structure", line=n) from None
        rows.append(JsonlRow(line=n, value=value, raw=line))
    return rows


def parse_yaml(text: str, *, what: str, path: str | os.PathLike[str], max_alias_nodes: int = MAX_ALIAS_NODES
               ) -> Any:
    """Safe-load YAML ``text``; syntax errors, unknown tags and alias bombs are one ConfigError."""
    import yaml

    loader = _capped_loader_class()(text)
    loader.max_alias_nodes = max_alias_nodes
    try:
        return loader.get_single_data()
    except _AliasBombError as exc:
        raise file_error(what, path, "valid YAML", f"{exc}; write the repeated values out instead of nesting "
                         "aliases", line=exc.line, column=exc.column) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or type(exc).__name__
        if exc.context and exc.problem:
            problem = f"{problem} ({exc.context})"
        raise file_error(what, path, "valid YAML", f"not valid YAML ({problem}); fix the YAML there",
                         line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise file_error(what, path, "valid YAML", f"not valid YAML ({exc}); fix the YAML") from None
    except RecursionError:
        raise file_error(what, path, "valid YAML", "nested too deeply to parse; flatten the structure") from None
    finally:
        loader.dispose()


def load_yaml(path: str | os.PathLike[str], *, what: str, max_alias_nodes: int = MAX_ALIAS_NODES) -> Any:
    """Safe-load a YAML file (UTF-8) with capped alias expansion; failures are one ConfigError naming the file."""
    return parse_yaml(read_text(path, what=what), what=what, path=path, max_alias_nodes=max_alias_nodes)


# ------------------------------------------------------------------------------------------ capped YAML loader
class _AliasBombError(Exception):
    def __init__(self, message: str, line: int | None, column: int | None) -> None:
        super().__init__(message)
        self.line, self.column = line, column


_LOADER: type[yaml.SafeLoader] | None = None


def _capped_loader_class() -> type[yaml.SafeLoader]:
    """A SafeLoader that counts the nodes every alias expands to and stops past ``max_alias_nodes``.

    The count is made on the composed node graph (each distinct node's expanded size is memoised), so the check
    costs time linear in the document, not in its expansion. A recursive alias (a node containing itself) is
    rejected as well: the data it builds has no end."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class CappedSafeLoader(yaml.SafeLoader):
        max_alias_nodes = MAX_ALIAS_NODES

        def __init__(self, stream: Any) -> None:
            super().__init__(stream)
            self._alias_nodes = 0
            self._sizes: dict[int, int] = {}
            self._done: set[int] = set()

        def compose_node(self, parent: Any, index: Any) -> Any:
            if not self.check_event(yaml.AliasEvent):
                node = super().compose_node(parent, index)
                self._done.add(id(node))
                return node
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            if id(node) not in self._done:  # the alias points into the node that holds it
                raise _AliasBombError("a recursive alias refers to the node that contains it",
                                      mark.line + 1, mark.column + 1)
            self._alias_nodes += self._size(node, mark)
            if self._alias_nodes > self.max_alias_nodes:
                raise _AliasBombError(
                    f"aliases expand to more than {self.max_alias_nodes} nodes (alias bomb)",
                    mark.line + 1, mark.column + 1)
            return node

        def _size(self, node: Any, mark: Any) -> int:
            key = id(node)
            known = self._sizes.get(key)
            if known is not None:
                return known
            if isinstance(node, yaml.MappingNode):
                total = 1 + sum(self._size(k, mark) + self._size(v, mark) for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                total = 1 + sum(self._size(v, mark) for v in node.value)
            else:
                total = 1
            if total > self.max_alias_nodes:  # stop early: no need to size the rest of a bomb
                raise _AliasBombError(
                    f"aliases expand to more than {self.max_alias_nodes} nodes (alias bomb)",
                    mark.line + 1, mark.column + 1)
            self._sizes[key] = total
            return total

    _LOADER = CappedSafeLoader
    return _LOADER


# ----------------------------------------------------------------------------------------------- checkpoints
def check_torch_checkpoint(path: str | os.PathLike[str], *, what: str, fix: str) -> Path:
    """Open a ``torch.save`` checkpoint (``weights_only=True``, memory-mapped, so cheap) before a trainer resumes
    from it; a truncated or foreign file is one ConfigError naming it and ``fix`` instead of a deep traceback."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise file_error(what, p, "a checkpoint file", f"the file does not exist; {fix}")
    try:
        torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/OSError/UnpicklingError/EOFError here
        reason = " ".join(str(exc).split()).split(". ")[0][:120] or type(exc).__name__  # first sentence only
        raise file_error(what, p, "a complete torch checkpoint",
                         f"cannot be loaded ({type(exc).__name__}: {reason}), it is truncated or corrupt; {fix}"
                         ) from None
    return p
