"""The model registry, the whole suite on both backends: a local directory and S3 (a moto server
process on loopback). Exports are tiny but real: a TorchScript module, an item matrix and
metadata of the format `training.export.ExportedModel` loads."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from shoprec.config import reset_settings_cache
from shoprec.names import InvalidName, check_name
from shoprec.registry import (
    ALIASES,
    MANIFEST,
    Registry,
    RegistryError,
    gc,
    history,
    load,
    promote,
    register,
    rollback,
)
from shoprec.registry.manifest import VERSION_RE, sha256_file
from shoprec.storage import LocalStore, store_from_settings
from tests.test_storage import new_s3_store, running_moto_server
from training.export import FORMAT, ExportedModel

ROOT = Path(__file__).resolve().parents[1]


class _Tiny(torch.nn.Module):
    def __init__(self, n_items: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.items = torch.nn.Parameter(torch.randn(n_items + 1, 4, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.items[x].sum(0)


def make_export(folder: Path, seed: int, dataset: str = "shop", blend: bool = False,
                **extra) -> Path:
    """A real export of `training/export.py`'s format, small enough to build in milliseconds."""
    folder.mkdir(parents=True)
    ids = [f"item-{i}" for i in range(5)]
    model = _Tiny(len(ids), seed)
    torch.jit.script(model).save(str(folder / "model.ts"))
    torch.save(model.items.detach().clone(), folder / "items.pt")
    meta = {
        "format": FORMAT, "created_at": "2026-01-01T00:00:00+00:00", "dataset": dataset,
        "code_version": "abc123", "torch_version": torch.__version__, "seed": seed,
        "training": {"protocol": "time"},
        "metrics": {"model/test": {"ndcg@10": 0.1 + seed / 100, "recall@20": 0.2, "users": 40},
                    "blend/test": {"ndcg@10": 0.3, "recall@20": 0.4, "users": 40}},
        "data_window": {"protocol": "time", "train": ["2026-01-01", "2026-01-20"],
                        "evaluated_users": {"valid": 40, "test": 40, "of": 50}},
        "feature_service": "recommender_v2", "training_feature_service": None,
        "inputs": {"max_len": 8, "n_user_features": 0, "user_features": []},
        "items": {"ids": ids, "categories": ["a"], "brands": ["b"], "price_edges": [1.0]},
        **extra,
    }
    (folder / "metadata.json").write_text(json.dumps(meta))
    if blend:
        (folder / "blend.json").write_text(json.dumps({"kind": "ranker", "weights": {}}))
        torch.save(torch.ones(len(ids) + 1), folder / "popularity.pt")
    return folder


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> list[Path]:
    base = tmp_path_factory.mktemp("exports")
    return [make_export(base / f"run{i}" / "export", seed=i, blend=i == 1) for i in range(6)]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    with running_moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "registry")
    return new_s3_store(request.getfixturevalue("s3_endpoint"))


@pytest.fixture
def reg(store) -> Registry:
    return Registry(store, "shop")


def _matches_manifest(folder: Path) -> str:
    """The folder's version, after proving every file matches its manifest."""
    manifest = json.loads((folder / MANIFEST).read_bytes())
    for name, want in manifest["files"].items():
        assert sha256_file(folder / name) == want["sha256"], name
    assert sorted(p.name for p in folder.iterdir()) == sorted([*manifest["files"], MANIFEST])
    assert folder.name == manifest["version"]
    return manifest["version"]


def test_register_is_idempotent_per_run_id(store, exports, tmp_path):
    v = register(store, exports[1], "shop", "run1", gate_report={"passed": True})
    assert VERSION_RE.match(v) and check_name(v, "version") == v
    assert register(store, exports[1], "shop", "run1") == v
    assert register(store, exports[2], "shop", "run1") == v  # the run id decides
    reg = Registry(store, "shop")
    assert reg.versions() == [v]
    m = reg.manifest(v)
    assert m["run_id"] == "run1" and m["recommender"] == "ranker"
    assert m["gate_report"] == {"passed": True} and m["feature_service"] == "recommender_v2"
    assert m["data_window"]["train"] == ["2026-01-01", "2026-01-20"]
    assert m["metrics"]["blend/test"]["ndcg@10"] == 0.3 and m["code_version"] == "abc123"
    assert set(m["files"]) == {"metadata.json", "model.ts", "items.pt", "blend.json",
                               "popularity.pt"}
    for name, f in m["files"].items():
        assert f == {"sha256": sha256_file(exports[1] / name),
                     "size": (exports[1] / name).stat().st_size}
    assert store.exists(f"shop/versions/{v}/{MANIFEST}")
    # a version loads as serving loads it: TorchScript + weights_only
    folder = load(store, "shop", v, cache_dir=tmp_path / "cache")
    model = ExportedModel(folder)
    assert torch.equal(model.items, torch.load(exports[1] / "items.pt", weights_only=True))
    assert model.blend["kind"] == "ranker" and _matches_manifest(folder) == v


def test_register_refuses_per_user_data_and_bad_exports(store, tmp_path):
    bad = make_export(tmp_path / "e1", seed=1, per_user={"u1": [1, 2]})
    with pytest.raises(RegistryError, match="per-user data.*per_user"):
        register(store, bad, "shop", "r1")
    ids = make_export(tmp_path / "e2", seed=1, users=["u1", "u2"])
    with pytest.raises(RegistryError, match="per-user data.*users"):
        register(store, ids, "shop", "r2")
    ok = make_export(tmp_path / "e3", seed=1)
    with pytest.raises(RegistryError, match=r"gate_report\.user_ids"):
        register(store, ok, "shop", "r3", gate_report={"user_ids": ["u9"]})
    with pytest.raises(RegistryError, match="dataset 'shop', not 'acme'"):
        register(store, ok, "acme", "r4")
    (ok / "model.ts").unlink()
    with pytest.raises(RegistryError, match="incomplete export.*model.ts"):
        register(store, ok, "shop", "r5")
    with pytest.raises(RegistryError, match="no such export"):
        register(store, tmp_path / "nothing", "shop", "r6")
    assert store.list() == []


def test_one_changed_byte_is_refused(store, reg, exports, tmp_path):
    v = reg.register(exports[0], "run0")
    key = f"shop/versions/{v}/items.pt"
    good = store.get_bytes(key)
    cache = tmp_path / "cache"
    folder = reg.load(v, cache)
    # a damaged local copy is not reused: the version is fetched again
    data = bytearray((folder / "items.pt").read_bytes())
    data[-1] ^= 1
    (folder / "items.pt").write_bytes(bytes(data))
    assert _matches_manifest(reg.load(v, cache)) == v
    # a damaged stored file is refused, naming it, and nothing is left in the cache
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0x40
    store.put_bytes(key, bytes(damaged))
    fresh = tmp_path / "fresh"
    with pytest.raises(RegistryError, match=r"items\.pt: sha256 .* does not match") as e:
        reg.load(v, fresh)
    assert "\n" not in str(e.value)
    assert list(fresh.iterdir()) == []


def test_promote_rollback_history(store, reg, exports, tmp_path):
    v = [reg.register(exports[i], f"run{i}") for i in range(3)]
    with pytest.raises(RegistryError, match="points at no version yet"):
        reg.rollback()
    with pytest.raises(RegistryError, match="points at no version yet"):
        reg.load("production", tmp_path / "c")
    assert promote(store, "shop", v[0], by="ann", why="first").new == v[0]
    with pytest.raises(RegistryError, match="no previous version"):
        rollback(store, "shop")
    assert reg.promote(v[0]) is None  # already there: no move, no history
    reg.promote(v[1], by="bob")
    reg.promote(v[2], by="bob", why="better")
    reg.promote(v[2], alias="candidate")
    assert reg.aliases() == {"production": v[2], "candidate": v[2]}
    assert reg.alias("production")["by"] == "bob" and reg.alias("production")["why"] == "better"
    move = reg.rollback(by="ann", why="regression")
    assert (move.old, move.new, move.action) == (v[2], v[1], "rollback")
    assert rollback(store, "shop").new == v[0]
    with pytest.raises(RegistryError, match=r"no previous version .*holds " + v[0]):
        reg.rollback()
    assert _matches_manifest(load(store, "shop", "production", cache_dir=tmp_path / "c")) == v[0]
    hist = history(store, "shop", "production")
    assert [(h["from"], h["to"], h["action"]) for h in hist] == [
        (None, v[0], "promote"), (v[0], v[1], "promote"), (v[1], v[2], "promote"),
        (v[2], v[1], "rollback"), (v[1], v[0], "rollback")]
    assert hist[0]["by"] == "ann" and hist[0]["why"] == "first" and hist[0]["alias"] == "production"
    assert len(reg.history()) == 6 and [h["alias"] for h in reg.history("candidate")] == \
        ["candidate"]
    # promote after rollbacks: rollback undoes the newest move
    reg.promote(v[2])
    assert reg.rollback().new == v[0]
    with pytest.raises(RegistryError, match="no version 'v20000101T000000-000000'"):
        reg.promote("v20000101T000000-000000")
    assert ALIASES == ("candidate", "production")


@pytest.mark.parametrize("call", [
    lambda r, v: r.promote("../x"),
    lambda r, v: r.promote(v, alias="a/b"),
    lambda r, v: r.rollback(alias="../production"),
    lambda r, v: r.load("../x", Path("/tmp/never")),
    lambda r, v: r.load("a/b", Path("/tmp/never")),
    lambda r, v: r.manifest("v1/../../x"),
    lambda r, v: r.history(alias="a/b"),
    lambda r, v: Registry(r.store, "../shop"),
])
def test_names_that_could_escape_are_refused(reg, exports, call):
    v = reg.register(exports[0], "run0")
    before = reg.store.list()
    with pytest.raises(InvalidName):
        call(reg, v)
    assert reg.store.list() == before


def test_register_refuses_an_unsafe_run_id(reg, exports):
    with pytest.raises(InvalidName, match="run name"):
        reg.register(exports[0], "../run")
    with pytest.raises(RegistryError, match="not one of candidate, production"):
        reg.promote("v20000101T000000-000000", alias="staging")
    assert reg.store.list() == []


def test_gc_keeps_aliased_and_newest(store, reg, exports, tmp_path):
    v = [reg.register(exports[i], f"run{i}") for i in range(5)]
    reg.promote(v[0])
    reg.promote(v[2])  # production v2; rollback would go to v0
    reg.promote(v[1], alias="candidate")
    stale = "v20000101T000000.000000-abcdef"  # a crashed registration: files, no manifest
    store.put_bytes(f"shop/versions/{stale}/model.ts", b"half")
    young = f"v{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.000000-abcdef"
    store.put_bytes(f"shop/versions/{young}/model.ts", b"in progress")
    assert reg.gc(keep=1, dry_run=True) == sorted([stale, v[3]])
    assert reg.versions() == v
    assert gc(store, "shop", keep=1) == sorted([stale, v[3]])
    assert reg.versions() == [v[0], v[1], v[2], v[4]]
    assert not store.list(f"shop/versions/{v[3]}/") and not store.list(f"shop/versions/{stale}")
    assert store.exists(f"shop/versions/{young}/model.ts")  # may still be being written
    assert reg.gc(keep=0) == [v[4]]
    assert set(reg.versions()) == {v[0], v[1], v[2]}
    for ref in ("production", "candidate", v[0]):
        _matches_manifest(reg.load(ref, tmp_path / "cache"))
    assert reg.rollback().new == v[0]
    # the run of a collected version registers anew
    v3 = reg.register(exports[3], "run3")
    assert v3 != v[3] and v3 in reg.versions()
    with pytest.raises(RegistryError, match="expected 0 or more"):
        reg.gc(keep=-1)


def test_readers_racing_promotions_always_get_a_whole_version(store, reg, exports, tmp_path):
    v1, v2 = reg.register(exports[0], "run0"), reg.register(exports[1], "run1")
    reg.promote(v1)
    stop, errors, seen = threading.Event(), [], []
    moves = [0]

    def reader() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            cache = tmp_path / f"cache{n // 4}"  # a fresh cache now and then: real downloads
            try:
                folder = reg.load("production", cache)
                seen.append(_matches_manifest(folder))
                ExportedModel(folder) if n % 10 == 0 else None
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
                return

    def writer() -> None:
        try:
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                reg.promote(v2, by="writer")
                reg.rollback(by="writer")
                moves[0] += 2
        except BaseException as e:  # noqa: BLE001
            errors.append(repr(e))
        finally:
            stop.set()

    threads = [threading.Thread(target=reader), threading.Thread(target=reader),
               threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert moves[0] >= 4 and len(seen) >= 4 and set(seen) <= {v1, v2}
    assert {v1, v2} <= set(seen) or moves[0] < 10  # both seen once the alias moved often
    assert reg.alias("production")["version"] == v1


def test_cli(store, exports, tmp_path, monkeypatch, request):
    """`shoprec models ...` end to end; an expected failure is one red line, exit code 2."""
    from typer.testing import CliRunner

    from shoprec.cli import app

    home = tmp_path / "home"
    env = {"SHOPREC_HOME": str(home)}
    if not isinstance(store, LocalStore):
        env |= {"SHOPREC_REGISTRY__BUCKET": store.bucket, "SHOPREC_REGISTRY__PREFIX": "registry",
                "SHOPREC_REGISTRY__ENDPOINT_URL": store.endpoint_url}
    for k, val in env.items():
        monkeypatch.setenv(k, val)
    reset_settings_cache()
    request.addfinalizer(reset_settings_cache)
    run_dir = home / "runs" / "shop" / "20260101T000000Z-time-seed1"
    shutil.copytree(exports[1], run_dir / "export")
    runner = CliRunner()

    def ok(*args: str, stdout: bool = False) -> str:
        r = runner.invoke(app, ["models", *args], terminal_width=200)
        assert r.exit_code == 0, (r.output, r.exception)
        return r.stdout if stdout else r.output

    version = ok("register", run_dir.name, stdout=True).strip()
    assert VERSION_RE.match(version)
    assert "already registered" in ok("register", str(run_dir / "export"))
    ok("promote", version, "--why", "first")
    listed = ok("list")
    assert version in listed and "production" in listed and "blend/test" in listed
    shown = json.loads(ok("show", "production", stdout=True))
    assert shown["version"] == version and shown["aliases"] == ["production"]
    assert "promote" in ok("history") and "promote" in ok("history", "--all")
    assert f"ok       {version}" in ok("verify") and version in ok("verify", "production")
    assert "deleted 0" in ok("gc", "--keep", "0")
    if isinstance(store, LocalStore):  # the real process: one line, no traceback
        r = subprocess.run([sys.executable, "-m", "shoprec.cli", "models", "rollback"],
                           env={**os.environ, **env}, cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        assert "cannot roll back 'production'" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


# --- races and crashes ------------------------------------------------------------------------

# a process of its own: the registry over the test's store, one operation, its result printed
_CHILD = r"""
import os, signal, sys, time
from pathlib import Path
from shoprec.registry import Registry
from shoprec.storage import LocalStore, S3Store

kind, where, what, arg, go = sys.argv[1:6]
if kind == "local":
    store = LocalStore(Path(where))
else:
    bucket, prefix, endpoint = where.split("|")
    store = S3Store(bucket, prefix, endpoint_url=endpoint)
if os.environ.get("KILL_AFTER_FIRST_MOVE_WRITE"):
    put = store.put_bytes

    def put_then_die(key, data):  # kill -9 right after the first of an alias move's writes
        put(key, data)
        if "/aliases/" in key or "/history/" in key:
            os.kill(os.getpid(), signal.SIGKILL)

    store.put_bytes = put_then_die
reg = Registry(store, "shop")
time.sleep(max(0.0, float(go) - time.time()))  # every child starts its work at once
if what == "register":
    export, run_id = arg.split("|")
    print(reg.register(Path(export), run_id))
elif what == "promote":
    print(reg.promote(arg, by="child"))
else:
    print(reg.rollback(by="child"))
"""


def _child_args(store) -> str:
    if isinstance(store, LocalStore):
        return ["local", str(store.directory)]
    return ["s3", f"{store.bucket}|{store.prefix}|{store.endpoint_url}"]


def _children(store, jobs: list[tuple[str, str]], env: dict | None = None,
              delay: float = 1.5) -> list[subprocess.CompletedProcess]:
    """One process per job, started together, each beginning its work at the same instant."""
    go = time.time() + delay
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, *_child_args(store), what, arg,
                               str(go)], cwd=ROOT, env={**os.environ, **(env or {})},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for what, arg in jobs]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_processes_registering_one_run_at_once_make_one_version(store, exports):
    """Three processes per run id, two run ids, all at the same instant: one version per run,
    every process told that version, no half-written version left behind."""
    jobs = [("register", f"{exports[i]}|run{i}") for i in (1, 2) for _ in range(3)]
    done = _children(store, jobs)
    assert all(r.returncode == 0 for r in done), [r.stderr[-2000:] for r in done]
    told = [r.stdout.strip() for r in done]
    reg = Registry(store, "shop")
    assert len(set(told[:3])) == 1 and len(set(told[3:])) == 1, told
    assert sorted(reg.versions()) == sorted({told[0], told[3]})
    assert set(reg._version_files()) == set(reg.versions())  # nothing without a manifest
    assert reg.run_version("run1") == told[0] and reg.manifest(told[3])["run_id"] == "run2"
    assert register(store, exports[1], "shop", "run1") == told[0]


def test_a_crashed_registration_is_completed_by_the_next(store, reg, exports, monkeypatch,
                                                         tmp_path):
    """Killed after its claim, before the manifest: the run's next registration with the same
    files finishes that version (no second one); other files wait, then say why; a claim older
    than CLAIM_TAKEOVER is a crashed registration's, replaced."""
    real = reg.store.put_file
    calls = []

    def crash(key, path):
        calls.append(key)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        real(key, path)

    monkeypatch.setattr(reg.store, "put_file", crash)
    with pytest.raises(KeyboardInterrupt):
        reg.register(exports[0], "run0")
    monkeypatch.setattr(reg.store, "put_file", real)
    assert reg.versions() == [] and reg.run_version("run0") is None
    claimed = json.loads(store.get_bytes("shop/runs/run0.json"))["version"]
    monkeypatch.setattr("shoprec.registry.core.CLAIM_WAIT_S", 0.3)
    with pytest.raises(RegistryError, match="being registered as .* from other files"):
        reg.register(exports[1], "run0")
    assert reg.register(exports[0], "run0") == claimed and reg.versions() == [claimed]
    assert _matches_manifest(reg.load(claimed, tmp_path / "cache")) == claimed
    # crashed again, long ago: taken over, with other files this time
    # an index of a version collected since (written before claims held manifests)
    store.put_bytes("shop/runs/run9.json", b'{"version": "v20000101T000000.000000-abcdef"}')
    assert reg.run_version("run9") is None
    monkeypatch.setattr(reg.store, "put_file", crash)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        reg.register(exports[3], "run3")
    monkeypatch.setattr(reg.store, "put_file", real)
    monkeypatch.setattr("shoprec.registry.core.CLAIM_TAKEOVER", dt.timedelta(0))
    v3 = reg.register(exports[4], "run3")
    assert reg.manifest(v3)["files"]["model.ts"]["sha256"] == sha256_file(exports[4] / "model.ts")
    assert reg.register(exports[2], "run9") in reg.versions()
    assert sorted(reg.versions()) == sorted([claimed, v3, reg.run_version("run9")])


class _Hooked:
    """The store, calling `hook(op, key)` before each put_bytes / delete."""

    def __init__(self, inner, hook):
        self.inner, self.hook = inner, hook

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.hook("put", key)
        self.inner.put_bytes(key, data)

    def delete(self, key: str) -> None:
        self.hook("delete", key)
        self.inner.delete(key)


def _agrees(reg: Registry, alias: str = "production") -> None:
    """The alias points at a whole version and its history ends with the move that put it
    there."""
    current = reg.alias(alias)
    moves = reg.history(alias)
    if current is None:
        assert moves == []
        return
    assert moves and moves[-1]["to"] == current["version"], (moves[-1:], current)
    m = reg.manifest(current["version"])
    assert sorted(reg.store.list(f"shop/versions/{current['version']}/")) == sorted(
        f"shop/versions/{current['version']}/{n}" for n in [*m["files"], MANIFEST])


def test_a_promotion_landing_while_gc_deletes_keeps_its_version(store, reg, exports, tmp_path):
    """gc has judged v0 collectable; a promotion of v0 lands just before gc deletes v0's
    manifest: gc sees the alias again, gives the manifest back and keeps every file."""
    v = [reg.register(exports[i], f"run{i}") for i in range(3)]
    reg.promote(v[2])
    other = Registry(store, "shop")
    landed = []

    def hook(op: str, key: str) -> None:
        if op == "delete" and key == f"shop/versions/{v[0]}/{MANIFEST}" and not landed:
            landed.append(other.promote(v[0], by="racer"))

    gc_reg = Registry(_Hooked(store, hook), "shop")
    assert gc_reg.gc(keep=0) == [v[1]]
    assert landed and reg.aliases()["production"] == v[0]
    _agrees(reg)
    assert _matches_manifest(reg.load("production", tmp_path / "c")) == v[0]
    assert reg.run_version("run0") == v[0]  # its run's index is back too
    assert reg.rollback().new == v[2]


def test_a_version_collected_before_the_alias_write_is_not_promoted(store, reg, exports):
    """promote checked v0's manifest; gc collects v0 before the alias is written: promote finds
    the manifest gone after its write, puts the alias back and says so in one line."""
    v = [reg.register(exports[i], f"run{i}") for i in range(3)]
    reg.promote(v[2])
    collected = []

    def hook(op: str, key: str) -> None:  # the first write of the move
        if op == "put" and ("/aliases/" in key or "/history/" in key) and not collected:
            collected.append(Registry(store, "shop").gc(keep=0))

    racer = Registry(_Hooked(store, hook), "shop")
    with pytest.raises(RegistryError, match=r"deleted \(gc\) meanwhile.*left at " + v[2]) as e:
        racer.promote(v[0])
    assert "\n" not in str(e.value)
    assert collected == [[v[0], v[1]]] and reg.versions() == [v[2]]
    assert reg.aliases() == {"production": v[2]}
    _agrees(reg)
    # the first move of an alias is undone the same way: no alias at all
    w = [reg.register(exports[i], f"again{i}") for i in (3, 4)]
    collected.clear()
    with pytest.raises(RegistryError, match="left at no version"):
        Registry(_Hooked(store, hook), "shop").promote(w[0], alias="candidate")
    assert reg.alias("candidate") is None and reg.history("candidate") == []


def test_gc_racing_promotions_never_leaves_an_alias_on_a_missing_version(store, reg, exports,
                                                                        tmp_path):
    """gc --keep 0 in a loop while another thread registers and promotes (old versions too) and
    rolls back: every alias ends on a whole version, with a history that agrees."""
    import random

    v = [reg.register(exports[i], f"seed{i}") for i in range(3)]
    reg.promote(v[0])
    stop, errors, refused = threading.Event(), [], [0]

    def mover() -> None:
        rng = random.Random(7)
        mine = Registry(store, "shop")
        try:
            for i in range(40 if isinstance(store, LocalStore) else 15):
                versions = mine.versions() or [mine.register(exports[i % 6], f"m{i}")]
                try:
                    if rng.random() < 0.3:
                        mine.register(exports[i % 6], f"m{i}")
                    if rng.random() < 0.2:
                        mine.rollback()
                    else:
                        mine.promote(rng.choice(versions), alias=rng.choice(ALIASES))
                except RegistryError as e:  # collected before the move: said, not done
                    said = ("deleted (gc) meanwhile", "no version", "no previous version",
                            "no longer exists", "incomplete in the store")
                    assert any(w in str(e) for w in said), e
                    refused[0] += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
        finally:
            stop.set()

    def collector() -> None:
        mine = Registry(store, "shop")
        try:
            while not stop.is_set():
                mine.gc(keep=0)
        except BaseException as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=mover), threading.Thread(target=collector)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    fresh = Registry(store, "shop")
    for alias in ALIASES:
        _agrees(fresh, alias)
    for version in fresh.versions():  # no version lost files under its manifest
        names = fresh.manifest(version)["files"]
        assert all(store.exists(f"shop/versions/{version}/{n}") for n in names), version
    assert _matches_manifest(fresh.load("production", tmp_path / "c")) == \
        fresh.aliases()["production"]


@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_a_move_killed_between_its_two_writes_leaves_history_and_alias_agreeing(
        store, reg, exports, action):
    """kill -9 right after the first of a move's two writes (history, alias): the alias and its
    history still agree, the interrupted move is not counted (rollback still undoes the last
    move that took effect), and the next moves work."""
    v = [reg.register(exports[i], f"run{i}") for i in range(3)]
    reg.promote(v[0])
    reg.promote(v[1])
    arg = v[2] if action == "promote" else "-"
    [killed] = _children(store, [(action, arg)], env={"KILL_AFTER_FIRST_MOVE_WRITE": "1"},
                         delay=0)
    assert killed.returncode == -9, killed.stderr[-2000:]
    fresh = Registry(store, "shop")
    _agrees(fresh)
    assert fresh.aliases()["production"] == v[1]
    assert [h["to"] for h in fresh.history("production")] == [v[0], v[1]]
    every = fresh.history("production", unapplied=True)
    assert [h["applied"] for h in every] == [True, True, False]
    assert fresh.rollback_target("production") == v[0]
    assert fresh.promote(v[2]).old == v[1]
    assert fresh.rollback().new == v[1] and fresh.rollback().new == v[0]
    _agrees(fresh)


def test_two_promotions_racing_on_one_alias_keep_one_history(store, reg, exports):
    """Both read production = v0; the one whose alias write lands last is production, and the
    other's move is not in the history (so rollback returns to v0, not to the loser)."""
    v = [reg.register(exports[i], f"run{i}") for i in range(3)]
    reg.promote(v[0])
    raced = []

    def hook(op: str, key: str) -> None:  # between the history write and the alias write
        if op == "put" and "/aliases/" in key and not raced:
            raced.append(Registry(store, "shop").promote(v[2], by="fast"))

    Registry(_Hooked(store, hook), "shop").promote(v[1], by="slow")
    assert reg.aliases()["production"] == v[1]
    assert [(h["from"], h["to"]) for h in reg.history("production")] == [(None, v[0]),
                                                                         (v[0], v[1])]
    assert reg.rollback().new == v[0]
    _agrees(reg)


def test_history_written_before_moves_were_chained_still_counts(store, reg, exports):
    """An alias and history objects of the first layout (no `move`, no `prev`), as registries
    made before this change hold them: history and rollback read them in time order, and new
    moves chain onto them."""
    v = [reg.register(exports[i], f"run{i}") for i in range(3)]
    for i, (old, new) in enumerate([(None, v[0]), (v[0], v[1])]):
        store.put_bytes(f"shop/history/20260101T00000{i}000000Z-abcdef{i:06d}.json", json.dumps(
            {"alias": "production", "from": old, "to": new, "at": "x", "by": "old",
             "why": "", "action": "promote"}).encode())
    store.put_bytes("shop/aliases/production.json", json.dumps(
        {"version": v[1], "at": "x", "by": "old", "why": ""}).encode())
    assert [h["to"] for h in reg.history("production")] == [v[0], v[1]]
    assert reg.rollback_target("production") == v[0]
    reg.promote(v[2])
    assert [h["to"] for h in reg.history("production")] == [v[0], v[1], v[2]]
    assert reg.rollback().new == v[1] and reg.rollback().new == v[0]
    _agrees(reg)


# --- damaged versions and aliases, and the CLI's failures -------------------------------------


def _damage(store, key: str) -> None:
    data = bytearray(store.get_bytes(key))
    data[len(data) // 2] ^= 0x40
    store.put_bytes(key, bytes(data))


def test_promote_and_rollback_refuse_a_damaged_or_incomplete_version(store, reg, exports,
                                                                    tmp_path):
    """A version with one changed byte (or a file missing) is never aliased: promote and
    rollback check every stored file first, even when a verified copy sits in a local cache."""
    v = [reg.register(exports[i], f"run{i}") for i in range(3)]
    reg.promote(v[0])
    reg.promote(v[1])
    reg.load(v[0], tmp_path / "cache")  # an intact local copy proves nothing about the store
    _damage(store, f"shop/versions/{v[0]}/items.pt")
    with pytest.raises(RegistryError, match=r"items\.pt: sha256 .* does not match") as e:
        reg.verify(v[0])
    assert "\n" not in str(e.value)
    with pytest.raises(RegistryError, match=rf"cannot roll back 'production' .* to {v[0]}: .*"
                                            r"items\.pt: sha256"):
        reg.rollback()
    with pytest.raises(RegistryError, match=r"items\.pt: sha256"):
        reg.promote(v[0], alias="candidate")
    store.delete(f"shop/versions/{v[2]}/model.ts")
    with pytest.raises(RegistryError, match=r"incomplete in the store: no object .*model\.ts"):
        reg.promote(v[2])
    assert reg.aliases() == {"production": v[1]} and len(reg.history()) == 2
    reg.verify(v[1])


def test_a_damaged_alias_is_said_and_written_anew_by_promote(store, reg, exports):
    v = [reg.register(exports[i], f"run{i}") for i in range(2)]
    reg.promote(v[0])
    reg.promote(v[1])
    store.put_bytes("shop/aliases/production.json", b'{"version": ')
    for call in (reg.aliases, reg.rollback, reg.history, lambda: reg.gc(keep=0)):
        with pytest.raises(RegistryError, match=r"production\.json: not valid JSON \(damaged\): "
                                                r"`shoprec models promote VERSION --alias "
                                                r"production` writes it anew"):
            call()
    move = reg.promote(v[1])  # the same version: written anew all the same
    assert move.old is None and "written anew" in move.note
    assert reg.aliases() == {"production": v[1]}
    assert [h["to"] for h in reg.history("production")] == [v[0], v[1], v[1]]
    assert reg.rollback().new == v[0]  # the history before the damage still counts
    _agrees(reg)


_CLI = r"""
import contextlib, io, json, sys
from shoprec.cli import main

out = []
for argv in json.loads(sys.argv[1]):
    sys.argv = ["shoprec", *argv]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main()
        except SystemExit as e:
            code = e.code
    out.append([argv, code, err.getvalue()])
print(json.dumps(out))
"""


def test_cli_failures_are_one_line_and_exit_non_zero(exports, tmp_path):
    """Hostile input to every `shoprec models` command, in a real process: each failure is one
    line on stderr, no traceback, a non-zero exit code; nothing is changed by them."""
    from shoprec.config import Settings

    home = tmp_path / "home"
    store = store_from_settings(Settings(home=home))  # the store the CLI will open
    reg = Registry(store, "shop")
    v = [reg.register(exports[i], f"run{i}") for i in range(2)]
    reg.promote(v[0])
    reg.promote(v[1])
    _damage(store, f"shop/versions/{v[0]}/model.ts")
    before = {k: store.get_bytes(k) for k in store.list()}
    bad = [["show", "../production"], ["show", ""], ["show", "v" * 300], ["show", "vé€ñ"],
           ["show", "v20000101T000000.000000-abcdef"], ["promote", "../x"],
           ["promote", "v20000101T000000.000000-abcdef"], ["promote", v[0]],
           ["promote", v[1], "--alias", "staging"], ["promote", v[1], "--alias", "../a"],
           ["rollback"], ["rollback", "--dataset", "other"], ["history", "--alias", "x/y"],
           ["gc", "--keep", "-1"], ["list", "--dataset", "../x"], ["verify"],
           ["verify", "nope"], ["register", "no-such-run"], ["register", str(tmp_path)],
           ["gate", "no-such-run"]]
    r = subprocess.run([sys.executable, "-c", _CLI, json.dumps([["models", *a] for a in bad])],
                       env={**os.environ, "SHOPREC_HOME": str(home)}, cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for argv, code, err in json.loads(r.stdout.strip().splitlines()[-1]):
        lines = err.strip().splitlines()
        assert code not in (0, None), (argv, code, err)
        assert len(lines) == 1 and "Traceback" not in err, (argv, err)
        if argv[1:] != ["verify"]:  # that one lists every version, then sums up
            assert lines[0].startswith("error: "), (argv, err)
    assert {k: store.get_bytes(k) for k in store.list()} == before
