"""Pre-tensorised sequences: windows are cut with numpy fancy indexing, once, before training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from training.arrays import ranges
from training.data import Interactions


@dataclass
class Windows:
    """Left-padded windows of interactions: items, event types, gap buckets, and the row each
    position came from (-1 = padding), to look up per-position user features."""

    items: torch.Tensor  # [S, L] int64
    etypes: torch.Tensor
    gaps: torch.Tensor
    rows: torch.Tensor

    def __len__(self) -> int:
        return self.items.shape[0]


def windows(x: Interactions, starts: np.ndarray, ends: np.ndarray, length: int,
            gaps: np.ndarray | None = None) -> Windows:
    """Rows [max(start, end - length), end) of each (start, end), right-aligned."""
    gaps = x.gap_buckets() if gaps is None else gaps
    idx = ends[:, None] - length + np.arange(length)[None, :]
    valid = idx >= starts[:, None]
    idx = np.where(valid, idx, 0)

    def take(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.where(valid, a[idx], 0).astype(np.int64))

    rows = torch.from_numpy(np.where(valid, idx, -1).astype(np.int64))
    return Windows(take(x.item), take(x.etype), take(gaps), rows)


def training_windows(x: Interactions, train_mask: np.ndarray, max_len: int) -> Windows:
    """Each user's training rows cut into windows of max_len + 1 from the most recent backwards
    (consecutive windows share one row, so every next-item target is predicted exactly once)."""
    tr = x.select(train_mask)
    b = tr.user_bounds()
    n = np.diff(b)
    count = np.where(n >= 2, (n - 2) // max_len + 1, 0)  # windows per user: ends e, e - L, ...
    owner, step = ranges(np.zeros_like(count), count)
    starts, ends = b[:-1][owner], b[1:][owner] - step * max_len
    w = windows(tr, starts.astype(np.int64), ends.astype(np.int64), max_len + 1,
                tr.gap_buckets())
    # map rows of the training subset back to rows of x (user features are looked up by row)
    orig = np.flatnonzero(train_mask)
    w.rows = torch.where(w.rows >= 0, torch.from_numpy(orig)[w.rows.clamp(min=0)], -1)
    return w


def window_times(ts: np.ndarray, rows: torch.Tensor) -> torch.Tensor:
    """Seconds of each position since its window's earliest row (float32 stays exact to well
    under a second over months); 0 at padding."""
    valid = rows >= 0
    r = rows.clamp(min=0).numpy()
    t = np.where(valid.numpy(), ts[r], np.iinfo(np.int64).max)
    first = t.min(axis=1, keepdims=True)
    sec = np.where(valid.numpy(), (t - first) / 1e6, 0.0)
    return torch.from_numpy(sec.astype(np.float32))
