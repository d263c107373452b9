"""Which users a model was trained on, kept only as a count and a set of keyed hashes: the export
holds `trained_users.bin` (sorted 16-byte prefixes of each user's HMAC), so `models list` can
mark the versions a forgotten user's data trained without any version naming anyone."""

from __future__ import annotations

from collections.abc import Iterable

from shoprec.privacy.identity import user_hmac

TRAINED_USERS = "trained_users.bin"
DIGEST_BYTES = 16
DESCRIPTION = (f"HMAC-SHA256 of each user id under the privacy key, first {DIGEST_BYTES} bytes, "
               "sorted, concatenated")


def hash_set(k: bytes, user_ids: Iterable[str]) -> bytes:
    return b"".join(sorted({bytes.fromhex(user_hmac(k, str(u)))[:DIGEST_BYTES]
                            for u in user_ids}))


def count_in(blob: bytes, hmacs: Iterable[str]) -> int:
    """How many of the users (HMAC hex, as the forget log holds them) the set contains."""
    import numpy as np

    if len(blob) % DIGEST_BYTES:
        raise ValueError(f"{TRAINED_USERS}: {len(blob)} bytes is not a whole number of "
                         f"{DIGEST_BYTES}-byte hashes")
    have = np.frombuffer(blob, dtype=f"S{DIGEST_BYTES}")
    want = np.array([bytes.fromhex(h)[:DIGEST_BYTES] for h in hmacs], dtype=f"S{DIGEST_BYTES}")
    if not len(have) or not len(want):
        return 0
    at = np.clip(np.searchsorted(have, want), 0, len(have) - 1)
    return int((have[at] == want).sum())
