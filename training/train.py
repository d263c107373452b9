"""Training loop: seeded, early-stopped on validation NDCG@10, atomic checkpoints, GPU when present.

Everything the hot loop touches is a tensor built before the first step and moved to the device
once; a batch is one fancy-index of those tensors (no DataLoader, no per-sample Python).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from shoprec.config import Settings, TrainingSettings
from shoprec.contract import EVENT_TYPES
from training.baselines import ItemKNN, PersonalHistory, Popularity
from training.data import GAP_BUCKETS, PRICE_BUCKETS, Interactions, load_interactions
from training.metrics import evaluate
from training.model import SeqRec, SeqRecConfig
from training.splits import DAY_US, EvalSet, Split, make_split
from training.tensors import Windows, training_windows, window_times, windows


@dataclass
class TrainResult:
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

    def summary(self) -> str:
        m = self.metrics["model/test"]
        return (f"{self.dataset} {self.protocol} seed {self.seed}: test NDCG@10 "
                f"{m['ndcg@10']:.4f} Recall@20 {m['recall@20']:.4f} after {self.epochs} epochs "
                f"(best {self.best_epoch}) on {self.device}, {self.sequences_per_s:,.0f} seq/s "
                f"-> {self.run_dir}")


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def target_bounds(x: Interactions, train_mask: np.ndarray, horizon_us: int) -> np.ndarray:
    """Per row r: the exclusive upper row of its targets, which are the user's training rows
    after r up to `horizon_us` later (always at least the next one; 0 = the next item only).

    horizon > 0 is the dense all-action objective (as in PinnerFormer): trained to rank anything
    the shopper engages with over the coming days, which is what a time split asks, rather than
    only the very next click."""
    b = x.user_bounds()
    hi = np.arange(len(x)) + 1  # span 0: no target
    for u in range(x.n_users):
        s, e = int(b[u]), int(b[u + 1])
        n_train = int(train_mask[s:e].sum())
        if not train_mask[s:s + n_train].all():
            raise ValueError("training rows must be a prefix of every user's rows")
        e = s + n_train
        if e - s < 2:
            continue
        ts = x.ts[s:e]
        upto = s + np.searchsorted(ts, ts + horizon_us, side="right")
        hi[s:e] = np.minimum(np.maximum(upto, np.arange(s, e) + 2), e)
    return hi


class Prepared:
    """The data of one training run, tensorised and on the device."""

    def __init__(self, x: Interactions, split: Split, cfg: TrainingSettings,
                 feats: tuple[np.ndarray, np.ndarray] | None, device: torch.device):
        self.x, self.split, self.device = x, split, device
        n_feat = feats[1].shape[1] if feats is not None else 0
        self.row_feat = torch.from_numpy(feats[0]) if feats is not None else None
        table = feats[1] if feats is not None else np.zeros((1, 1), dtype=np.float32)
        self.feat_table = torch.from_numpy(table).to(device)
        self.n_features = n_feat
        w = training_windows(x, split.train_mask, cfg.max_len)
        self.inputs = w.items[:, :-1].to(device)
        self.etypes = w.etypes[:, :-1].to(device)
        self.gaps = w.gaps[:, :-1].to(device)
        self.in_rows = w.rows[:, :-1].to(device)
        self.times = window_times(x.ts, w.rows[:, :-1]).to(device)
        horizon = cfg.test_days * DAY_US if split.protocol == "time" and cfg.dense_targets else 0
        self.target_hi = torch.from_numpy(target_bounds(x, split.train_mask, horizon)).to(device)
        self.row_item = torch.from_numpy(x.item).to(device)
        self.feat_idx = self._feat_index(w.rows[:, :-1]).to(device)
        self.lengths = (w.items[:, :-1] != 0).sum(1)
        self.eval_inputs = {es.name: self._eval_windows(es, cfg.max_len)
                            for es in (split.valid, split.test)}

    def batches(self, size: int, gen: torch.Generator):
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
        return self.feat_table[idx] if self.n_features else self.feat_table[idx][..., :0]

    def scorer(self, model: SeqRec):
        def score(es: EvalSet, rows: np.ndarray) -> torch.Tensor:
            w, times, f = self.eval_inputs[es.name]
            r = torch.from_numpy(rows).to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16,
                                enabled=self.device.type == "cuda"):
                return model.scores(w.items[r], w.etypes[r], w.gaps[r],
                                    self.user_feats(f[r]), times[r]).float()
        return score


def model_config(x: Interactions, cfg: TrainingSettings, n_features: int) -> SeqRecConfig:
    c = x.catalogue
    return SeqRecConfig(
        n_items=c.n_items, n_categories=len(c.categories), n_brands=len(c.brands),
        n_price_buckets=PRICE_BUCKETS + 1, n_event_types=len(EVENT_TYPES) + 1,
        n_gap_buckets=GAP_BUCKETS, n_user_features=n_features, max_len=cfg.max_len,
        dim=cfg.dim, layers=cfg.layers, heads=cfg.heads, dropout=cfg.dropout,
        id_dropout=cfg.id_dropout)


def build_model(mc: SeqRecConfig, x: Interactions) -> SeqRec:
    model = SeqRec(mc)
    c = x.catalogue
    model.set_item_features(torch.from_numpy(c.category), torch.from_numpy(c.brand),
                            torch.from_numpy(c.price_bucket))
    return model


def save_checkpoint(path: Path, model: SeqRec, mc: SeqRecConfig, cfg: TrainingSettings,
                    **extra) -> None:
    """Model args + config + weights, written to a temp file and renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"model_args": asdict(mc), "training": cfg.model_dump(mode="json"),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                **extra}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> tuple[SeqRec, dict]:
    ck = torch.load(path, map_location="cpu", weights_only=True)  # no pickle of code
    model = SeqRec(SeqRecConfig(**ck["model_args"]))
    model.load_state_dict(ck["state_dict"])
    return model.eval(), ck


def run_baselines(x: Interactions, split: Split,
                  cfg: TrainingSettings) -> dict[str, dict[str, float]]:
    pop = Popularity(x, split.train_mask,
                     cfg.popularity_window_days if split.protocol == "time" else None)
    models = [pop, ItemKNN(x, split.train_mask, cfg.knn_neighbours, cfg.max_len),
              PersonalHistory(x, split.train_mask, pop)]
    n = x.catalogue.n_items
    return {f"{m.name}/{es.name}": evaluate(m, es, n, tuple(cfg.ks))
            for m in models for es in (split.valid, split.test)}


def train(settings: Settings, dataset: str | None = None, *, seed: int | None = None,
          progress: bool = True, run_dir: Path | None = None, baselines: bool = True,
          x: Interactions | None = None, export: bool = True) -> TrainResult:
    """Train the sequential model on a dataset of the warehouse; evaluate it and the baselines
    on the held-out period; checkpoint and export it under SHOPREC_HOME/runs/."""
    from tqdm.auto import tqdm

    cfg = settings.training
    dataset = dataset or settings.dataset
    seed = settings.seed if seed is None else seed
    seed_everything(seed)
    device = pick_device(cfg.device)
    x = x if x is not None else load_interactions(settings, dataset)
    split = make_split(x, cfg.protocol, test_days=cfg.test_days, valid_days=cfg.valid_days,
                       exclude=cfg.exclude)
    if len(split.valid) == 0 or len(split.test) == 0:
        raise ValueError(f"{dataset}: the {cfg.protocol} split leaves no users to evaluate")
    feats = None
    if cfg.user_features:
        from training.features import user_day_features

        feats = user_day_features(settings, x)
    prep = Prepared(x, split, cfg, feats, device)
    mc = model_config(x, cfg, prep.n_features)
    model = build_model(mc, x).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = run_dir or settings.runs_dir / dataset / f"{stamp}-{cfg.protocol}-seed{seed}"
    ckpt = run_dir / "checkpoint.pt"
    ks = tuple(cfg.ks)
    score = prep.scorer(model)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n_seq = len(prep.inputs)
    sampled = cfg.negatives is not None and mc.n_items > 2 * cfg.negatives
    best, best_epoch, stale, seen, train_s = -1.0, 0, 0, 0, 0.0
    started = time.perf_counter()
    bar = tqdm(total=cfg.max_epochs, desc=f"train {dataset}", unit="epoch", disable=not progress)
    epoch = 0
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        t0 = time.perf_counter()
        total = 0.0
        for idx, width in prep.batches(cfg.batch_size, gen):
            neg = (torch.randperm(mc.n_items, generator=gen)[:cfg.negatives].add(1).to(device)
                   if sampled else None)
            cols = slice(mc.max_len - width, None)  # all-padding columns of the batch dropped
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = model.loss(prep.inputs[idx, cols], prep.etypes[idx, cols],
                                  prep.gaps[idx, cols], prep.user_feats(prep.feat_idx[idx, cols]),
                                  prep.targets(idx, cols, gen), neg, prep.times[idx, cols])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_s += time.perf_counter() - t0
        seen += n_seq
        if epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs:
            model.eval()
            ndcg = evaluate(score, split.valid, mc.n_items, ks)["ndcg@10"]
            if ndcg > best:
                best, best_epoch, stale = ndcg, epoch, 0
                save_checkpoint(ckpt, model, mc, cfg, epoch=epoch, valid_ndcg10=ndcg, seed=seed,
                                dataset=dataset)
            else:
                stale += cfg.eval_every
            bar.set_postfix(loss=f"{total / n_seq:.3f}", ndcg10=f"{ndcg:.4f}",
                            best=f"{best:.4f}@{best_epoch}")
        bar.update(1)
        over_time = (cfg.max_minutes is not None
                     and time.perf_counter() - started > cfg.max_minutes * 60)
        if stale >= cfg.patience or over_time:
            break
    bar.close()
    model.load_state_dict(torch.load(ckpt, map_location=device, weights_only=True)["state_dict"])
    model.eval()
    metrics = {f"model/{es.name}": evaluate(score, es, mc.n_items, ks)
               for es in (split.valid, split.test)}
    if baselines:
        metrics.update(run_baselines(x, split, cfg))
    result = TrainResult(run_dir, dataset, cfg.protocol, seed, str(device), epoch, best_epoch,
                         train_s, seen / max(train_s, 1e-9), metrics, split.window)
    (run_dir / "metrics.json").write_text(json.dumps(_jsonable(result), indent=2))
    if export:
        from training.export import export_model

        export_model(model, mc, x, result, run_dir / "export", settings)
    return result


def _jsonable(r: TrainResult) -> dict:
    d = asdict(r)
    d["run_dir"] = str(r.run_dir)
    return d
