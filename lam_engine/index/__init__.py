"""FAISS candidate prefilter of a bank: the only package of the project that imports faiss.

base.py (the `Prefilter` protocol, inputs validated once), one class per kind (flat.py,
ivf.py, hnsw.py; kinds.py picks one by name), files.py (the saved-index format), catalog.py
(which saved index the engine trusts: by store write generation), runtime.py (FAISS's
process-wide settings: `setup_faiss`, called by `lam_engine.setup()`, never at import).
The missed-mass certificate of the candidates is math/bound.py.
"""

from .base import Prefilter
from .catalog import IndexCatalog
from .files import SavedIndexUnusable, load_index, prune_saved, remove_saved, save_index
from .flat import FlatPrefilter
from .hnsw import HNSW_MAX_TOMBSTONE_FRACTION, HnswPrefilter
from .ivf import IVF_MAX_POINTS_PER_LIST, IVF_MIN_TRAIN, IVF_RETRAIN_GROWTH, IvfPrefilter
from .kinds import KINDS, make_prefilter
from .runtime import set_threads, setup_faiss

__all__ = [
    "HNSW_MAX_TOMBSTONE_FRACTION",
    "IVF_MAX_POINTS_PER_LIST",
    "IVF_MIN_TRAIN",
    "IVF_RETRAIN_GROWTH",
    "KINDS",
    "FlatPrefilter",
    "HnswPrefilter",
    "IndexCatalog",
    "IvfPrefilter",
    "Prefilter",
    "SavedIndexUnusable",
    "load_index",
    "make_prefilter",
    "prune_saved",
    "remove_saved",
    "save_index",
    "set_threads",
    "setup_faiss",
]
