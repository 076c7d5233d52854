"""The fixed-width key that the memories' id index holds instead of the id (schema v4).

``key`` is a signed 64-bit integer: the first 8 bytes of SHA-256(secret, bank, id), with a
random secret drawn once per store (``meta.id_key``). The memories' unique index is over
the key alone (the bank is hashed in, not repeated in every index entry). A key is a
hash, not an identity: two (bank, id) pairs may share one (for a million rows the chance
of any shared key is about 3e-8; at a billion, a few per cent), so every lookup verifies
the bank and full id that the row still holds as text, and the second row of a shared
key is *spilled*: stored with key NULL, found among the few such rows (rows.py keeps the
rule that a spilled row's key slot is always held by another row, so the unique index
still refuses an ``all_new`` insert of a stored id). The secret keeps the keys
unpredictable, so nobody can craft ids that pile up as spilled rows to slow lookups.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Sequence

import numpy as np

SECRET_BYTES = 16


def new_secret() -> str:
    return os.urandom(SECRET_BYTES).hex()


def read_secret(conn: sqlite3.Connection) -> bytes | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'id_key'").fetchone()
    return None if row is None else bytes.fromhex(str(row[0]))


class IdKeys:
    """Computes the keys of one store (its secret)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def keys(self, bank: str, ids: Sequence[str]) -> list[int]:
        # SHA-256 (OpenSSL) from a copied prefix state: 0.5 us an id; keyed BLAKE2b costs
        # 2.6 us, a Python int per digest 1 us more (hence one numpy view for the batch).
        b = bank.encode()
        # Length-prefixed: (bank, id) pairs never collide by where the bank ends.
        base = hashlib.sha256(self._secret + len(b).to_bytes(8, "little") + b)
        digests = []
        for i in ids:
            h = base.copy()
            h.update(i.encode())
            digests.append(h.digest())
        keys: list[int] = np.frombuffer(b"".join(digests), dtype="<i8")[::4].tolist()
        return keys

    def key(self, bank: str, id_: str) -> int:
        """One id's key (the migration's SQL function): the same value as `keys`."""
        b = bank.encode()
        h = hashlib.sha256(self._secret + len(b).to_bytes(8, "little") + b + id_.encode())
        return int.from_bytes(h.digest()[:8], "little", signed=True)
