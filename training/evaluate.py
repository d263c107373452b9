"""Evaluate an exported model exactly as serving will hold it (TorchScript + item matrix), on the
dataset's current data, next to the baselines on the same split.

Items the export has never seen (newer than the model) are ranked too: their vectors come from
the model's side-feature embeddings (category, brand, price bucket), the cold-start path. In a
history, such an item is masked like padding, as the model has no id for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from feature_repo.names import TRAINING_SERVICE
from shoprec.config import Settings, TrainingSettings
from training.data import Catalogue, Interactions, TrainingDataError, bucketize, load_interactions
from training.export import ExportedModel
from training.metrics import evaluate
from training.splits import EvalSet, make_split
from training.tensors import window_times, windows


def item_matrix(exp: ExportedModel, c: Catalogue) -> tuple[np.ndarray, torch.Tensor]:
    """(current item index -> export index (0 = unknown), vectors of the current catalogue)."""
    to_export = np.array([0] + [exp.index.get(i, 0) for i in c.item_ids[1:]], dtype=np.int64)
    vocab = exp.meta["items"]
    cat = {v: i for i, v in enumerate(vocab["categories"])}
    brand = {v: i for i, v in enumerate(vocab["brands"])}
    vectors = exp.items[torch.from_numpy(to_export)].clone()
    new = np.flatnonzero(to_export == 0)[1:]
    if len(new):
        # buckets by the export's edges: the current catalogue's quantiles may have moved
        prices = c.price[new] if c.price is not None else np.full(len(new), np.nan)
        price = bucketize(prices, np.asarray(vocab["price_edges"]))
        with torch.no_grad():
            vectors[torch.from_numpy(new)] = exp.model.side_vectors(
                torch.tensor([cat.get(c.categories[i], 0) for i in c.category[new]]),
                torch.tensor([brand.get(c.brands[i], 0) for i in c.brand[new]]),
                torch.from_numpy(price))
    return to_export, vectors


def evaluate_export(settings: Settings, export_dir: Path, dataset: str | None = None,
                    x: Interactions | None = None, exclude: str | None = None,
                    baselines: bool = True) -> tuple[dict[str, dict[str, float]], dict]:
    """Metrics of the export (its model and blend) and, unless `baselines` is off, the baselines
    on the run's protocol; `exclude` overrides the run's choice of history items kept out of the
    ranking."""
    from training.train import run_baselines

    exp = ExportedModel(export_dir)  # TrainingDataError for a half-written or foreign export
    meta = exp.meta
    try:
        cfg = TrainingSettings(**meta["training"])
    except ValidationError as e:  # else main() would take it for a SHOPREC_* setting
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "training"
        raise TrainingDataError(f"{exp.path / 'metadata.json'}: training.{where}: "
                                f"{first['msg']} (an export of another version?)") from e
    if exclude is not None:
        cfg = cfg.model_copy(update={"exclude": exclude})
    dataset = dataset or meta["dataset"]
    window = meta.get("data_window")
    gap = window.get("session_gap_minutes") if isinstance(window, dict) else None
    if x is None and cfg.protocol == "session" and isinstance(gap, int) and gap >= 1:
        settings = settings.model_copy(update={"session_gap_minutes": gap})  # the run's sessions
    x = x if x is not None else load_interactions(settings, dataset)
    split = make_split(x, cfg.protocol, test_days=cfg.test_days, valid_days=cfg.valid_days,
                       exclude=cfg.exclude)
    to_export, vectors = item_matrix(exp, x.catalogue)
    max_len = meta["inputs"]["max_len"]
    n_feat = meta["inputs"]["n_user_features"]
    feats = None
    if n_feat:
        from training.features import user_day_features

        service = meta.get("training_feature_service") or TRAINING_SERVICE
        feats = user_day_features(settings.model_copy(update={"dataset": dataset}), x, service)
    bounds = x.user_bounds()

    def score(es: EvalSet, rows: np.ndarray) -> torch.Tensor:
        w = windows(x, bounds[es.users[rows]], es.hist_end[rows], max_len)
        items = torch.from_numpy(to_export)[w.items]
        keep = items != 0
        if n_feat:
            last = w.rows[:, -1].numpy()
            f = torch.from_numpy(feats[1][feats[0][last]])
        else:
            f = torch.zeros(len(rows), 0)
        args = (items, w.etypes * keep, w.gaps * keep, f, window_times(x.ts, w.rows))
        with torch.no_grad():
            s = exp.model(*args[:4]) @ vectors.t()
            bonus = exp.model.repeat_bonus(*args) * keep  # in current item indices
        return s.scatter_add(1, w.items * keep, bonus.to(s.dtype))

    n, ks = x.catalogue.n_items, tuple(cfg.ks)
    out = {f"model/{es.name}": evaluate(score, es, n, ks) for es in (split.valid, split.test)}
    if baselines:
        out.update(run_baselines(x, split, cfg))
    blend = _exported_blend(exp, score, to_export, x, bounds)
    if blend is not None:
        out.update({f"blend/{es.name}": evaluate(blend, es, n, ks)
                    for es in (split.valid, split.test)})
    return out, {**meta, "training": cfg.model_dump(mode="json")}


def _exported_blend(exp: ExportedModel, score, to_export: np.ndarray, x: Interactions,
                    bounds: np.ndarray):
    """The export's promoted recommender (blend.json + popularity.pt), scoring with what the
    export holds: its model, its popularity (mapped to today's items; newer ones count 0)."""
    from training.ranker import Blend, Inputs, Ranker
    from training.repeat import MAX_ITEMS

    if exp.blend is None:
        return None
    pop = torch.zeros(x.catalogue.n_items + 1)
    known = torch.from_numpy(to_export) != 0
    pop[known] = exp.popularity[torch.from_numpy(to_export)[known]]
    try:
        ranker = (Ranker.from_tables(exp.blend["weights"]) if exp.blend["kind"] == "ranker"
                  else None)
    except ValueError as e:
        raise TrainingDataError(f"{exp.path / 'blend.json'}: {e} (another version?)") from e
    inputs = Inputs(score, lambda es, rows: pop.expand(len(rows), -1), x, bounds,
                    exp.blend.get("repeat_max_items", MAX_ITEMS))
    return Blend(inputs, ranker, exp.blend)


def baselines_with_shuffled_ties(settings: Settings, dataset: str, cfg: TrainingSettings,
                                 seeds: tuple[int, ...] = (1, 2, 3)
                                 ) -> dict[str, dict[str, dict[str, float]]]:
    """The baselines' test metrics with a user's events at one timestamp in the contract's order
    ("source": contract.TIE_ORDER) and shuffled within each such group by each seed
    ("shuffled:<seed>"). Order within one timestamp is not information: the figures must agree
    within noise; a baseline that gains in "source" would be reading the tie rule."""
    from training.train import run_baselines

    out = {}
    for seed in (None, *seeds):
        x = load_interactions(settings, dataset, tie_seed=seed)
        split = make_split(x, cfg.protocol, test_days=cfg.test_days, valid_days=cfg.valid_days,
                           exclude=cfg.exclude)
        metrics = run_baselines(x, split, cfg)
        out["source" if seed is None else f"shuffled:{seed}"] = {
            k.removesuffix("/test"): v for k, v in metrics.items() if k.endswith("/test")}
    return out
