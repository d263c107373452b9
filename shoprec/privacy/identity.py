"""A user as the forget log and the models' trained-user sets know them: HMAC-SHA256 of the id
under the settings' key. A plain hash of a short id is guessed by hashing every candidate; a keyed
one cannot be without the key, which lives in settings or in SHOPREC_HOME/secrets, never in the
repository."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Iterable

from shoprec.config import Settings
from shoprec.names import UsageError

TOKEN_PREFIX = "hmac:"  # `forget hmac:<hex>`: a request that names no raw id (Airflow's conf)


def key(settings: Settings) -> bytes:
    """The HMAC key: `privacy.key`, else the home's key file, created once (mode 0600)."""
    if settings.privacy.key is not None:
        return settings.privacy.key.get_secret_value().encode()
    path = settings.privacy_key_file()
    if not path.exists():
        _create_key(path)
    for _ in range(100):  # another process may have created it and not written it yet
        text = path.read_text().strip()
        if text:
            return text.encode()
        time.sleep(0.01)
    raise UsageError(f"{path}: the privacy key file is empty; delete it (nothing was "
                     "forgotten under it) or set SHOPREC_PRIVACY__KEY")


def _create_key(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # created by another process meanwhile: theirs is the key
        return
    try:
        os.write(fd, secrets.token_hex(32).encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def user_hmac(k: bytes, user_id: str) -> str:
    return hmac.new(k, user_id.encode(), hashlib.sha256).hexdigest()


def matching(k: bytes, ids: Iterable[str | None], wanted: set[str]) -> list[str]:
    """The ids among `ids` whose HMAC is in `wanted` (each distinct id hashed once)."""
    if not wanted:
        return []
    return [u for u in set(ids) if u is not None and user_hmac(k, u) in wanted]


def parse_request(k: bytes, user: str) -> str:
    """`USER_ID` or `hmac:<64 hex>` → the user's HMAC (raises UsageError, one line)."""
    if user.startswith(TOKEN_PREFIX):
        token = user[len(TOKEN_PREFIX):]
        if len(token) != 64 or any(c not in "0123456789abcdef" for c in token):
            raise UsageError("hmac:<token>: the token is 64 lowercase hex digits, as "
                             "`shoprec privacy token USER_ID` prints it")
        return token
    from serving.events import id_problem

    problem = id_problem(user)
    if problem:
        raise UsageError(f"user_id {user[:80]!r}: {problem}")
    return user_hmac(k, user)
