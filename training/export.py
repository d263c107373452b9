"""Export for serving: a folder that serving loads with torch alone, no import from this repo.

- `model.ts`: the TorchScript model: forward(items, etypes, gaps, user_feats) -> user vector,
  scores(..., times) -> every item's score, repeat_bonus(..., times) -> what each history item adds,
  item_vectors(), side_vectors(category, brand, price_bucket) for items newer than the model;
- `items.pt`: the item vector matrix (row i = item index i; row 0 = padding), a plain tensor
  (load with torch.load(weights_only=True));
- `blend.json` + `popularity.pt` (when the run fitted a blend): the promoted recommender's ranker
  (training/ranker.py: its bucket edges and one weight per bucket) and the item popularity it
  reads; the user's repeat statistics come online from Feast (`metadata.json`'s feature service);
- `metadata.json`: id maps and vocabularies, how inputs are encoded, metrics, data window,
  feature service, code version.
Written to a temp folder and renamed, so a reader never sees half an export.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from feature_repo.names import SERVING_SERVICE, TRAINING_SERVICE
from shoprec.atomic import atomic_path
from shoprec.config import Settings
from shoprec.contract import EVENT_TYPES
from training.data import GAP_BUCKETS, Interactions, TrainingDataError
from training.model import SeqRec, SeqRecConfig

if TYPE_CHECKING:
    from training.train import TrainResult

FORMAT = "shoprec-seqrec/1"


def code_version() -> str:
    """git commit of the code that trained the model (+ '-dirty' with local changes)."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        from shoprec import __version__

        return f"shoprec-{__version__}"


def export_model(model: SeqRec, mc: SeqRecConfig, x: Interactions, result: TrainResult,
                 out: Path, settings: Settings, popularity: torch.Tensor | None = None) -> Path:
    """Write the export of a trained model to `out`, replacing any export already there."""
    with atomic_path(out, directory=True) as tmp:
        _write_export(model, mc, x, result, tmp, settings)
        if result.blend is not None and popularity is not None:
            _write_blend(result.blend, popularity, tmp)
        shutil.rmtree(out, ignore_errors=True)  # a folder is renamed only onto an empty one
    return out


def _write_export(model: SeqRec, mc: SeqRecConfig, x: Interactions, result: TrainResult,
                  folder: Path, settings: Settings) -> None:
    from training.features import N_FEATURES, NUMERIC

    model = model.cpu().eval()
    torch.jit.script(model).save(str(folder / "model.ts"))
    with torch.no_grad():
        torch.save(model.item_vectors().contiguous(), folder / "items.pt")
    c = x.catalogue
    meta = {
        "format": FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "dataset": result.dataset,
        "code_version": code_version(),
        "torch_version": torch.__version__,
        "model_args": asdict(mc),
        "training": settings.training.model_dump(mode="json"),
        "seed": result.seed,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "device": result.device,
        "metrics": result.metrics,
        "data_window": result.window,
        "feature_service": SERVING_SERVICE if mc.n_user_features else None,
        "training_feature_service": TRAINING_SERVICE if mc.n_user_features else None,
        "inputs": {
            "max_len": mc.max_len,
            "event_types": ["<pad>", *EVENT_TYPES],
            "gap_buckets": f"first interaction = 1, else clip(floor(log2(seconds + 1)) + 2, 2, "
                           f"{GAP_BUCKETS - 1})",
            "left_padded_with": 0,
            "times": "optional 5th argument of scores/repeat_bonus: float seconds of each "
                     "position (any origin, 0 at padding); the last position is 'now'",
            "user_features": (NUMERIC + ["has_features"]) if mc.n_user_features else [],
            "user_feature_transform": "log1p(max(value, 0)), missing = 0; has_features = 1 "
                                      "when any feature is present",
            "n_user_features": N_FEATURES if mc.n_user_features else 0,
        },
        "items": {
            "ids": c.item_ids[1:].tolist(),  # index i + 1
            "categories": c.categories,
            "brands": c.brands,
            "price_edges": c.price_edges,
            # serving's reasons ("because you viewed <title>", "popular in <category>")
            "category_of": c.category[1:].tolist(),
            "titles": (c.titles[1:].tolist() if c.titles is not None
                       else [""] * c.n_items),
        },
    }
    meta["trained_users"] = _write_trained_users(x, folder, settings)
    (folder / "metadata.json").write_text(json.dumps(meta, indent=1))


def _write_trained_users(x: Interactions, folder: Path, settings: Settings) -> dict:
    """Who the model learned from, as a count and keyed hashes only (shoprec/privacy)."""
    from shoprec.privacy import identity, trained

    blob = trained.hash_set(identity.key(settings), x.user_ids.tolist())
    (folder / trained.TRAINED_USERS).write_bytes(blob)
    return {"count": len(blob) // trained.DIGEST_BYTES, "file": trained.TRAINED_USERS,
            "hashes": trained.DESCRIPTION}


def _write_blend(blend: dict, popularity: torch.Tensor, folder: Path) -> None:
    from training.ranker import edges

    (folder / "blend.json").write_text(json.dumps({**blend, "edges": edges()}, indent=1))
    torch.save(popularity.float().contiguous().clone(), folder / "popularity.pt")


class ExportedModel:
    """Loads an export with torch only, as serving does: `evaluate` scores what serving holds.
    A half-written or foreign folder is refused with TrainingDataError, one line naming the file
    and what is wrong with it."""

    FILES = ("metadata.json", "model.ts", "items.pt")

    def __init__(self, path: Path):
        self.path = Path(path)
        missing = [str(self.path / f) for f in self.FILES if not (self.path / f).is_file()]
        if missing:
            raise TrainingDataError(f"incomplete run export (half-written, or not a shoprec run):"
                                    f" missing {', '.join(missing)}")
        self.meta = self._metadata(self.path / "metadata.json")
        model_file = self.path / "model.ts"
        try:
            self.model = torch.jit.load(str(model_file), map_location="cpu").eval()
        except Exception as e:  # torch raises RuntimeError, ValueError, ... on a bad file
            raise TrainingDataError(f"{model_file}: torch cannot load it as a TorchScript model"
                                    f" (damaged or half-written): {_first_line(e)}") from e
        items_file = self.path / "items.pt"
        try:
            self.items = torch.load(items_file, map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError, EOFError, RuntimeError, ...
            raise TrainingDataError(f"{items_file}: torch cannot load it as a tensor "
                                    f"(damaged or half-written): {_first_line(e)}") from e
        n_ids = len(self.meta["items"]["ids"])
        if not isinstance(self.items, torch.Tensor) or self.items.dim() != 2 \
                or self.items.shape[0] != n_ids + 1:
            shape = tuple(self.items.shape) if isinstance(self.items, torch.Tensor) \
                else type(self.items).__name__
            raise TrainingDataError(f"{items_file}: expected an item matrix of {n_ids + 1} rows "
                                    f"(metadata.json's items + padding), found {shape}")
        self.index = {item: i + 1 for i, item in enumerate(self.meta["items"]["ids"])}
        self.blend, self.popularity = self._blend(n_ids)

    def _blend(self, n_ids: int) -> tuple[dict | None, torch.Tensor | None]:
        """The promoted recommender's ranker and popularity, when the run fitted one."""
        file, pop_file = self.path / "blend.json", self.path / "popularity.pt"
        if not file.is_file():
            return None, None
        try:
            blend = json.loads(file.read_bytes())
            pop = torch.load(pop_file, map_location="cpu", weights_only=True)
        except Exception as e:  # JSON, OSError, unpickling
            raise TrainingDataError(f"{file.parent}: blend.json / popularity.pt cannot be "
                                    f"read (half-written or damaged): {_first_line(e)}") from e
        if not isinstance(blend, dict) or blend.get("kind") not in ("ranker", "model") or (
                blend["kind"] == "ranker" and not isinstance(blend.get("weights"), dict)):
            raise TrainingDataError(f"{file}: not a blend description (kind, weights)")
        if not isinstance(pop, torch.Tensor) or pop.shape != (n_ids + 1,):
            raise TrainingDataError(f"{pop_file}: expected {n_ids + 1} popularity counts")
        return blend, pop

    @staticmethod
    def _metadata(file: Path) -> dict:
        try:
            meta = json.loads(file.read_bytes())
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise TrainingDataError(f"{file}: not valid JSON, the export is half-written or "
                                    f"damaged: {_first_line(e)}") from e
        except OSError as e:
            raise TrainingDataError(f"{file}: cannot be read: {e.strerror or e}") from e
        fmt = meta.get("format") if isinstance(meta, dict) else None
        if fmt != FORMAT:
            raise TrainingDataError(f"{file}: format {fmt!r}, expected {FORMAT!r}: not an export "
                                    f"of this version of shoprec")
        need = {"dataset": str, "training": dict, "inputs": dict, "items": dict}
        bad = [k for k, kind in need.items() if not isinstance(meta.get(k), kind)]
        inputs, items = meta.get("inputs"), meta.get("items")
        if isinstance(inputs, dict):
            bad += [f"inputs.{k}" for k in ("max_len", "n_user_features")
                    if not isinstance(inputs.get(k), int)]
        if isinstance(items, dict):
            bad += [f"items.{k}" for k in ("ids", "categories", "brands", "price_edges")
                    if not isinstance(items.get(k), list)]
        if bad:
            raise TrainingDataError(f"{file}: missing or malformed {', '.join(bad)} "
                                    f"(half-written or edited by hand)")
        return meta


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
