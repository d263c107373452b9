"""Array idioms that replace per-user Python loops (and one slow numpy path)."""

from __future__ import annotations

import numpy as np


def unique(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values, by one sort. numpy 2.4's np.unique (without return_inverse)
    takes a hash path that is ~100x slower on int64: 6.8 s against 0.05 s for 7M values."""
    s = np.sort(values)
    return s[np.r_[True, s[1:] != s[:-1]]] if len(s) else s


def ranges(starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of many [start, stop) ranges at once: (which range, row) per row, in order."""
    starts = np.asarray(starts, dtype=np.int64)
    lens = np.asarray(stops, dtype=np.int64) - starts
    owner = np.repeat(np.arange(len(starts)), lens)
    return owner, np.arange(lens.sum()) + np.repeat(starts - (np.cumsum(lens) - lens), lens)
