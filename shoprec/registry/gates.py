"""Gates a trained run passes before it may become `production` (thresholds: GateSettings,
SHOPREC_GATES__<FIELD>). Every check runs, none stops the others, and each says in one line why
it failed:

- beats every baseline: the promoted recommender ("blend" in metrics.json, which may be the model
  alone) scores more than each baseline present (popularity, itemknn, personal_history, ptopfreq,
  tifuknn, ease) times (1 + margin) on the gate metric, on the held-out test split;
- no regression: production (registry `load`) and the candidate are both re-scored by
  `training.evaluate.evaluate_export` on the current data and the candidate's protocol; refused
  when candidate < production x (1 - max_regression). No production yet: skipped, and it says so;
- latency: p99 of single-user scoring of the export on CPU (the TorchScript model, plus the
  ranker when the blend is one) under a budget;
- sanity: every metric finite, scores that vary across users, catalogue coverage@20 above a
  floor, and the feature service the export names present in the dataset's Feast registry.

The verdict is written as `gate.json` and `gate.html` into the export folder, so registering the
export keeps both in the version, and `register(..., gate_report=...)` records it in the manifest.

One gate run reads the dataset's interactions once (the re-scorings and the latency probe share
them), retrieves each (feature service, data) pair's point-in-time user features from Feast once,
and evaluates each export once: production is not evaluated again when it is the candidate's very
export.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoprec.atomic import write_text
from shoprec.config import GateSettings, Settings

if TYPE_CHECKING:
    from shoprec.storage import Store
    from training.data import Interactions
    from training.export import ExportedModel

FORMAT = "shoprec-gate/1"
GATE_JSON, GATE_HTML = "gate.json", "gate.html"
BASELINES = ("popularity", "itemknn", "personal_history", "ptopfreq", "tifuknn", "ease")
SPLIT = "test"
COVERAGE = "coverage@20"
SHOWN = ("ndcg@10", "ndcg@20", "recall@10", "recall@20", "mrr@10", "hit@10", COVERAGE)
# what fixes the evaluation: production is re-scored with the candidate's values of these
EVAL_FIELDS = ("protocol", "test_days", "valid_days", "exclude", "ks")
# what evaluation reads of an export: two exports alike in these score alike
SCORED_FILES = ("metadata.json", "model.ts", "items.pt", "blend.json", "popularity.pt")
PROBE_USERS = 32


@dataclass
class Check:
    """One gate: what was measured, against what, and why it passed or failed (one line)."""

    name: str
    passed: bool
    value: float | str | None
    threshold: float | str | None
    reason: str
    skipped: bool = False

    def to_json(self) -> dict:
        return {k: (_num(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class Production:
    """Production and the candidate re-scored by one call path on the same data and protocol."""

    version: str | None
    candidate: dict[str, dict[str, float]] = field(default_factory=dict)  # evaluate_export
    production: dict[str, dict[str, float]] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Probe:
    """Single-user scoring of an export on CPU: timings and how the users' scores differ."""

    p50_ms: float
    p99_ms: float
    calls: int
    users: int  # probe users (a count)
    distinct_top10: int  # distinct top-10 lists among them
    spread: float  # largest std of an item's score across them
    finite: bool


@dataclass
class GateReport:
    dataset: str
    run: str
    protocol: str
    metric: str
    candidate: str  # the metrics.json entry judged: "blend" or "model"
    recommender: str  # what serving runs: "ranker" or "model"
    checks: list[Check]
    production: str | None = None
    table: dict[str, dict[str, float]] = field(default_factory=dict)  # row -> metric -> value
    settings: dict = field(default_factory=dict)
    at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [c.reason for c in self.checks if not c.passed]

    def summary(self) -> str:
        n = len(self.checks)
        if self.passed:
            skipped = [c.name for c in self.checks if c.skipped]
            extra = f" ({', '.join(skipped)} skipped)" if skipped else ""
            return f"gate passed: {n} checks{extra} for {self.run} ({self.dataset})"
        return (f"gate refused {self.run} ({self.dataset}): {len(self.reasons)} of {n} checks "
                f"failed: " + "; ".join(self.reasons))

    def to_json(self) -> dict:
        return {"format": FORMAT, "passed": self.passed, "dataset": self.dataset,
                "run": self.run, "protocol": self.protocol, "metric": self.metric,
                "split": SPLIT, "candidate": self.candidate, "recommender": self.recommender,
                "production": self.production, "reasons": self.reasons,
                "checks": [c.to_json() for c in self.checks],
                "table": {row: {k: _num(v) for k, v in m.items()} for row, m in self.table.items()},
                "settings": self.settings, "at": self.at}

    def write(self, export_dir: Path) -> tuple[Path, Path]:
        """gate.json and gate.html into the export folder (each written whole, then renamed)."""
        from shoprec.registry.gate_html import render

        export_dir = Path(export_dir)
        data = self.to_json()
        j = write_text(export_dir / GATE_JSON, json.dumps(data, indent=1, allow_nan=False) + "\n")
        h = write_text(export_dir / GATE_HTML, render(data))
        return j, h


def _num(v: Any) -> Any:
    """JSON has no NaN: a non-finite float is written as its name ("nan", "inf")."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _pct(x: float) -> str:
    return f"{x * 100:g}%"


def _fmt(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, int | float) and not isinstance(v, bool) else str(v)


def candidate_name(metrics: dict) -> str:
    """The promoted recommender's entry: "blend" (the ranker, or the model alone when the ranker
    did not beat it) when the run fitted one, else "model"."""
    return "blend" if f"blend/{SPLIT}" in metrics else "model"


def _value(metrics: dict, name: str, metric: str) -> float | None:
    m = metrics.get(f"{name}/{SPLIT}")
    v = m.get(metric) if isinstance(m, dict) else None
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


# ------------------------------------------------------------------------------ the checks
def baseline_checks(metrics: dict, metric: str, margin: float,
                    candidate: str | None = None) -> list[Check]:
    """One check per baseline present: candidate > baseline x (1 + margin) on the test split."""
    cand = candidate or candidate_name(metrics)
    cv = _value(metrics, cand, metric)
    present = [b for b in BASELINES if f"{b}/{SPLIT}" in metrics]
    if cv is None:
        return [Check("beats_baselines", False, None, None,
                      f"{cand} has no {metric} on the {SPLIT} split in metrics.json")]
    if not present:
        return [Check("beats_baselines", False, cv, None,
                      f"no baseline in metrics.json: the run was trained without baselines, so "
                      f"nothing shows {cand} beats them")]
    out = []
    for b in present:
        bv = _value(metrics, b, metric)
        if bv is None:
            out.append(Check(f"beats_{b}", False, cv, None,
                             f"{b} has no {metric} on the {SPLIT} split in metrics.json"))
            continue
        need = bv * (1 + margin)
        ok = _finite(cv) and _finite(bv) and cv > need
        verb = "beats" if ok else "does not beat"
        out.append(Check(f"beats_{b}", ok, cv, need,
                         f"{cand} {metric} {_fmt(cv)} {verb} {b} {_fmt(bv)} by {_pct(margin)} "
                         f"({SPLIT})"))
    return out


def regression_check(prod: Production | None, metric: str, max_regression: float) -> Check:
    """Candidate >= production x (1 - max_regression), both re-scored on the same data."""
    if prod is None or prod.version is None:
        return Check("no_regression", True, None, None,
                     "skipped: no production version yet, nothing to regress against",
                     skipped=True)
    if prod.error:
        return Check("no_regression", False, None, None,
                     f"production {prod.version} could not be re-scored: {prod.error}")
    cname, pname = candidate_name(prod.candidate), candidate_name(prod.production)
    cv, pv = _value(prod.candidate, cname, metric), _value(prod.production, pname, metric)
    if cv is None or pv is None:
        return Check("no_regression", False, cv, pv,
                     f"re-scoring gave no {metric} for the "
                     f"{'candidate' if cv is None else 'production'} ({SPLIT})")
    need = pv * (1 - max_regression)
    ok = _finite(cv) and _finite(pv) and cv >= need
    verb = "is not below" if ok else "is below"
    return Check("no_regression", ok, cv, need,
                 f"candidate {metric} {_fmt(cv)} {verb} production {prod.version} {_fmt(pv)} x "
                 f"(1 - {_pct(max_regression)}) (both re-scored on current data, {SPLIT})")


def latency_check(p99_ms: float | None, budget_ms: float, calls: int = 0,
                  what: str = "model", p50_ms: float | None = None) -> Check:
    if p99_ms is None or not _finite(p99_ms):
        return Check("latency_p99", False, None, budget_ms,
                     "single-user scoring could not be timed")
    ok = p99_ms <= budget_ms
    verb = "within" if ok else "over"
    median = f", p50 {p50_ms:.2f} ms" if p50_ms is not None else ""
    return Check("latency_p99", ok, p99_ms, budget_ms,
                 f"single-user p99 {p99_ms:.2f} ms ({what}, {calls} calls on CPU{median}) "
                 f"{verb} the budget of {budget_ms:g} ms")


def finite_check(*metric_sets: dict) -> Check:
    """Every number of every metrics dict finite (a NaN poisons every comparison)."""
    bad = []
    for metrics in metric_sets:
        for name, m in (metrics or {}).items():
            for k, v in (m.items() if isinstance(m, dict) else ()):
                if isinstance(v, int | float) and not isinstance(v, bool) and not math.isfinite(v):
                    bad.append(f"{name}.{k}={v}")
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        return Check("metrics_finite", False, len(bad), 0,
                     f"non-finite metrics: {', '.join(bad[:3])}{more}")
    return Check("metrics_finite", True, 0, 0, "every metric is finite")


def coverage_check(metrics: dict, floor: float, candidate: str | None = None) -> Check:
    cand = candidate or candidate_name(metrics)
    v = _value(metrics, cand, COVERAGE)
    if v is None:
        return Check("coverage", False, None, floor, f"{cand} has no {COVERAGE} ({SPLIT})")
    ok = _finite(v) and v >= floor
    verb = "at or above" if ok else "below"
    return Check("coverage", ok, v, floor,
                 f"{cand} {COVERAGE} {_fmt(v)} {verb} the floor {floor:g} ({SPLIT})")


def variety_check(probe: Probe | None) -> Check:
    """Scores must differ across users: one list for everybody is a collapsed model."""
    if probe is None:
        return Check("scores_vary", False, None, None, "no users to probe the scores with")
    if not probe.finite:
        return Check("scores_vary", False, None, None,
                     f"scores of {probe.users} probe users hold NaN or inf")
    ok = probe.users < 2 or (probe.distinct_top10 > 1 and probe.spread > 1e-9)
    if ok:
        why = (f"{probe.distinct_top10} distinct top-10 lists among {probe.users} probe users "
               f"(largest score std {probe.spread:.3g})")
    else:
        why = (f"scores do not vary across users: {probe.distinct_top10} distinct top-10 "
               f"list(s) among {probe.users} probe users (largest score std {probe.spread:.3g})")
    return Check("scores_vary", ok, probe.distinct_top10, 2 if probe.users >= 2 else 1, why)


def feature_service_check(name: str | None, found: bool | None, where: str,
                          error: str | None = None) -> Check:
    if not name:
        return Check("feature_service", True, None, None,
                     "skipped: the export names no feature service (trained without user "
                     "features)", skipped=True)
    if error:
        return Check("feature_service", False, name, None,
                     f"feature service {name} cannot be checked: {error}")
    if found:
        return Check("feature_service", True, name, None,
                     f"feature service {name} is in the Feast registry {where}")
    return Check("feature_service", False, name, None,
                 f"feature service {name} is not in the Feast registry {where}")


def judge_metrics(metrics: dict, protocol: str | None, gates: GateSettings,
                  production: Production | None = None) -> list[Check]:
    """The checks that read only metrics (what the unit tests drive with synthetic dicts)."""
    metric = gates.metric_for(protocol)
    cand = candidate_name(metrics)
    rescored = (production.candidate, production.production) if production else ()
    return [*baseline_checks(metrics, metric, gates.margin, cand),
            regression_check(production, metric, gates.max_regression),
            finite_check(metrics, *rescored),
            coverage_check(metrics, gates.min_coverage, cand)]


# ------------------------------------------------------------------------- measuring
def gate_interactions(settings: Settings, meta: dict, dataset: str) -> Interactions:
    """The interactions an export of `meta` is evaluated and probed on: the dataset's, with the
    run's session gap for the session protocol (as `evaluate_export` and `probe` load them)."""
    from training.data import load_interactions

    window = meta.get("data_window")
    gap = window.get("session_gap_minutes") if isinstance(window, dict) else None
    if (meta.get("training") or {}).get("protocol") == "session" and isinstance(gap, int) \
            and gap >= 1:
        settings = settings.model_copy(update={"session_gap_minutes": gap})
    return load_interactions(settings, dataset)


_features_lock = threading.Lock()
_features_users = [0]
_features_memo: dict[tuple, tuple] = {}


@contextlib.contextmanager
def one_feature_retrieval() -> Iterator[None]:
    """While inside, `training.features.user_day_features` retrieves each (settings, data,
    feature service) once: the candidate and production, re-scored on the same interactions
    through the same training service, share one Feast point-in-time retrieval. (evaluate_export
    takes no precomputed features, so the gate memoizes the function it calls; the original is
    back when the last gate run in the process leaves.)"""
    import training.features as tf

    with _features_lock:
        if _features_users[0] == 0:
            original = tf.user_day_features

            def memoized(settings: Settings, x: Interactions, *args: Any, **kwargs: Any):
                key = (id(x), settings.model_dump_json(), args, tuple(sorted(kwargs.items())))
                with _features_lock:
                    hit = _features_memo.get(key)
                if hit is not None and hit[0] is x:
                    return hit[1]
                out = original(settings, x, *args, **kwargs)
                with _features_lock:
                    _features_memo[key] = (x, out)  # x kept alive: its id is not reused
                return out

            memoized.original = original  # type: ignore[attr-defined]
            tf.user_day_features = memoized
        _features_users[0] += 1
    try:
        yield
    finally:
        with _features_lock:
            _features_users[0] -= 1
            if _features_users[0] == 0:
                tf.user_day_features = tf.user_day_features.original
                _features_memo.clear()


def _same_scoring(a: Path, b: Path) -> bool:
    """Two export folders whose evaluated files are byte for byte the same."""
    from shoprec.registry.manifest import sha256_file

    for name in SCORED_FILES:
        fa, fb = a / name, b / name
        if fa.is_file() != fb.is_file():
            return False
        if fa.is_file() and (fa.stat().st_size != fb.stat().st_size
                             or sha256_file(fa) != sha256_file(fb)):
            return False
    return True


def _evaluated_like(folder: Path, cand_meta: dict, tmp: Path) -> Path:
    """`folder` (production's export) as the candidate's protocol evaluates it: the same export
    with the candidate's evaluation fields in its metadata (a copy; the registry's is never
    touched). Unchanged when they already agree."""
    meta = json.loads((folder / "metadata.json").read_bytes())
    want = {k: cand_meta["training"][k] for k in EVAL_FIELDS if k in cand_meta["training"]}
    cw, pw = cand_meta.get("data_window") or {}, meta.get("data_window") or {}
    gap = cw.get("session_gap_minutes") if isinstance(cw, dict) else None
    same = all(meta["training"].get(k) == v for k, v in want.items()) and (
        gap is None or (isinstance(pw, dict) and pw.get("session_gap_minutes") == gap))
    if same:
        return folder
    out = tmp / "production"
    out.mkdir()
    for p in folder.iterdir():
        if p.is_file() and p.name not in ("metadata.json", "manifest.json"):
            shutil.copy2(p, out / p.name)
    meta["training"] = {**meta["training"], **want}
    if gap is not None:
        meta["data_window"] = {**(pw if isinstance(pw, dict) else {}),
                               "session_gap_minutes": gap}
    (out / "metadata.json").write_text(json.dumps(meta))
    return out


def rescore_against_production(settings: Settings, export: Path, dataset: str,
                               store: Store, x: Interactions | None = None) -> Production:
    """Production and the candidate re-scored by `evaluate_export` (model and blend; the
    baselines are judged on the run's own metrics) on the current data, with the candidate's
    protocol, each once (`x`: the interactions, loaded by the caller; production evaluated only
    when it is another export than the candidate). No production alias: Production(None)."""
    from shoprec.registry import Registry, load
    from shoprec.storage import StorageError
    from training.evaluate import evaluate_export

    rec = Registry(store, dataset).alias("production")
    if rec is None:
        return Production(None)
    version = str(rec.get("version"))
    cand_meta = json.loads((export / "metadata.json").read_bytes())
    try:
        folder = load(store, dataset, "production", settings=settings)
        with one_feature_retrieval():
            cand, _ = evaluate_export(settings, export, dataset, x=x, baselines=False)
            if _same_scoring(folder, export):  # production is this very export
                prod = cand
            else:
                # the same interactions, unless production's own session gap would apply (a
                # session-protocol candidate that records none)
                window = cand_meta.get("data_window")
                own_gap = (cand_meta["training"].get("protocol") == "session"
                           and (window.get("session_gap_minutes") if isinstance(window, dict)
                                else None) is None)
                with tempfile.TemporaryDirectory(prefix="shoprec-gate-") as tmp:
                    prod, _ = evaluate_export(
                        settings, _evaluated_like(folder, cand_meta, Path(tmp)), dataset,
                        x=None if own_gap else x, baselines=False)
    except StorageError:
        raise  # the store is unreachable: the task fails, it is no verdict on the model
    except Exception as e:  # RegistryError (damaged, collected), TrainingDataError, torch's
        why = str(e).splitlines()[0] if str(e) else ""
        return Production(version, error=f"{type(e).__name__}: {why}")
    return Production(version, cand, prod)


def probe(settings: Settings, exp: ExportedModel, dataset: str, calls: int,
          users: int = PROBE_USERS, seed: int = 0, x: Interactions | None = None) -> Probe:
    """Score real users of the dataset one at a time, as serving does: the export's TorchScript
    model (+ its ranker when the blend is one) on CPU with one torch thread, `calls`
    single-user calls, timed.

    Inputs are each probe user's latest `max_len` interactions (items the export does not know
    are masked, as in evaluation). Two inputs come from Feast at serving and are taken as given
    here, outside the timing: the user features (zeros: Feast's online lookup is ~0.65 ms p99,
    STACK-NOTES) and the ranker's repeat statistics (computed from the warehouse beforehand).
    `x`: the interactions (`gate_interactions`), when the caller has them already."""
    import numpy as np
    import torch

    from training.splits import EvalSet
    from training.tensors import window_times, windows

    meta = exp.meta
    x = x if x is not None else gate_interactions(settings, meta, dataset)
    b = x.user_bounds()
    rng = np.random.default_rng(seed)
    who = np.sort(rng.choice(x.n_users, size=min(users, x.n_users), replace=False))
    to_export = torch.tensor([0] + [exp.index.get(i, 0) for i in x.catalogue.item_ids[1:]],
                             dtype=torch.long)
    w = windows(x, b[who], b[who + 1], int(meta["inputs"]["max_len"]))
    items = to_export[w.items]
    keep = items != 0
    etypes, gaps = w.etypes * keep, w.gaps * keep
    times = window_times(x.ts, w.rows)
    feats = torch.zeros(len(who), int(meta["inputs"]["n_user_features"]))
    ranker, pop, stats = None, None, []
    if exp.blend is not None and exp.blend.get("kind") == "ranker":
        from training.ranker import Ranker
        from training.repeat import MAX_ITEMS, RepeatStats, repeat_stats

        ranker = Ranker.from_tables(exp.blend["weights"]).eval()
        pop = exp.popularity.float().unsqueeze(0)
        n = len(who)
        es = EvalSet("probe", who, b[who + 1], np.zeros(n + 1, np.int64), np.zeros(0, np.int64),
                     np.zeros(n + 1, np.int64), np.zeros(0, np.int64), x.ts[b[who + 1] - 1])
        st = repeat_stats(x, b, es, np.arange(n),
                          int(exp.blend.get("repeat_max_items", MAX_ITEMS)))  # as the store keeps
        mapped = to_export.numpy()[st.item]
        for j in range(n):
            sel = (st.row == j) & (mapped != 0)
            stats.append(RepeatStats(np.zeros(int(sel.sum()), np.int64), mapped[sel],
                                     st.sessions[sel], st.purchase_sessions[sel],
                                     st.first_us[sel], st.last_us[sel],
                                     st.total_sessions[j:j + 1], st.cutoff_us[j:j + 1]))

    def score_one(j: int) -> torch.Tensor:
        s = exp.model.scores(items[j:j + 1], etypes[j:j + 1], gaps[j:j + 1], feats[j:j + 1],
                             times[j:j + 1])
        if ranker is not None:
            from training.ranker import features

            s = ranker(features(s.float(), pop, stats[j]))
        return s

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one request on one thread, as a serving worker scores it
    try:
        with torch.inference_mode():
            rows = [score_one(j) for j in range(len(who))]  # also the warm-up
            took = []
            for i in range(calls):
                t0 = time.perf_counter()
                score_one(i % len(who))
                took.append((time.perf_counter() - t0) * 1000)
    finally:
        torch.set_num_threads(threads)
    s = torch.cat(rows).float()[:, 1:]
    finite = bool(torch.isfinite(s).all())
    top = {tuple(r) for r in s.topk(min(10, s.shape[1]), dim=1).indices.tolist()}
    spread = float(torch.nan_to_num(s, posinf=0.0, neginf=0.0).std(0).max()) if len(who) > 1 \
        else 0.0
    return Probe(float(np.percentile(took, 50)), float(np.percentile(took, 99)), calls,
                 len(who), len(top), spread, finite)


def feast_check(settings: Settings, dataset: str, name: str | None) -> Check:
    """The feature service the export names exists in the dataset's Feast registry."""
    registry = settings.feast_registry(dataset)
    if not name:
        return feature_service_check(None, None, str(registry))
    if not registry.exists():
        return feature_service_check(name, None, str(registry), error=(
            f"no Feast registry for {dataset!r} at {registry}: run `shoprec features "
            f"materialize --dataset {dataset}`"))
    from feast.errors import FeatureServiceNotFoundException

    from shoprec.features.store import get_store

    try:
        get_store(settings, dataset).get_feature_service(name)
        found = True
    except FeatureServiceNotFoundException:
        found = False
    return feature_service_check(name, found, str(registry))


# ------------------------------------------------------------------------------ the gate
def export_folder(path: Path) -> Path:
    """A run folder's export/, or the export folder itself."""
    path = Path(path)
    return path / "export" if (path / "export").is_dir() else path


def run_metrics(export: Path, meta: dict) -> dict:
    """metrics.json of the run (beside export/) when there is one, else the export's copy."""
    f = export.parent / "metrics.json"
    if export.name == "export" and f.is_file():
        data = json.loads(f.read_bytes())
        if isinstance(data.get("metrics"), dict):
            return data["metrics"]
    return meta.get("metrics") or {}


def run_gates(settings: Settings, run_dir: Path, dataset: str | None = None, *,
              store: Store | None = None, write: bool = True) -> GateReport:
    """Every gate on a run (or export) folder; writes gate.json and gate.html into the export
    folder unless `write` is False."""
    from shoprec.storage import store_from_settings
    from training.export import ExportedModel

    export = export_folder(run_dir)
    exp = ExportedModel(export)
    dataset = dataset or exp.meta["dataset"]
    store = store if store is not None else store_from_settings(settings)
    gates = settings.gates
    protocol = exp.meta["training"].get("protocol")
    metric = gates.metric_for(protocol)
    metrics = run_metrics(export, exp.meta)
    cand = candidate_name(metrics)
    kind = exp.blend.get("kind", "model") if exp.blend else "model"

    try:  # once for the re-scorings and the probe
        x = gate_interactions(settings, exp.meta, dataset)
    except Exception:  # each check loads them again and fails in its own words
        x = None
    production = rescore_against_production(settings, export, dataset, store, x)
    checks = forgotten_policy(judge_metrics(metrics, protocol, gates, production), settings,
                              store, dataset, production.version)
    try:
        p = probe(settings, exp, dataset, gates.latency_calls, x=x)
    except Exception as e:  # a model that cannot score one user fails its gate, not the run
        p = None
        checks.append(Check("latency_p99", False, None, gates.latency_budget_ms,
                            f"single-user scoring failed: {type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}"))
    if p is not None:
        what = "model + ranker" if kind == "ranker" else "model"
        checks.append(latency_check(p.p99_ms, gates.latency_budget_ms, p.calls, what, p.p50_ms))
    checks.append(variety_check(p))
    checks.append(feast_check(settings, dataset, exp.meta.get("feature_service")))

    table = {"candidate": _row(metrics, cand, metric)}
    if production.version and not production.error:
        table["candidate (re-scored)"] = _row(production.candidate,
                                              candidate_name(production.candidate), metric)
        table["production (re-scored)"] = _row(
            production.production, candidate_name(production.production), metric)
    for b in BASELINES:
        if f"{b}/{SPLIT}" in metrics:
            table[b] = _row(metrics, b, metric)
    report = GateReport(dataset, export.parent.name if export.name == "export" else export.name,
                        str(protocol), metric, cand, kind, checks, production.version, table,
                        gates.model_dump(mode="json"))
    if write:
        report.write(export)
    return report


def forgotten_policy(checks: list[Check], settings: Settings, store: Store, dataset: str,
                     production: str | None) -> list[Check]:
    """A production version trained on a forgotten user's data is replaced by the next
    candidate that passes the other gates, whatever production scored (README § privacy)."""
    from shoprec.privacy import log
    from shoprec.registry import Registry

    forgotten = log.forgotten(settings, dataset)
    n = Registry(store, dataset).trained_on(production, forgotten) \
        if production and forgotten else None
    if not n:
        return checks
    why = (f"skipped: production {production} was trained on {n} forgotten user(s) and is "
           "replaced by any candidate that passes the other gates")
    return [Check("no_regression", True, None, None, why, skipped=True)
            if c.name == "no_regression" else c for c in checks]


def _row(metrics: dict, name: str, metric: str) -> dict[str, float]:
    m = metrics.get(f"{name}/{SPLIT}") or {}
    keys = [metric, *(k for k in SHOWN if k != metric)]
    return {k: float(m[k]) for k in keys if isinstance(m.get(k), int | float)}


def read_report(export_dir: Path) -> dict | None:
    """gate.json of an export folder, or None."""
    f = export_folder(export_dir) / GATE_JSON
    return json.loads(f.read_bytes()) if f.is_file() else None
