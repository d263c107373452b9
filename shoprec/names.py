"""Names that become paths or SQL (datasets, batch ids, run ids, versions): one strict pattern,
checked at every entry point, and the helpers that keep paths inside their zone and literals
quoted. A name that fails is refused with one line saying what is allowed."""

from __future__ import annotations

import re
from pathlib import Path

# also the JSON-schema pattern of the DAGs' Params, so the UI refuses what the code refuses
PATTERN_TEXT = r"^(?!.*\.\.)(?!.*\n)[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
PATTERN = re.compile(PATTERN_TEXT)
ALLOWED = ("1-128 characters: letters, digits, '.', '_' and '-', starting with a letter or "
           "digit")


class UsageError(ValueError):
    """An option value the command cannot use (an unknown scale, ...): one line, exit 2."""


class InvalidName(ValueError):
    """A dataset, batch, run or version name that could escape its folder or break SQL."""

    def __init__(self, kind: str, value: object):
        self.kind, self.value = kind, value
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        super().__init__(f"{kind} name {shown} is not allowed: use {ALLOWED}")


def check_name(value: object, kind: str) -> str:
    """`value` if it is a safe name, else InvalidName."""
    if not is_name(value):
        raise InvalidName(kind, value)
    return value


def is_name(value: object) -> bool:
    return isinstance(value, str) and bool(PATTERN.fullmatch(value))


def inside(path: Path, zone: Path) -> Path:
    """`path` resolved, proven to lie under `zone` (symlinks followed): else InvalidName."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(Path(zone).resolve()):
        raise InvalidName("path", f"{path} (outside {zone})")
    return resolved


def sql_literal(value: str | Path) -> str:
    """A SQL string literal for DuckDB (quotes doubled), for the few places that cannot bind a
    parameter (view definitions, COPY targets)."""
    return "'" + str(value).replace("'", "''") + "'"
