"""Training loop: seeded, early-stopped on validation NDCG@10, atomic checkpoints, GPU when present.

Everything the hot loop touches is a tensor built before the first step and moved to the device
once; a batch is one fancy-index of those tensors (no DataLoader, no per-sample Python).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from shoprec.atomic import atomic_path, write_text
from shoprec.config import Settings, TrainingSettings
from shoprec.contract import EVENT_TYPES
from training import baselines as bl
from training.data import GAP_BUCKETS, PRICE_BUCKETS, Interactions, load_interactions
from training.metrics import evaluate
from training.model import SeqRec, SeqRecConfig
from training.splits import DAY_US, EvalSet, Split, SplitError, make_split
from training.tensors import Windows, training_windows, window_times, windows


@dataclass
class TrainResult:
    """What a run produced and where (the report, metrics.json and the export read this)."""

    run_dir: Path
    dataset: str
    protocol: str
    seed: int
    device: str
    epochs: int
    best_epoch: int
    train_seconds: float
    sequences_per_s: float
    metrics: dict[str, dict[str, float]]  # "model/test", "popularity/test", ...
    window: dict = field(default_factory=dict)
    blend: dict | None = None  # the promoted recommender (training/ranker.py)

    def summary(self) -> str:
        m = self.metrics["model/test"]
        who = self.window.get("evaluated_users")
        users = f" ({who['test']:,} of {who['of']:,} users)" if who else ""
        return (f"{self.dataset} {self.protocol} seed {self.seed}: test NDCG@10 "
                f"{m['ndcg@10']:.4f} Recall@20 {m['recall@20']:.4f}{users} after {self.epochs} "
                f"epochs "
                f"(best {self.best_epoch}) on {self.device}, {self.sequences_per_s:,.0f} seq/s "
                f"-> {self.run_dir}")


def pick_device(name: str = "auto") -> torch.device:
    """`auto`: the GPU when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Every global RNG a run may draw from (weight init and dropout use torch's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _autocast(device: torch.device) -> torch.autocast:
    """Mixed precision (bfloat16) on GPUs; CPU runs stay in float32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def target_bounds(x: Interactions, train_mask: np.ndarray, horizon_us: int) -> np.ndarray:
    """Per row r: the exclusive upper row of its targets, which are the user's training rows
    after r up to `horizon_us` later (always at least the next one; 0 = the next item only).

    horizon > 0 is the dense all-action objective (as in PinnerFormer): trained to rank anything
    the shopper engages with over the coming days, which is what a time split asks, rather than
    only the very next click."""
    b = x.user_bounds()
    hi = np.arange(len(x)) + 1  # span 0: no target
    n_train = np.bincount(x.user[train_mask], minlength=x.n_users)
    if not np.array_equal(train_mask, hi - 1 - b[:-1][x.user] < n_train[x.user]):
        raise ValueError("training rows must be a prefix of every user's rows")
    rows = np.flatnonzero(train_mask & (n_train[x.user] >= 2))
    if len(rows) == 0:
        return hi
    user, ts = x.user[rows], x.ts[rows]
    # (user, time) packed in one int64, sorted as the rows are: one searchsorted of sorted
    # queries finds every row's bound; users in chunks small enough that the key cannot overflow
    width = int(ts.max() - ts.min()) + horizon_us + 1
    per_chunk = max(1, (1 << 62) // width)
    upto = np.empty_like(rows)
    cut = np.searchsorted(user, np.arange(0, x.n_users + per_chunk, per_chunk))
    t0 = ts.min()
    for lo, up in zip(cut[:-1], cut[1:], strict=True):
        if up > lo:
            key = (user[lo:up] - user[lo]) * width + (ts[lo:up] - t0)
            upto[lo:up] = rows[lo + np.searchsorted(key, key + horizon_us, side="right") - 1] + 1
    end = b[:-1][user] + n_train[user]
    hi[rows] = np.minimum(np.maximum(upto, rows + 2), end)
    return hi


class Prepared:
    """The data of one training run, tensorised and on the device."""

    def __init__(self, x: Interactions, split: Split, cfg: TrainingSettings,
                 feats: tuple[np.ndarray, np.ndarray] | None, device: torch.device):
        self.x, self.device = x, device
        self.n_features = feats[1].shape[1] if feats is not None else 0
        self.row_feat = torch.from_numpy(feats[0]) if feats is not None else None
        table = feats[1] if feats is not None else np.zeros((1, 1), dtype=np.float32)
        self.feat_table = torch.from_numpy(table).to(device)
        w = training_windows(x, split.train_mask, cfg.max_len)
        self.inputs = w.items[:, :-1].to(device)
        self.etypes = w.etypes[:, :-1].to(device)
        self.gaps = w.gaps[:, :-1].to(device)
        self.in_rows = w.rows[:, :-1].to(device)
        self.times = window_times(x.ts, w.rows[:, :-1]).to(device)
        # dense targets over the test period for a time split; loo and session train on the next
        # interaction (a session's items are predicted one by one, as it unfolds)
        horizon = cfg.test_days * DAY_US if split.protocol == "time" and cfg.dense_targets else 0
        self.target_hi = torch.from_numpy(target_bounds(x, split.train_mask, horizon)).to(device)
        self.row_item = torch.from_numpy(x.item).to(device)
        self.feat_idx = self._feat_index(w.rows[:, :-1]).to(device)
        self.lengths = (w.items[:, :-1] != 0).sum(1)
        self.eval_inputs = {es.name: self._eval_windows(es, cfg.max_len)
                            for es in (split.valid, split.test)}

    def batches(self, size: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, int]]:
        """Length-bucketed batches in random order: windows sorted by length (random among equal
        lengths) are cut into batches, so a batch of short sequences skips the padding columns
        that every sequence in it has. Yields (indices on the device, columns kept)."""
        noise = torch.rand(len(self.lengths), generator=gen)
        order = torch.argsort(self.lengths.double() + noise.double())
        chunks = list(order.split(size))
        for i in torch.randperm(len(chunks), generator=gen).tolist():
            idx = chunks[i]
            yield idx.to(self.device), int(self.lengths[idx].max())

    def targets(self, idx: torch.Tensor, cols: slice, gen: torch.Generator) -> torch.Tensor:
        """The target of every position of a batch (0 = none): a uniformly drawn row among the
        rows that may follow it (see target_bounds), drawn anew each epoch."""
        rows = self.in_rows[idx, cols]
        r = rows.clamp(min=0)
        span = self.target_hi[r] - r - 1
        u = torch.rand(rows.shape, generator=gen).to(self.device)
        pick = r + 1 + (u * span.clamp(min=1)).long()
        ok = (rows >= 0) & (span > 0)
        return torch.where(ok, self.row_item[pick.clamp(max=len(self.row_item) - 1)], 0)

    def _feat_index(self, rows: torch.Tensor) -> torch.Tensor:
        if self.row_feat is None:
            return torch.zeros_like(rows)
        return torch.where(rows >= 0, self.row_feat[rows.clamp(min=0)], 0)

    def _eval_windows(self, es: EvalSet, max_len: int
                      ) -> tuple[Windows, torch.Tensor, torch.Tensor]:
        """Windows of the evaluated histories on the device, their times, their feature rows."""
        b = self.x.user_bounds()
        w = windows(self.x, b[es.users], es.hist_end, max_len)
        feat = self._feat_index(w.rows[:, -1]).to(self.device)
        times = window_times(self.x.ts, w.rows).to(self.device)
        w = Windows(*(t.to(self.device) for t in (w.items, w.etypes, w.gaps, w.rows)))
        return w, times, feat

    def user_feats(self, idx: torch.Tensor) -> torch.Tensor:
        """Feature vectors of feature-table rows; width 0 when the run has no user features."""
        return self.feat_table[idx] if self.n_features else self.feat_table[idx][..., :0]

    def scorer(self, model: SeqRec) -> Callable[[EvalSet, np.ndarray], torch.Tensor]:
        """`model` as `evaluate` wants it: rows of an EvalSet -> scores of every item, from the
        windows built once on the device."""

        def score(es: EvalSet, rows: np.ndarray) -> torch.Tensor:
            w, times, f = self.eval_inputs[es.name]
            r = torch.from_numpy(rows).to(self.device)
            with _autocast(self.device):
                return model.scores(w.items[r], w.etypes[r], w.gaps[r],
                                    self.user_feats(f[r]), times[r]).float()
        return score


def model_config(x: Interactions, cfg: TrainingSettings, n_features: int) -> SeqRecConfig:
    """Vocabulary sizes from the data, hyper-parameters from the settings (their only home)."""
    c = x.catalogue
    return SeqRecConfig(
        n_items=c.n_items, n_categories=len(c.categories), n_brands=len(c.brands),
        n_price_buckets=PRICE_BUCKETS + 1, n_event_types=len(EVENT_TYPES) + 1,
        n_gap_buckets=GAP_BUCKETS, n_user_features=n_features, max_len=cfg.max_len,
        dim=cfg.dim, layers=cfg.layers, heads=cfg.heads, dropout=cfg.dropout,
        id_dropout=cfg.id_dropout)


def build_model(mc: SeqRecConfig, x: Interactions) -> SeqRec:
    """A fresh model holding the catalogue's side features (buffers: the export carries them)."""
    model = SeqRec(mc)
    c = x.catalogue
    model.set_item_features(torch.from_numpy(c.category), torch.from_numpy(c.brand),
                            torch.from_numpy(c.price_bucket))
    return model


def save_checkpoint(path: Path, model: SeqRec, mc: SeqRecConfig, cfg: TrainingSettings,
                    **extra) -> None:
    """Model args + config + weights, renamed into place: a crash mid-save never leaves a
    half-written checkpoint where the best epoch's weights used to be."""
    with atomic_path(path) as tmp:
        torch.save({"model_args": asdict(mc), "training": cfg.model_dump(mode="json"),
                    "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    **extra}, tmp)


def load_checkpoint(path: Path) -> tuple[SeqRec, dict]:
    """The model of a checkpoint, in eval mode, and the checkpoint's dict."""
    ck = torch.load(path, map_location="cpu", weights_only=True)  # no pickle of code
    model = SeqRec(SeqRecConfig(**ck["model_args"]))
    model.load_state_dict(ck["state_dict"])
    return model.eval(), ck


def tuning_split(split: Split, users: int) -> Split:
    """`split` with its validation set cut to a sample of `users` rows (in their order, drawn
    with a fixed seed), or `split` itself when it has no more."""
    if len(split.valid) <= users:
        return split
    rows = np.sort(np.random.default_rng(0).choice(len(split.valid), users, replace=False))
    return replace(split, valid=split.valid.subset(rows))


def run_baselines(x: Interactions, split: Split, cfg: TrainingSettings,
                  seconds: dict[str, float] | None = None,
                  models: dict[str, Callable] | None = None) -> dict[str, dict[str, float]]:
    """Metrics of the baselines on the same split: what the model has to beat. Hyper-parameters
    with several candidates are chosen on the validation set (see training/baselines.py), so a
    baseline's validation figures are the ones it was picked by; its test figures are not.
    `seconds` receives each baseline's time (fit, tuning and both evaluations), `models` the
    fitted baselines (scorers of EvalSet rows, as `evaluate` takes them)."""
    # a recent window only where everyone is tested on the same period (time); loo and session
    # test each user at their own time: all the training data
    pop = bl.Popularity(x, split.train_mask,
                        cfg.popularity_window_days if split.protocol == "time" else None)
    device = pick_device(cfg.device)
    n, ks = x.catalogue.n_items, tuple(cfg.ks)
    tuning = tuning_split(split, cfg.tune_users)
    fits: dict[str, Callable[[], Callable | None]] = {
        "popularity": lambda: pop,
        "itemknn": lambda: bl.fit_itemknn(x, tuning, cfg.knn_neighbours, ks),
        "personal_history": lambda: bl.PersonalHistory(x, split.train_mask, pop),
        "ptopfreq": lambda: bl.PTopFreq(x, split.train_mask, pop),
        "tifuknn": lambda: bl.fit_tifuknn(x, tuning, pop, ks, cfg.tifu_max_users),
        "ease": lambda: bl.fit_ease(x, tuning, cfg.ease_max_items, device, ks),
    }
    out = {}
    for name, fit in fits.items():
        t0 = time.perf_counter()
        model = fit()
        if model is None:  # skipped (it says why)
            continue
        # a baseline tuned on every validation user was last validated with what it chose:
        # the same figures
        tuned = getattr(model, "valid_metrics", None) if tuning is split else None
        out[f"{name}/valid"] = tuned or evaluate(model, split.valid, n, ks)
        out[f"{name}/test"] = evaluate(model, split.test, n, ks)
        if seconds is not None:
            seconds[name] = time.perf_counter() - t0
        if models is not None:
            models[name] = model
    return out


@dataclass
class _Run:
    """One training run from setup to report: its data on the device, the model, the optimiser,
    where it writes, and how far it got. `gen` draws batch order, targets and negatives, so the
    seed alone fixes them."""

    settings: Settings
    dataset: str
    seed: int
    device: torch.device
    x: Interactions
    split: Split
    prep: Prepared
    mc: SeqRecConfig
    model: SeqRec
    opt: torch.optim.Optimizer
    gen: torch.Generator
    run_dir: Path
    epochs: int = 0  # epochs trained so far
    train_s: float = 0.0  # seconds in training steps (evaluation excluded): the throughput
    seen: int = 0  # training windows stepped on (a budget may end an epoch early)

    @property
    def cfg(self) -> TrainingSettings:
        return self.settings.training

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def sampled_softmax(self) -> bool:
        """Sampled negatives pay off only when the catalogue dwarfs them."""
        return self.cfg.negatives is not None and self.mc.n_items > 2 * self.cfg.negatives


@dataclass
class EarlyStopping:
    """The best validation NDCG@10 so far, and when to stop: `patience` epochs without a better
    one, or past the wall-clock budget (the best epoch's checkpoint is kept either way)."""

    patience: int
    max_minutes: float | None = None
    best: float = -1.0
    best_epoch: int = 0
    stale: int = 0  # epochs since the best
    started: float = field(default_factory=time.perf_counter)

    def improved(self, metric: float, epoch: int, epochs_since_last_eval: int) -> bool:
        """Record an evaluation; True when it is the best so far (the caller checkpoints it)."""
        if metric > self.best:
            self.best, self.best_epoch, self.stale = metric, epoch, 0
            return True
        self.stale += epochs_since_last_eval
        return False

    def over_time(self) -> bool:
        return (self.max_minutes is not None
                and time.perf_counter() - self.started > self.max_minutes * 60)

    def should_stop(self) -> bool:
        return self.stale >= self.patience or self.over_time()


def train(settings: Settings, dataset: str | None = None, *, seed: int | None = None,
          progress: bool = True, run_dir: Path | None = None, baselines: bool = True,
          x: Interactions | None = None, export: bool = True) -> TrainResult:
    """Train the sequential model on a dataset of the warehouse; evaluate it and the baselines
    on the held-out period; checkpoint and export it under the dataset's runs directory."""
    from tqdm.auto import tqdm

    dataset = dataset or settings.dataset
    seed = settings.seed if seed is None else seed
    run = _setup(settings, dataset, seed, x, run_dir)
    cfg = run.cfg
    stop = EarlyStopping(cfg.patience, cfg.max_minutes)
    bar = tqdm(total=cfg.max_epochs, desc=f"train {dataset}", unit="epoch", disable=not progress)
    for epoch in range(1, cfg.max_epochs + 1):
        loss = _run_epoch(run, stop.over_time)
        if epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs:
            ndcg = _validate(run)
            if stop.improved(ndcg, epoch, cfg.eval_every):
                save_checkpoint(run.checkpoint, run.model, run.mc, cfg, epoch=epoch,
                                valid_ndcg10=ndcg, seed=seed, dataset=dataset)
            bar.set_postfix(loss=f"{loss:.3f}", ndcg10=f"{ndcg:.4f}",
                            best=f"{stop.best:.4f}@{stop.best_epoch}")
        bar.update(1)
        if stop.should_stop():
            break
    bar.close()
    return _report(run, stop, baselines=baselines, export=export)


def _setup(settings: Settings, dataset: str, seed: int, x: Interactions | None,
           run_dir: Path | None) -> _Run:
    """Data, split, features, model and optimiser of a run. Seeding comes first and the order of
    the steps is part of reproducibility: the model's initial weights draw from the global RNG."""
    cfg = settings.training
    seed_everything(seed)
    device = pick_device(cfg.device)
    x = x if x is not None else load_interactions(settings, dataset)
    split = make_split(x, cfg.protocol, test_days=cfg.test_days, valid_days=cfg.valid_days,
                       exclude=cfg.exclude)
    if len(split.valid) == 0 or len(split.test) == 0:
        raise SplitError(f"{dataset}: the {cfg.protocol} split leaves no users to evaluate")
    feats = None
    if cfg.user_features:
        from training.features import user_day_features

        feats = user_day_features(settings, x)
    prep = Prepared(x, split, cfg, feats, device)
    mc = model_config(x, cfg, prep.n_features)
    model = build_model(mc, x).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if run_dir is None:
        run_id = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{cfg.protocol}-seed{seed}"
        run_dir = settings.runs_dir(dataset) / run_id
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return _Run(settings, dataset, seed, device, x, split, prep, mc, model, opt, gen, run_dir)


def _run_epoch(run: _Run, over_time: Callable[[], bool] = lambda: False) -> float:
    """One pass over every training window in length-bucketed batches; the mean loss. Past the
    time budget the pass ends early (at 10M events one epoch alone outlasts a 10-minute budget)
    and is validated and checkpointed like a whole one."""
    cfg, prep, mc, model = run.cfg, run.prep, run.mc, run.model
    model.train()
    t0 = time.perf_counter()
    total, seen = 0.0, 0
    for idx, width in prep.batches(cfg.batch_size, run.gen):
        if seen and over_time():
            break
        neg = (torch.randperm(mc.n_items, generator=run.gen)[:cfg.negatives].add(1).to(run.device)
               if run.sampled_softmax else None)
        cols = slice(mc.max_len - width, None)  # all-padding columns of the batch dropped
        with _autocast(run.device):
            loss = model.loss(prep.inputs[idx, cols], prep.etypes[idx, cols],
                              prep.gaps[idx, cols], prep.user_feats(prep.feat_idx[idx, cols]),
                              prep.targets(idx, cols, run.gen), neg, prep.times[idx, cols])
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        total += loss.item() * len(idx)
        seen += len(idx)
    if run.device.type == "cuda":
        torch.cuda.synchronize()  # the epoch's time includes its queued GPU work
    run.train_s += time.perf_counter() - t0
    run.epochs += 1
    run.seen += seen
    return total / max(seen, 1)


def _validate(run: _Run) -> float:
    """NDCG@10 on the validation users: what early stopping watches."""
    run.model.eval()
    return evaluate(run.prep.scorer(run.model), run.split.valid, run.mc.n_items,
                    tuple(run.cfg.ks))["ndcg@10"]


def _blend(score: Callable, fitted: dict[str, Callable], metrics: dict, run: _Run) -> dict | None:
    """The recommender to promote: the model re-ranked with popularity and the user's whole-
    history repeat statistics by a ranker fitted on validation (training/ranker.py); its
    metrics go beside the others."""
    from training.ranker import Inputs, fit_blend

    if "popularity" not in fitted:
        return None
    n_items, ks = run.mc.n_items, tuple(run.cfg.ks)
    inputs = Inputs(score, fitted["popularity"], run.x, run.x.user_bounds(),
                    run.settings.feast.repeat_max_items)
    blend, valid_metrics = fit_blend(inputs, run.split.valid, n_items, ks, seed=run.seed)
    metrics["blend/valid"] = valid_metrics
    metrics["blend/test"] = evaluate(blend, run.split.test, n_items, ks)
    return blend.describe()


def _report(run: _Run, stop: EarlyStopping, *, baselines: bool, export: bool) -> TrainResult:
    """Back to the best epoch's weights (the last epoch may be worse); its metrics next to the
    baselines', written as metrics.json; and the export for serving."""
    model, split, cfg = run.model, run.split, run.cfg
    ck = torch.load(run.checkpoint, map_location=run.device, weights_only=True)
    model.load_state_dict(ck["state_dict"])
    model.eval()
    score = run.prep.scorer(model)
    metrics = {f"model/{es.name}": evaluate(score, es, run.mc.n_items, tuple(cfg.ks))
               for es in (split.valid, split.test)}
    blend_info = None
    fitted: dict[str, Callable] = {}
    if baselines:
        metrics.update(run_baselines(run.x, split, cfg, models=fitted))
        blend_info = _blend(score, fitted, metrics, run)
    seen = run.seen
    result = TrainResult(run.run_dir, run.dataset, cfg.protocol, run.seed, str(run.device),
                         run.epochs, stop.best_epoch, run.train_s, seen / max(run.train_s, 1e-9),
                         metrics, split.window, blend_info)
    write_text(run.run_dir / "metrics.json", json.dumps(_jsonable(result), indent=2))
    if export:
        from training.export import export_model

        pop = fitted.get("popularity")
        export_model(model, run.mc, run.x, result, run.run_dir / "export", run.settings,
                     popularity=pop.scores_ if pop is not None else None)
    return result


def _jsonable(r: TrainResult) -> dict:
    d = asdict(r)
    d["run_dir"] = str(r.run_dir)
    return d
