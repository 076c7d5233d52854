"""The one place a prefilter kind's name picks its class."""

from __future__ import annotations

from ..config import PrefilterConfig
from ..errors import InvalidParameterError
from .base import Prefilter
from .flat import FlatPrefilter
from .hnsw import HnswPrefilter
from .ivf import IvfPrefilter

KINDS: dict[str, type[Prefilter]] = {
    cls.kind: cls for cls in (FlatPrefilter, IvfPrefilter, HnswPrefilter)
}


def make_prefilter(config: PrefilterConfig, dim: int) -> Prefilter:
    """An empty prefilter of `config.kind` over memories of dimension `dim`."""
    cls = KINDS.get(config.kind)
    if cls is None:
        raise InvalidParameterError(
            f"a Prefilter needs kind in {tuple(KINDS)}", {"kind": config.kind}
        )
    return cls(config, dim)
