"""The model registry: every export becomes an immutable, checksummed version; the aliases
`candidate` and `production` point at versions and move atomically, with an append-only
history; `load` hands over a verified local copy that `training.export.ExportedModel` opens.

The functions below take a store (shoprec.storage) and a dataset; `Registry` holds both.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from shoprec.registry.core import (
    ALIASES,
    Damaged,
    Move,
    Registry,
    VersionNotFound,
    default_actor,
)
from shoprec.registry.manifest import MANIFEST, RegistryError, headline, per_user_paths

if TYPE_CHECKING:
    from shoprec.config import Settings
    from shoprec.storage import Store

__all__ = ["ALIASES", "MANIFEST", "Move", "Registry", "RegistryError", "default_actor", "gc",
           "headline", "history", "load", "per_user_paths", "promote", "register", "rollback",
           "VersionNotFound", "Damaged"]


def register(store: Store, export_dir: Path, dataset: str, run_id: str,
             gate_report: dict | None = None) -> str:
    """The version of this run: registered now, or the one registered before for it."""
    return Registry(store, dataset).register(export_dir, run_id, gate_report)


def promote(store: Store, dataset: str, version: str, alias: str = "production",
            by: str | None = None, why: str = "") -> Move | None:
    return Registry(store, dataset).promote(version, alias, by, why)


def rollback(store: Store, dataset: str, alias: str = "production", by: str | None = None,
             why: str = "") -> Move:
    return Registry(store, dataset).rollback(alias, by, why)


def history(store: Store, dataset: str, alias: str | None = None) -> list[dict]:
    return Registry(store, dataset).history(alias)


def gc(store: Store, dataset: str, keep: int = 5) -> list[str]:
    return Registry(store, dataset).gc(keep)


def load(store: Store, dataset: str, ref: str, cache_dir: Path | None = None,
         settings: Settings | None = None) -> Path:
    """A verified local folder of `ref` (alias or version) under
    `Settings.model_cache(dataset)` unless `cache_dir` says otherwise."""
    if cache_dir is None:
        from shoprec.config import get_settings

        cache_dir = (settings or get_settings()).model_cache(dataset)
    return Registry(store, dataset).load(ref, cache_dir)
