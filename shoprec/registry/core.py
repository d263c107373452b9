"""The model registry of one dataset, on any store (shoprec.storage):

    <dataset>/versions/<version>/<export files> + manifest.json   immutable; manifest LAST
    <dataset>/runs/<run_id>.json      {version, manifest}: the run's claim, created if absent
    <dataset>/aliases/<alias>.json    {version, at, by, why, move}: one write per move
    <dataset>/history/<UTC time>-<uuid>.json   one object per alias move, written BEFORE the alias

A version exists once its manifest does; an alias is moved only onto such a version, in one
atomic write, so a reader that follows it always finds a complete version, and `load` checks
every byte of it against the manifest's sha256 before handing the folder over.

What holds under concurrency and crashes:

- register: the run's claim (`runs/<run_id>.json`, holding the version's name and manifest) is
  created only if absent (`Store.put_if_absent`) before any file is uploaded; of two processes
  registering one run at once, one claim wins and the other process uploads the same files under
  the winner's name (or waits for it, when its files differ), so a run gets one version. A
  registration that crashed after its claim is completed by the next registration of the run
  with the same files, or taken over after CLAIM_TAKEOVER.
- alias moves: the history object of a move (its intent, naming the move it follows: `prev`) is
  written first, then the alias, which names its move (`move`). The alias is the truth; the
  history of an alias is the chain of moves that the alias's `move` leads back through, so an
  intent whose alias write never happened (a crash, a lost race) is never taken for a move.
- gc against promote: each side writes, then re-reads what the other writes. gc re-reads the
  aliases (and what a rollback would return to) before deleting a version's manifest and again
  after, restoring the manifest when a promotion landed meanwhile; promote re-reads the manifest
  after writing the alias and puts the previous alias back when the version was collected.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from shoprec.names import check_name, is_name
from shoprec.registry.manifest import (
    FORMAT,
    MANIFEST,
    REQUIRED,
    VERSION_RE,
    RegistryError,
    dumps,
    per_user_paths,
    recommender_kind,
    sha256_bytes,
    sha256_file,
)
from shoprec.storage import TMP_PREFIX, ObjectNotFound, Store

ALIASES = ("candidate", "production")
INCOMPLETE_GRACE = dt.timedelta(hours=1)  # gc leaves a version without manifest this long
# a run's claim whose version still has no manifest this long after it was made is a crashed
# registration that another may replace (well inside INCOMPLETE_GRACE: gc never races it)
CLAIM_TAKEOVER = dt.timedelta(minutes=10)
CLAIM_WAIT_S = 30.0  # how long a registration with other files waits for the claimed version
CLAIM_ATTEMPTS = 5
LOAD_ATTEMPTS = 3  # an alias moved and its old version collected mid-download: follow again


class VersionNotFound(RegistryError):
    """No complete version (manifest) of that name."""


class Damaged(RegistryError):
    """A registry object that is not what the registry wrote (not JSON, not an object)."""


def default_actor() -> str:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:  # no user name in a container
        return f"uid{os.getuid()}@{socket.gethostname()}"


_clock = threading.Lock()
_last = [dt.datetime.min.replace(tzinfo=dt.UTC)]


def _now() -> dt.datetime:
    """UTC now, strictly increasing within this process (history keys sort by it)."""
    with _clock:
        now = max(dt.datetime.now(dt.UTC), _last[0] + dt.timedelta(microseconds=1))
        _last[0] = now
        return now


def _json(data: bytes, where: str) -> dict:
    try:
        obj = json.loads(data)
    except ValueError:
        raise Damaged(f"{where}: not valid JSON (damaged)") from None
    if not isinstance(obj, dict):
        raise Damaged(f"{where}: not a JSON object (damaged)")
    return obj


def _version_time(version: object) -> dt.datetime | None:
    m = VERSION_RE.match(version) if isinstance(version, str) else None
    if not m:
        return None
    return dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S.%f").replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Move:
    """One alias move, as the history keeps it."""

    alias: str
    old: str | None
    new: str
    at: str
    by: str
    why: str
    action: str  # promote | rollback
    key: str = ""  # its history object
    prev: str | None = None  # the history object of the move it follows
    note: str = ""  # what else happened (a damaged alias written anew)

    def record(self) -> dict:
        return {"alias": self.alias, "from": self.old, "to": self.new, "at": self.at,
                "by": self.by, "why": self.why, "action": self.action, "prev": self.prev}

    def summary(self) -> str:
        return f"{self.alias}: {self.old or '(none)'} → {self.new} ({self.action} by {self.by}" \
               + (f": {self.why})" if self.why else ")")


class Registry:
    """Versions and aliases of one dataset's models in `store`."""

    def __init__(self, store: Store, dataset: str):
        self.store = store
        self.dataset = check_name(dataset, "dataset")
        self._history: dict[str, dict] = {}  # history key → its record (immutable objects)

    # ------------------------------------------------------------------------------ keys
    def _version_key(self, version: str, name: str = "") -> str:
        base = f"{self.dataset}/versions/{check_name(version, 'version')}"
        return f"{base}/{check_name(name, 'file')}" if name else base

    def _alias_key(self, alias: str) -> str:
        return f"{self.dataset}/aliases/{self._alias(alias)}.json"

    def _run_key(self, run_id: str) -> str:
        return f"{self.dataset}/runs/{check_name(run_id, 'run')}.json"

    @staticmethod
    def _alias(alias: str) -> str:
        check_name(alias, "alias")
        if alias not in ALIASES:
            raise RegistryError(f"alias {alias!r} is not one of {', '.join(ALIASES)}")
        return alias

    # -------------------------------------------------------------------------- reading
    def manifest(self, version: str) -> dict:
        """The manifest of a complete version; RegistryError when there is none."""
        return self._manifest(version)[1]

    def _manifest(self, version: str) -> tuple[bytes, dict]:
        key = self._version_key(version, MANIFEST)
        try:
            data = self.store.get_bytes(key)
        except ObjectNotFound:
            raise VersionNotFound(f"no version {version!r} of dataset {self.dataset!r} in "
                                  f"{self.store.uri(self.dataset)} (see `shoprec models "
                                  f"list`)") from None
        m = _json(data, self.store.uri(key))
        if m.get("format") != FORMAT or m.get("version") != version \
                or m.get("dataset") != self.dataset or not isinstance(m.get("files"), dict):
            raise RegistryError(f"{self.store.uri(key)}: not the manifest of version {version} "
                                f"of {self.dataset} (format, version, dataset or files wrong)")
        return data, m

    def trained_on(self, version: str, hmacs: set[str]) -> int | None:
        """How many of these users (HMACs, as the forget log holds them) the version was
        trained on; None when the version keeps no trained-user set (exported before them)."""
        from shoprec.privacy.trained import TRAINED_USERS, count_in

        try:
            blob = self.store.get_bytes(self._version_key(version, TRAINED_USERS))
        except ObjectNotFound:
            return None
        return count_in(blob, hmacs)

    def versions(self) -> list[str]:
        """Complete versions (with a manifest), oldest first."""
        return sorted(v for v, files in self._version_files().items() if MANIFEST in files)

    def _version_files(self) -> dict[str, set[str]]:
        prefix = f"{self.dataset}/versions/"
        out: dict[str, set[str]] = {}
        for key in self.store.list(prefix):
            version, _, name = key[len(prefix):].partition("/")
            if name:
                out.setdefault(version, set()).add(name)
        return out

    def alias(self, alias: str) -> dict | None:
        """{version, at, by, why, move} of an alias, or None when it was never set."""
        key = self._alias_key(alias)
        try:
            rec = _json(self.store.get_bytes(key), self.store.uri(key))
        except ObjectNotFound:
            return None
        except Damaged as e:
            raise Damaged(f"{e}: `shoprec models promote VERSION --alias {alias}` writes it "
                          f"anew") from None
        if not is_name(rec.get("version")):
            raise Damaged(f"{self.store.uri(key)}: names no valid version (damaged): `shoprec "
                          f"models promote VERSION --alias {alias}` writes it anew")
        return rec

    def aliases(self) -> dict[str, str]:
        """alias → version, for the aliases that are set."""
        return {a: rec["version"] for a in ALIASES if (rec := self.alias(a))}

    def resolve(self, ref: str) -> str:
        """A version name from an alias or a version name."""
        if ref in ALIASES:
            rec = self.alias(ref)
            if rec is None:
                raise RegistryError(f"alias {ref!r} of dataset {self.dataset!r} points at no "
                                    f"version yet: `shoprec models promote VERSION --alias {ref}`")
            return check_name(rec.get("version"), "version")
        return check_name(ref, "version")

    def _records(self) -> list[tuple[str, dict]]:
        """Every history object (key, record), oldest first."""
        keys = self.store.list(f"{self.dataset}/history/")
        missing = [k for k in keys if k not in self._history]
        if missing:  # history objects never change: each is fetched once per Registry
            def get(key: str) -> dict:
                return _json(self.store.get_bytes(key), self.store.uri(key))

            if len(missing) < 4:
                self._history.update((k, get(k)) for k in missing)
            else:
                with ThreadPoolExecutor(min(8, len(missing))) as pool:
                    self._history.update(zip(missing, pool.map(get, missing), strict=True))
        return [(k, self._history[k]) for k in keys]

    def _chain(self, alias: str, current: dict | None,
               records: list[tuple[str, dict]] | None = None) -> list[tuple[str, dict]]:
        """The moves that made `current` (the alias's record), oldest first: from the move the
        alias names back through each move's `prev`. History objects off that chain are
        intents whose alias write never happened (a crash) or was overwritten (a lost race).
        Records written before moves were chained (no `prev`) count in time order, as then."""
        if current is None:
            return []
        mine = {k: r for k, r in (records if records is not None else self._records())
                if r.get("alias") == alias}
        legacy = [k for k in mine if "prev" not in mine[k]]  # keys sort by time
        key = current.get("move")
        if key is None:  # an alias written before moves were chained
            return [(k, mine[k]) for k in legacy]
        out: list[tuple[str, dict]] = []
        seen: set[str] = set()
        while isinstance(key, str) and key not in seen and key in mine:
            seen.add(key)
            rec = mine[key]
            if "prev" not in rec:  # reached the unchained records: linear up to this one
                out += reversed([(k, mine[k]) for k in legacy if k <= key])
                break
            out.append((key, rec))
            key = rec.get("prev")
        return out[::-1]

    def history(self, alias: str | None = None, *, unapplied: bool = False) -> list[dict]:
        """Every alias move (of `alias`, or of all), oldest first: the moves that took effect.
        `unapplied`: also the recorded intents that never took effect, each with
        `"applied": False` (the others get `"applied": True`)."""
        if alias is not None:
            self._alias(alias)
        names = ALIASES if alias is None else (alias,)
        current = {a: self.alias(a) for a in names}  # first: their moves are listed below
        records = self._records()
        applied: dict[str, dict] = {}
        for a in names:
            applied.update(self._chain(a, current[a], records))
        if not unapplied:
            return [r for k, r in records if k in applied]
        return [{**r, "applied": k in applied} for k, r in records
                if alias is None or r.get("alias") == alias]

    def run_version(self, run_id: str) -> str | None:
        """The version a run was registered as (None: not registered, not complete yet, or
        collected since)."""
        claim = self._claim(run_id)
        version = claim.get("version") if claim else None
        if is_name(version) and self.store.exists(self._version_key(version, MANIFEST)):
            return version
        if claim is not None:
            return None
        # registrations before claims wrote the index after the manifest: a crash between them
        # left only the manifest
        for v in reversed(self.versions()):
            try:
                if self.manifest(v).get("run_id") == run_id:
                    return v
            except RegistryError:
                continue
        return None

    def _claim(self, run_id: str) -> dict | None:
        key = self._run_key(run_id)
        try:
            return _json(self.store.get_bytes(key), self.store.uri(key))
        except ObjectNotFound:
            return None

    # -------------------------------------------------------------------------- register
    def register(self, export_dir: Path, run_id: str, gate_report: dict | None = None) -> str:
        """Store an export as a new immutable version (or return the run's version when this
        run was registered before)."""
        check_name(run_id, "run")
        existing = self.run_version(run_id)
        if existing:
            return existing
        export = Path(export_dir)
        files = self._export_files(export)
        meta = _json(_read(export / "metadata.json"), str(export / "metadata.json"))
        if meta.get("dataset") != self.dataset:
            raise RegistryError(f"{export / 'metadata.json'}: dataset {meta.get('dataset')!r}, "
                                f"not {self.dataset!r}: register it under its own dataset")
        bad = per_user_paths(meta) + [f"gate_report.{p}" for p in per_user_paths(gate_report)]
        if bad:
            raise RegistryError(f"{export}: holds per-user data ({', '.join(bad[:5])}): a "
                                f"registered version keeps no user ids or per-user rows")
        checks = {n: {"sha256": sha256_file(export / n), "size": (export / n).stat().st_size}
                  for n in files}
        training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
        manifest = {
            "format": FORMAT, "dataset": self.dataset, "run_id": run_id,
            "created_at": meta.get("created_at"), "model_format": meta.get("format"),
            "recommender": recommender_kind(export), "protocol": training.get("protocol"),
            "data_window": meta.get("data_window"),
            "feature_service": meta.get("feature_service"),
            "training_feature_service": meta.get("training_feature_service"),
            "code_version": meta.get("code_version"), "torch_version": meta.get("torch_version"),
            "seed": meta.get("seed"), "metrics": meta.get("metrics") or {},
            "gate_report": gate_report, "files": checks,
        }
        now = _now()
        version = check_name(f"v{now:%Y%m%dT%H%M%S.%f}-{sha256_bytes(dumps(manifest))[:6]}",
                             "version")
        manifest |= {"version": version, "registered_at": now.isoformat()}
        manifest = json.loads(dumps(manifest))  # as every process will read it from the claim
        return self._register_claimed(export, run_id, checks, {
            "version": version, "run_id": run_id, "manifest": manifest})

    def _register_claimed(self, export: Path, run_id: str, checks: dict, mine: dict) -> str:
        """Claim the run for `mine` (create-if-absent), or follow the claim that won; upload the
        export under the claimed version and write its manifest LAST."""
        run_key = self._run_key(run_id)
        for _ in range(CLAIM_ATTEMPTS):
            if self.store.put_if_absent(run_key, dumps(mine)):
                claim = mine
            else:
                claim = self._claim(run_id)
                if claim is None:  # deleted meanwhile (gc, a takeover): claim again
                    continue
                version = claim.get("version")
                if is_name(version) and self.store.exists(self._version_key(version, MANIFEST)):
                    return version
                if not self._live_claim(claim):  # a crashed registration, or a stale index
                    self.store.delete(run_key)
                    continue
                if claim["manifest"].get("files") != checks:
                    return self._await_claimed(run_id, claim)
            version, manifest = claim["version"], claim["manifest"]
            for name in checks:
                self.store.put_file(self._version_key(version, name), export / name)
            changed = [n for n in checks if sha256_file(export / n) != checks[n]["sha256"]]
            if changed:  # rewritten while uploading: leave no manifest, gc collects the rest
                raise RegistryError(f"{export}: {', '.join(changed)} changed while registering; "
                                    f"nothing was registered, try again")
            # still the run's claim? (a server ignoring If-None-Match lets two writers win)
            now = self._claim(run_id)
            if now is None or now.get("version") != version:
                continue
            self.store.put_bytes(self._version_key(version, MANIFEST), dumps(manifest))  # LAST
            return version
        raise RegistryError(f"run {run_id!r} of {self.dataset!r}: its claim "
                            f"{self.store.uri(run_key)} kept changing while registering "
                            f"(concurrent registrations): try again")

    @staticmethod
    def _live_claim(claim: dict) -> bool:
        """A claim a registration may still complete: it holds a manifest for its version and
        was made less than CLAIM_TAKEOVER ago."""
        version, manifest = claim.get("version"), claim.get("manifest")
        made = _version_time(version)
        return (is_name(version) and isinstance(manifest, dict)
                and manifest.get("version") == version
                and isinstance(manifest.get("files"), dict)
                and made is not None and _now() - made < CLAIM_TAKEOVER)

    def _await_claimed(self, run_id: str, claim: dict) -> str:
        """Another registration of this run, with other files, is in flight: its version once
        its manifest exists."""
        version = claim["version"]
        end = time.monotonic() + CLAIM_WAIT_S
        while time.monotonic() < end:
            time.sleep(0.2)
            if self.store.exists(self._version_key(version, MANIFEST)):
                return version
        raise RegistryError(
            f"run {run_id!r} of {self.dataset!r} is being registered as {version} from other "
            f"files by another process (or that registration crashed): try again; a crashed "
            f"one is replaced {int(CLAIM_TAKEOVER.total_seconds() // 60)} minutes after it "
            f"began")

    @staticmethod
    def _export_files(export: Path) -> list[str]:
        if not export.is_dir():
            raise RegistryError(f"{export}: no such export folder")
        names, bad = [], []
        for p in sorted(export.iterdir()):
            if p.name.startswith("."):
                continue  # shoprec.atomic's temporaries
            if p.is_symlink() or not p.is_file():
                bad.append(p.name)
            else:
                names.append(check_name(p.name, "file"))
        if bad:
            raise RegistryError(f"{export}: {', '.join(bad)} not a plain file: an export is a "
                                f"flat folder of files")
        if MANIFEST in names:
            raise RegistryError(f"{export}: holds a {MANIFEST}: that name is the registry's")
        missing = [n for n in REQUIRED if n not in names]
        if missing:
            raise RegistryError(f"{export}: incomplete export (half-written, or not a shoprec "
                                f"run): missing {', '.join(missing)}")
        return names

    # -------------------------------------------------------------------------- aliases
    def promote(self, version: str, alias: str = "production", by: str | None = None,
                why: str = "") -> Move | None:
        """Point `alias` at `version` (one atomic write) and append the move to the history.
        None when it already points there. The version is checked first, every file against
        its manifest (`verify`): a damaged or incomplete version is refused, naming the file.
        An alias object that is damaged is written anew (the move's `note` says so)."""
        alias = self._alias(alias)
        self.verify(version)  # only a complete, intact version can be aliased
        note = ""
        try:
            current = self.alias(alias)
        except Damaged:  # written anew, following the alias's latest recorded move
            note = f"the damaged {alias} alias was written anew"
            mine = [(k, r) for k, r in self._records() if r.get("alias") == alias]
            current = {"version": mine[-1][1].get("to"), "move": mine[-1][0]} if mine else None
            if current is not None and current["version"] == version:
                current["version"] = None  # no "from": a rollback does not return to itself
        if not note and current is not None and current.get("version") == version:
            return None
        move = self._move(alias, current, version, by, why, "promote")
        return replace(move, note=note) if note else move

    def rollback(self, alias: str = "production", by: str | None = None,
                 why: str = "") -> Move:
        """Point `alias` back at the version it held before its last move (the history is a
        stack: promote pushes, rollback pops)."""
        alias = self._alias(alias)
        current = self.alias(alias)
        if current is None:
            raise RegistryError(f"cannot roll back {alias!r} of {self.dataset!r}: it points at "
                                f"no version yet")
        target = self._rollback_target(alias, current)
        if target is None:
            raise RegistryError(f"cannot roll back {alias!r} of {self.dataset!r}: no previous "
                                f"version in its history (it holds {current.get('version')})")
        try:
            self.verify(target)
        except VersionNotFound:
            raise RegistryError(f"cannot roll back {alias!r} of {self.dataset!r}: its previous "
                                f"version {target} no longer exists") from None
        except RegistryError as e:
            raise RegistryError(f"cannot roll back {alias!r} of {self.dataset!r} to {target}: "
                                f"{e}") from None
        return self._move(alias, current, target, by, why, "rollback")

    def rollback_target(self, alias: str) -> str | None:
        alias = self._alias(alias)
        return self._rollback_target(alias, self.alias(alias))

    def _rollback_target(self, alias: str, current: dict | None,
                         records: list[tuple[str, dict]] | None = None) -> str | None:
        stack: list[str] = []
        for _, rec in self._chain(alias, current, records):
            if rec.get("action") == "rollback":
                if stack:
                    stack.pop()
            elif rec.get("from"):
                stack.append(rec["from"])
        return stack[-1] if stack else None

    def _move(self, alias: str, current: dict | None, new: str, by: str | None, why: str,
              action: str) -> Move:
        """Record the move (its history object first: an intent naming the move it follows),
        then write the alias naming it. A crash between the two leaves an intent off the
        alias's chain, which the history does not count."""
        now = _now()
        prev = current.get("move") if current else None
        if current is not None and prev is None:  # the alias predates chained moves
            legacy = [k for k, r in self._records()
                      if r.get("alias") == alias and "prev" not in r]
            prev = legacy[-1] if legacy else None
        key = f"{self.dataset}/history/{now:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:12]}.json"
        old = current.get("version") if current else None
        move = Move(alias, old, new, now.isoformat(), by or default_actor(), why or "", action,
                    key, prev)
        self.store.put_bytes(key, dumps(move.record()))  # a new object: nothing rewritten
        self._history[key] = json.loads(dumps(move.record()))
        alias_key = self._alias_key(alias)
        self.store.put_bytes(alias_key, dumps(
            {"version": new, "at": move.at, "by": move.by, "why": move.why, "move": key}))
        # gc may have collected the version between the check and the alias write: it re-reads
        # the aliases after deleting a manifest and restores it, so a manifest missing NOW is
        # gone for good: put the alias back (unless another move landed since)
        if not self.store.exists(self._version_key(new, MANIFEST)):
            after = self.alias(alias)
            if after is not None and after.get("move") == key:
                if current is None:
                    self.store.delete(alias_key)
                else:
                    self.store.put_bytes(alias_key, dumps(current))
            raise RegistryError(f"cannot move {alias!r} of {self.dataset!r} to {new}: the "
                                f"version was deleted (gc) meanwhile; {alias} left at "
                                f"{old or 'no version'}")
        return move

    # ----------------------------------------------------------------------------- load
    def load(self, ref: str, cache_dir: Path) -> Path:
        """A local folder holding version `ref` (an alias or a version), every file checked
        against the manifest's sha256; a verified copy already in `cache_dir` is reused."""
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            version = self.resolve(ref)
            try:
                return self._fetch(version, Path(cache_dir))
            except VersionNotFound:  # collected after the alias moved on: follow it again
                if ref not in ALIASES or attempt == LOAD_ATTEMPTS:
                    raise
            except ObjectNotFound as e:
                if ref not in ALIASES or attempt == LOAD_ATTEMPTS:
                    raise RegistryError(f"version {version} of {self.dataset!r} is incomplete "
                                        f"in the store: {e}") from None
            time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def verify(self, version: str) -> None:
        """Check every stored file of `version` against its manifest (size and sha256): each
        is downloaded into a temporary folder (a local cache proves nothing about the store).
        RegistryError names what is wrong."""
        check_name(version, "version")
        with tempfile.TemporaryDirectory(prefix="shoprec-verify-") as tmp:
            try:
                self._fetch(version, Path(tmp))
            except ObjectNotFound as e:
                raise RegistryError(f"version {version} of {self.dataset!r} is incomplete in "
                                    f"the store: {e}") from None

    def _fetch(self, version: str, cache_dir: Path) -> Path:
        data, manifest = self._manifest(version)
        files = manifest["files"]
        for name in files:
            check_name(name, "file")
        folder = cache_dir / version
        if _verified(folder, data, files):
            return folder
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f"{TMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            for name, want in files.items():
                key = self._version_key(version, name)
                self.store.get_file(key, tmp / name)
                got = sha256_file(tmp / name)
                if got != want.get("sha256") or (tmp / name).stat().st_size != want.get("size"):
                    raise RegistryError(
                        f"{self.store.uri(key)}: sha256 {got[:12]}… does not match the "
                        f"manifest's {str(want.get('sha256'))[:12]}… (damaged or tampered): "
                        f"version {version} refused")
            (tmp / MANIFEST).write_bytes(data)
            _place(tmp, folder, data, files)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    # ------------------------------------------------------------------------------- gc
    def protected(self) -> set[str]:
        """The versions an alias points at or a rollback would return to, read now."""
        current = {a: self.alias(a) for a in ALIASES}  # first: their moves are listed below
        records = self._records()
        out: set[str] = set()
        for a, rec in current.items():
            if rec is not None:
                out.add(rec.get("version"))
                out.add(self._rollback_target(a, rec, records))
        out.discard(None)
        return out

    def gc(self, keep: int = 5, *, dry_run: bool = False) -> list[str]:
        """Delete the versions no alias points at (nor would roll back to) and not among the
        `keep` newest; also incomplete versions older than an hour. The deleted, oldest first.

        A promotion racing gc never loses its version: the aliases are read again right before
        a version's manifest is deleted and right after; a version aliased meanwhile gets its
        manifest back and keeps its files (and promote puts its alias back when it finds the
        manifest gone after its write)."""
        if keep < 0:
            raise RegistryError(f"gc --keep {keep}: expected 0 or more")
        all_files = self._version_files()
        complete = sorted(v for v, names in all_files.items() if MANIFEST in names)
        newest = set(complete[-keep:] if keep else [])
        protected = self.protected()
        doomed = [v for v in complete if v not in newest | protected]
        cutoff = _now() - INCOMPLETE_GRACE
        for v, names in all_files.items():
            made = _version_time(v)
            if MANIFEST not in names and made is not None and made < cutoff:
                doomed.append(v)
        doomed.sort()
        if dry_run:
            return doomed
        gone = [v for v in doomed if self._collect(v, all_files[v])]
        collected = set(gone)
        for key in self.store.list(f"{self.dataset}/runs/"):  # indexes of the collected
            try:
                if _json(self.store.get_bytes(key), key).get("version") in collected:
                    self.store.delete(key)
            except (ObjectNotFound, RegistryError):
                continue
        return gone

    def _collect(self, version: str, names: set[str]) -> bool:
        """Delete one version: its run's claim, then its manifest (the version stops existing),
        then its files. False when it became protected meanwhile (left whole)."""
        if MANIFEST in names:
            if version in self.protected():
                return False
            mkey = self._version_key(version, MANIFEST)
            try:
                data, manifest = self._manifest(version)
            except RegistryError:  # deleted meanwhile, or damaged: its files go all the same
                data, manifest = None, {}
            claim_key, claim = None, None
            run_id = manifest.get("run_id")
            if is_name(run_id):
                found = self._claim(run_id)
                if found is not None and found.get("version") == version:
                    claim_key, claim = self._run_key(run_id), found
                    self.store.delete(claim_key)
            self.store.delete(mkey)
            if version in self.protected():  # promoted while we deleted: give it back
                if data is not None:
                    self.store.put_bytes(mkey, data)
                if claim_key is not None:
                    self.store.put_if_absent(claim_key, dumps(claim))
                return False
        for name in sorted(names - {MANIFEST}):
            self.store.delete(f"{self._version_key(version)}/{name}")
        return True


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise RegistryError(f"{path}: cannot be read: {e.strerror or e}") from None


def _verified(folder: Path, manifest: bytes, files: dict) -> bool:
    """`folder` holds exactly this manifest and files of its sizes and sha256."""
    try:
        if (folder / MANIFEST).read_bytes() != manifest:
            return False
        for name, want in files.items():
            p = folder / name
            if p.stat().st_size != want.get("size") or sha256_file(p) != want.get("sha256"):
                return False
    except OSError:
        return False
    return True


def _place(tmp: Path, folder: Path, manifest: bytes, files: dict) -> None:
    """Rename the verified download into place; a damaged copy there is moved aside first,
    a good one (another loader won the race) is kept."""
    for _ in range(5):
        try:
            os.rename(tmp, folder)
            return
        except OSError:  # folder exists and is not empty
            if _verified(folder, manifest, files):
                return
            trash = folder.parent / f"{TMP_PREFIX}trash-{folder.name}-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(folder, trash)
            except FileNotFoundError:
                continue
            shutil.rmtree(trash, ignore_errors=True)
    raise RegistryError(f"{folder}: cannot place the downloaded version (concurrent writers?)")

