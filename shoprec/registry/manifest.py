"""What a registered version says about itself: checksums of its files, the export's metadata
essentials, and the rule that a version holds no per-user data."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

FORMAT = "shoprec-registry/1"
MANIFEST = "manifest.json"
REQUIRED = ("metadata.json", "model.ts", "items.pt")  # training.export.ExportedModel.FILES
VERSION_RE = re.compile(r"^v(\d{8}T\d{6}\.\d{6})-[0-9a-f]{6}$")  # UTC time: names sort
# in registration order

# keys that name users: holding a count is fine ("users": 1234), holding ids or rows is not
_USER_KEYS = re.compile(r"^(users?|user_?ids?|userids?|per_?users?.*|user_?(index|map|maps|rows|"
                        r"vectors?|embeddings?|histor(y|ies)|sequences?|profiles?|scores?))$",
                        re.I)


class RegistryError(Exception):
    """A registry operation that cannot be done: one line saying why."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dumps(obj: dict) -> bytes:
    """Canonical JSON (sorted keys): the same manifest always gives the same bytes."""
    return (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode()


def per_user_paths(obj: object, path: str = "") -> list[str]:
    """Where `obj` (metadata, a gate report) holds user ids or per-user rows: a key naming
    users whose value is text or a non-empty collection. Counts (`"users": 943`) pass."""
    bad: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            here = f"{path}.{k}" if path else str(k)
            if _USER_KEYS.match(str(k)) and (isinstance(v, str) or (
                    isinstance(v, list | tuple | dict) and len(v) > 0)):
                bad.append(here)
            else:
                bad += per_user_paths(v, here)
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            bad += per_user_paths(v, f"{path}[{i}]")
    return bad


def recommender_kind(export: Path) -> str:
    """What serving will run: the blend's ranker when the run fitted one, else the model."""
    blend = export / "blend.json"
    if not blend.is_file():
        return "model"
    try:
        kind = json.loads(blend.read_bytes()).get("kind")
    except (ValueError, AttributeError):
        raise RegistryError(f"{blend}: not valid JSON (half-written or damaged export)") from None
    if kind not in ("ranker", "model"):
        raise RegistryError(f"{blend}: kind {kind!r}, expected 'ranker' or 'model'")
    return kind


def headline(manifest: dict) -> str:
    """The metrics that matter, short: the promoted recommender's test NDCG@10 / Recall@20."""
    metrics = manifest.get("metrics") or {}
    name = "blend/test" if manifest.get("recommender") == "ranker" and "blend/test" in metrics \
        else "model/test"
    m = metrics.get(name)
    if not isinstance(m, dict):
        return "-"
    shown = [f"{k} {m[k]:.4f}" for k in ("ndcg@10", "recall@20")
             if isinstance(m.get(k), int | float)]
    return f"{name}: " + " ".join(shown) if shown else "-"
