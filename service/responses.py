"""JSON responses serialized with orjson (several times faster than the stdlib for vectors)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        # NaN/Inf would become null under orjson; the engine never returns them for
        # finite inputs, and OPT_SERIALIZE_NUMPY covers stray numpy scalars and arrays.
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
