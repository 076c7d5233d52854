"""Bearer API keys with two roles: `read` (retrieval) and `write` (everything).

Keys come from LAM_API_KEYS ("key1:write,key2:read"). A presented key is compared with
every configured key through hmac.compare_digest, without stopping at the first match, so
the time taken does not reveal which key or how much of it matched. Keys are never logged.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

from .errors import ApiError

Role = Literal["read", "write"]
_ROLES: tuple[Role, ...] = ("read", "write")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="lam"'}


@dataclass(frozen=True)
class KeyTable:
    keys: tuple[tuple[bytes, Role], ...] = ()

    @classmethod
    def parse(cls, spec: str | None) -> KeyTable:
        """Parse "key:role,...". A bad entry is a startup error (ValueError) naming its position."""
        entries: list[tuple[bytes, Role]] = []
        for pos, item in enumerate((spec or "").split(",")):
            item = item.strip()
            if not item:
                continue
            key, sep, role = item.rpartition(":")
            if not sep or not key or role not in _ROLES:
                raise ValueError(f"LAM_API_KEYS entry #{pos + 1} must be 'key:read' or 'key:write'")
            entries.append((key.encode(), role))
        return cls(tuple(entries))

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def role_of(self, presented: bytes) -> Role | None:
        found: Role | None = None
        for key, role in self.keys:
            if hmac.compare_digest(presented, key) and found != "write":
                found = role
        return found

    def check(self, authorization: str | None, need: Role) -> None:
        """Raise 401 without a valid key, 403 when a read key meets a write route."""
        if not self.enabled:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401, "unauthorized", "missing API key: send Authorization: Bearer <key>",
                headers=_CHALLENGE,
            )  # fmt: skip
        role = self.role_of(token.strip().encode())
        if role is None:
            raise ApiError(401, "unauthorized", "invalid API key", headers=_CHALLENGE)
        if need == "write" and role != "write":
            raise ApiError(403, "forbidden", "this API key is read-only")


def _table(request: Request) -> KeyTable:
    return request.app.state.rt.keys


async def require_read(request: Request) -> None:
    _table(request).check(request.headers.get("authorization"), "read")


async def require_write(request: Request) -> None:
    _table(request).check(request.headers.get("authorization"), "write")
