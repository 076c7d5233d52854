"""The native pass (csrc/lam_pass.c), IVF scan (csrc/lam_ivf.c) and certified int8 flat
search (csrc/lam_sq8.c): C compiled once per machine into one library, called through ctypes.

torch's CPU GEMMs (MKL, oneDNN) run skinny products far below this machine's limits
(measured on a 2-core AVX2 EPYC, N = 10⁵ × 384: B = 4 at ~25 % of the read bandwidth,
B = 16 at ~25 % of the FMA rate), and the chunked pass adds a softmax over the (B, N)
logits in separate sweeps. The C pass streams Ξ once per pass with the softmax, the top-k
and Ξᵀ e fused (see the source's header), in float32 on the stored values.

It is built with the system's C compiler into a cache directory (`LAM_NATIVE_CACHE`, else
`$XDG_CACHE_HOME/lam/native`, else `~/.cache/lam/native`), named by a hash of the source
and flags, at install (`python -m lam_engine.kernels.build`, which the Makefile runs) or
at first use. Where it cannot be used (no compiler, a CPU without AVX2/FMA/F16C, another
architecture, `LAM_NATIVE_KERNELS=0`) the torch passes run instead: same answers to
float32 rounding, slower.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .cpu import cpu_flags

log = logging.getLogger("lam.engine")

_CSRC = Path(__file__).with_name("csrc")
SOURCES = tuple(_CSRC / name for name in ("lam_pass.c", "lam_ivf.c", "lam_sq8.c"))
HEADERS = (_CSRC / "lam_heap.h",)
CFLAGS = ("-O3", "-mavx2", "-mfma", "-mf16c", "-fPIC", "-shared", "-pthread", "-std=c11")
NEEDED_CPU = ("avx2", "fma", "f16c")
DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
# Multiply-adds per thread below which one more thread costs more (≈ 30 µs to start and
# join) than it saves.
_MACS_PER_THREAD = 1 << 21
# The same for the IVF scan, whose rows stream at ≈ 6 GB/s rather than at the FMA rate:
# 2¹⁸ multiply-adds are ≈ 1 MB of lists, ≈ 170 µs on one thread.
_SCAN_MACS_PER_THREAD = 1 << 18
_enabled = os.environ.get("LAM_NATIVE_KERNELS", "1").lower() not in ("0", "false", "off", "no")


def set_enabled(on: bool) -> None:
    """Use the native pass where it can run (the default) or never (`lam_engine.setup`)."""
    global _enabled
    _enabled = on


def cache_dir() -> Path:
    if env := os.environ.get("LAM_NATIVE_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lam" / "native"


def _compiler() -> list[str] | None:
    """The C compiler: $CC (a command line, e.g. `python -m ziglang cc`, the PyPI compiler
    the Docker image builds with), else cc or gcc on the PATH."""
    if cc := os.environ.get("CC"):
        return shlex.split(cc)
    found = shutil.which("cc") or shutil.which("gcc")
    return [found] if found else None


def library_path() -> Path:
    text = b"".join(src.read_bytes() for src in SOURCES + HEADERS) + " ".join(CFLAGS).encode()
    key = hashlib.sha256(text).hexdigest()[:16]
    return cache_dir() / f"lam_pass-{key}.so"


@functools.lru_cache(maxsize=1)
def cpu_ok() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return all(flag in cpu_flags() for flag in NEEDED_CPU)


def build() -> Path | None:
    """The compiled library, built if missing; None (and why, logged) where it cannot be."""
    path = library_path()
    if path.exists():
        return path
    cc = _compiler()
    if cc is None or not cpu_ok():
        log.info("native pass unavailable: %s", "no C compiler" if cc is None else "CPU flags")
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("native pass not built (%s)", exc)
        return None
    # Built beside its final name and renamed: processes that build at once never load a
    # half-written file.
    fd, tmp = tempfile.mkstemp(suffix=".so.tmp", dir=path.parent)
    os.close(fd)
    try:
        proc = subprocess.run(
            [*cc, *CFLAGS, "-o", tmp, *map(str, SOURCES), "-lm"], capture_output=True, text=True
        )
        if proc.returncode != 0:
            log.warning("native pass did not compile: %s", proc.stderr[-2000:])
            return None
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("native pass not built (%s)", exc)
        return None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    path = build()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))  # CDLL releases the GIL during calls
    except OSError as exc:
        log.warning("native pass not loaded (%s)", exc)
        return None
    fn = lib.lam_pass
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    fn.argtypes = [ptr, ctypes.c_int, i64, i64, ptr, i64, ptr, ctypes.c_float, ctypes.c_int,
                   ctypes.c_int, ctypes.c_int, ptr, ptr, ptr, ptr, ptr]  # fmt: skip
    fn.restype = ctypes.c_int
    fn = lib.lam_ivf_search
    fn.argtypes = [ptr, i64, i64, ptr, i64, i64, ptr, ptr, ptr, i64, ctypes.c_int, ptr, ptr]
    fn.restype = ctypes.c_int
    fn = lib.lam_sq8_search
    fn.argtypes = [ptr, i64, i64, ptr, i64, ptr, ptr, ptr, ptr, i64, i64, i64, ctypes.c_int,
                   ctypes.c_int, ptr, ptr, ptr]  # fmt: skip
    fn.restype = ctypes.c_int
    fn = lib.lam_sq8_encode
    fn.argtypes = [ptr, i64, i64, i64, i64, ptr, ptr, ptr, ptr, ctypes.c_int]
    fn.restype = ctypes.c_int
    return lib


def available() -> bool:
    return _enabled and cpu_ok() and _library() is not None


def usable(xi: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether the native pass runs for memories `xi` and states `v` (CPU, known dtype)."""
    return (
        _enabled
        and xi.device.type == "cpu"
        and v.device.type == "cpu"
        and xi.dtype in DTYPES
        and xi.is_contiguous()
        and xi.shape[0] > 0
        and available()
    )


@dataclass
class NativePartials:
    m: torch.Tensor  # (B,) base-2 max logit, −inf for an empty support
    s: torch.Tensor  # (B,) Σ 2^(a − m)
    out: torch.Tensor  # (B, d) Σ 2^(a − m) ξ, or (B, 0)
    top_l: torch.Tensor  # (B, k) base-2 logits, descending
    top_r: torch.Tensor  # (B, k) rows, −1 for none


def native_pass(
    xi: torch.Tensor,
    v2: torch.Tensor,
    bias: torch.Tensor | None,
    bias_scale: float,
    k: int,
    need_out: bool,
) -> NativePartials:
    """The C pass over all rows of `xi` for base-2 scaled states `v2` (B, d) float32 and a
    `bias` (N,) float32 or None that enters the logits times `bias_scale` (1/ln 2: base 2).
    Raises MemoryError if the C side could not allocate."""
    lib = _library()
    assert lib is not None
    n, d = xi.shape
    b = v2.shape[0]
    f32 = torch.float32
    v2 = v2.to(f32).contiguous()
    if bias is not None:
        bias = bias.to(f32).contiguous()
    m = torch.empty(b, dtype=f32)
    s = torch.empty(b, dtype=f32)
    out = torch.empty(b, d if need_out else 0, dtype=f32)
    top_l = torch.empty(b, k, dtype=f32)
    top_r = torch.empty(b, k, dtype=torch.int64)
    threads = int(max(1, min(torch.get_num_threads(), n * d * b // _MACS_PER_THREAD)))
    rc = lib.lam_pass(
        xi.data_ptr(), DTYPES[xi.dtype], n, d, v2.data_ptr(), b,
        None if bias is None else bias.data_ptr(), bias_scale, k, int(need_out), threads,
        m.data_ptr(), s.data_ptr(), out.data_ptr() if need_out else None,
        top_l.data_ptr(), top_r.data_ptr(),
    )  # fmt: skip
    if rc != 0:
        raise MemoryError("the native pass could not allocate its buffers")
    return NativePartials(m, s, out, top_l, top_r)


@dataclass(frozen=True)
class IvfLists:
    """Where an IVF index's parts lie: addresses valid while the index is not mutated."""

    centroids: np.ndarray  # (nlist, d) float32, a view of the quantizer's own memory
    codes: np.ndarray  # (nlist,) int64 address of each list's float32 rows
    ids: np.ndarray  # (nlist,) int64 address of each list's int64 ids
    sizes: np.ndarray  # (nlist,) int64 rows per list
    mean_rows: float  # sizes.mean(): each search sizes its threads by it


def ivf_search(
    lists: IvfLists, queries: np.ndarray, nprobe: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(scores (B, k) float32, ids (B, k) int64) of csrc/lam_ivf.c, descending, padded with
    (−inf, −1): faiss.IndexIVFFlat's inner-product search, over the same memory."""
    lib = _library()
    assert lib is not None
    b, d = queries.shape
    q = np.ascontiguousarray(queries, dtype=np.float32)
    scores = np.empty((b, k), dtype=np.float32)
    ids = np.empty((b, k), dtype=np.int64)
    macs = b * int(lists.mean_rows * min(nprobe, lists.sizes.size)) * d
    threads = int(max(1, min(torch.get_num_threads(), macs // _SCAN_MACS_PER_THREAD)))
    rc = lib.lam_ivf_search(
        q.ctypes.data, b, d, lists.centroids.ctypes.data, lists.sizes.size, nprobe,
        lists.codes.ctypes.data, lists.ids.ctypes.data, lists.sizes.ctypes.data, k, threads,
        scores.ctypes.data, ids.ctypes.data,
    )  # fmt: skip
    if rc != 0:
        raise MemoryError("the IVF scan could not allocate its buffers")
    return scores, ids


@dataclass(frozen=True)
class Sq8Rows:
    """A flat index's memories as csrc/lam_sq8.c reads them (index/sq8.py builds the codes);
    the float32 rows may be a view of the FAISS index's own memory."""

    codes: np.ndarray  # (blocks, dp/4, 16, 4) int8, dp a multiple of 4 (index/sq8.py)
    scale: np.ndarray  # (≥ 16·⌈n/16⌉,) float32: ξ̃ = scale · codes
    err: np.ndarray  # (same) float32 ≥ ‖ξ − ξ̃‖ plus the rounding allowance
    nrm: np.ndarray  # (same) float32 ≥ ‖ξ̃‖
    rows: np.ndarray  # (n, d) float32, the exact memories

    @functools.cached_property
    def addresses(self) -> tuple[int, int, int, int, int]:
        """Where codes, scale, err, nrm and rows lie; a view is kept for many searches
        (index/flat.py), and each `.ctypes` is a Python object made per call."""
        arrays = (self.codes, self.scale, self.err, self.nrm, self.rows)
        codes, scale, err, nrm, rows = (int(a.ctypes.data) for a in arrays)
        return codes, scale, err, nrm, rows


def sq8_search(
    mem: Sq8Rows, queries: np.ndarray, k: int, m: int, *, avx2_only: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores (B, k) float32, rows (B, k) int64, scored (B,) int64) of csrc/lam_sq8.c: the
    exact top-k inner products, descending, padded with (−inf, −1) beyond n; `scored` is how
    many exact scores each query took (m candidates to start with). The int8 dot products
    use AVX-512 VNNI where the CPU has it, unless `avx2_only`."""
    lib = _library()
    assert lib is not None
    n, d = mem.rows.shape
    b = queries.shape[0]
    q = np.ascontiguousarray(queries, dtype=np.float32)
    scores = np.empty((b, k), dtype=np.float32)
    rows = np.empty((b, k), dtype=np.int64)
    scored = np.empty(b, dtype=np.int64)
    dp = 4 * mem.codes.shape[1]
    work = b * n * dp  # bytes of codes read, one per multiply-add
    threads = int(max(1, min(torch.get_num_threads(), work // _SCAN_MACS_PER_THREAD)))
    codes, scale, err, nrm, xb = mem.addresses
    rc = lib.lam_sq8_search(
        q.ctypes.data, b, d, codes, dp, scale, err, nrm, xb, n, m, k, threads, int(avx2_only),
        scores.ctypes.data, rows.ctypes.data, scored.ctypes.data,
    )  # fmt: skip
    if rc != 0:
        raise MemoryError("the int8 flat search could not allocate its buffers")
    return scores, rows, scored


def sq8_encode(
    vectors: np.ndarray,
    start: int,
    codes: np.ndarray,
    scale: np.ndarray,
    err: np.ndarray,
    nrm: np.ndarray,
) -> bool:
    """Write the codes of float32 rows `vectors` (c, d) at rows start … start + c − 1 of the
    blocked `codes` and of `scale`, `err`, `nrm` (as in `Sq8Rows`; csrc/lam_sq8.c, threaded);
    False where the library cannot be built or loaded here. Runs
    whenever the library loads, even while the native searches are switched off
    (`set_enabled`): the codes must follow every row for when they are switched on again."""
    lib = _library() if cpu_ok() else None
    if lib is None:
        return False
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    c, d = x.shape
    dp = 4 * codes.shape[1]
    for arr, dtype in ((codes, np.int8), (scale, np.float32), (err, np.float32), (nrm, np.float32)):
        if arr.dtype != dtype or not arr.flags.c_contiguous:
            raise ValueError("sq8_encode writes into C-contiguous int8 / float32 arrays")
    if start < 0 or start + c > min(scale.size, err.size, nrm.size, codes.shape[0] * 16):
        raise ValueError(f"rows {start} … {start + c - 1} do not fit the arrays")
    threads = int(max(1, min(torch.get_num_threads(), c * d // _SCAN_MACS_PER_THREAD)))
    rc = lib.lam_sq8_encode(
        x.ctypes.data, c, d, dp, start, codes.ctypes.data, scale.ctypes.data, err.ctypes.data,
        nrm.ctypes.data, threads,
    )  # fmt: skip
    if rc != 0:
        raise MemoryError("the int8 codes could not be built")
    return True


def main() -> int:
    """Build now (`python -m lam_engine.kernels.build`, which the install runs); exit 0
    either way, since the torch passes stand in where it cannot be built."""
    path = build()
    print(f"native pass: {path}" if path else "native pass: not built (torch passes are used)")
    return 0
