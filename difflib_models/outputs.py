"""Outputs never land on inputs: the check commands run on their output paths before any compute.

An output path (a file such as ``gate --json``, or an ``--out`` directory and the fixed names written inside it)
must not be an input file and must not be, or lie inside, an input directory (a model, adapter or store dir):
ConfigError naming both, exit 2. An ``--out`` that merely CONTAINS inputs (``--out .``) is allowed, because the
commands write fixed names inside it; pass those names as outputs too. Input specs that are not existing paths
(hub ids, built-in trait names) are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from difflib_models.errors import ConfigError, bad_value

__all__ = ["check_outputs", "existing_paths"]


def existing_paths(specs: Iterable[object]) -> list[Path]:
    """The specs that name existing files or directories, resolved (hub ids, built-in names, None dropped)."""
    out: list[Path] = []
    for spec in specs:
        if isinstance(spec, str | os.PathLike):
            p = Path(os.fspath(spec)).expanduser()
            if p.exists():
                out.append(p.resolve())
    return out


def check_outputs(outputs: Mapping[str, object], inputs: Mapping[str, object]) -> None:
    """Raise ConfigError when an output (option -> path) is an input file or is / lies inside an input directory.

    ``inputs`` maps a description such as ``"--policy"`` to a path spec (or a list of them)."""
    resolved: list[tuple[str, Path]] = []
    for name, spec in inputs.items():
        specs = spec if isinstance(spec, list | tuple | set) else [spec]
        resolved.extend((name, p) for p in existing_paths(specs))
    for option, spec in outputs.items():
        if not isinstance(spec, str | os.PathLike):
            continue
        target = Path(os.fspath(spec)).expanduser().resolve()
        for name, src in resolved:
            inside = src.is_dir() and src in target.parents
            if target == src or inside:
                raise ConfigError(bad_value(
                    option, str(spec), f"a path that is not an input (it is {'inside ' if inside else ''}the {name} "
                    f"{str(src)!r})", "inputs are never written; choose an output path elsewhere"))
