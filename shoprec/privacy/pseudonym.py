"""What analysts see instead of a user: a keyed pseudonym, `p` + the first 24 hex digits of
HMAC-SHA256 under a key derived from the privacy key. Computed inside DuckDB (sha256 of the
padded key blocks, the HMAC construction itself) while the analysts' snapshot is written, so
the same user has the same pseudonym in every table and joins keep working. Session ids too:
a session derived by dbt is named after its user (`<user_id>~s<time>`)."""

from __future__ import annotations

import hashlib
import hmac

from shoprec.config import Settings

COLUMNS = ("user_id", "session_id")  # replaced by pseudonyms in the analysts' snapshot
DIGITS = 24  # 96 bits: no collision among billions of ids
PURPOSE = b"shoprec analysts' pseudonyms v1"


def analysts_key(settings: Settings) -> bytes:
    from shoprec.privacy.identity import key

    return hmac.new(key(settings), PURPOSE, hashlib.sha256).digest()


def pseudonym(k: bytes, value: str) -> str:
    """The pseudonym of one id, as the SQL of `sql` computes it."""
    return "p" + hmac.new(k, value.encode(), hashlib.sha256).hexdigest()[:DIGITS]


def sql(k: bytes, expr: str) -> str:
    """DuckDB SQL of the pseudonym of `expr` (NULL stays NULL). The key's blocks are hex
    literals of this statement only: DuckDB keeps no query text in the file."""
    block = k.ljust(64, b"\0")
    ipad = bytes(b ^ 0x36 for b in block).hex()
    opad = bytes(b ^ 0x5C for b in block).hex()
    inner = f"unhex(sha256(unhex('{ipad}') || encode(CAST({expr} AS VARCHAR))))"
    return f"('p' || left(sha256(unhex('{opad}') || {inner}), {DIGITS}))"


def select(k: bytes, qualified: str, columns: list[str], where: str) -> str:
    """The SELECT of a table's rows (those matching `where`) as analysts get them. Each distinct
    id is hashed once and joined back: at 10M events, HMAC per row took ~70 s per full write."""
    from shoprec.transform.snapshot_sync import ident

    ids = [c for c in columns if c in COLUMNS]
    if not ids:
        return f"SELECT * FROM {qualified} WHERE {where}"
    values = " UNION ALL ".join(f"SELECT CAST({ident(c)} AS VARCHAR) AS v FROM _rows"
                                for c in ids)
    joins = " ".join(f"LEFT JOIN _map m{i} ON m{i}.v = CAST(_rows.{ident(c)} AS VARCHAR)"
                     for i, c in enumerate(ids))
    swap = ", ".join(f"m{i}.p AS {ident(c)}" for i, c in enumerate(ids))
    return (f"WITH _rows AS (SELECT * FROM {qualified} WHERE {where}), "
            f"_ids AS (SELECT DISTINCT v FROM ({values}) WHERE v IS NOT NULL), "
            f"_map AS (SELECT v, {sql(k, 'v')} AS p FROM _ids) "
            f"SELECT _rows.* REPLACE ({swap}) FROM _rows {joins}")
