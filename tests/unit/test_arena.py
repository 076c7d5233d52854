"""A CPU bank past arena.MIN_BYTES grows as a longer view of one reserved mapping (arena.py):
the rows are never copied again, readers of the shorter view still read them, and where no
mapping can be made, or after a compaction, growth copies as before with the same rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lam_engine import BankConfig, Engine, arena
from lam_engine.bank import MemoryBank

D = 16


def _xi(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, D), dtype=np.float32)


@pytest.fixture
def small_min(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arena, "MIN_BYTES", 64 * D * 4)  # past 64 rows


def _fill(engine: Engine, batches: int, rows: int = 50) -> tuple[MemoryBank, list[int]]:
    """Store `batches` batches; returns the bank and its tensor's address after each."""
    engine.create_bank("b", BankConfig(dim=D, beta=4.0))
    bank = engine._banks["b"].bank
    addresses = []
    for k in range(batches):
        engine.upsert("b", _xi(rows, k), ids=[f"m{k}-{i}" for i in range(rows)])
        addresses.append(bank._xi.data_ptr())
    return bank, addresses


def test_growth_past_the_threshold_keeps_the_rows_in_place(small_min: None) -> None:
    with Engine.open(None) as engine:
        bank, addresses = _fill(engine, 40)
        assert bank._arena is not None and bank._xi.shape[0] >= 2000
        # From the first growth into the mapping on, the tensor never moves.
        first = addresses.index(bank._arena.base)
        assert first < 5 and set(addresses[first:]) == {bank._arena.base}
        want = np.concatenate([_xi(50, k) for k in range(40)])
        np.testing.assert_array_equal(bank.xi.numpy(), want)
        ids = [f"m{k}-{i}" for k in range(40) for i in range(50)]
        got = engine.query("b", want[:3], top_k=1, steps=0)  # the pass reads the mapping
        best = np.argmax(want[:3] @ want.T, axis=1)
        assert [r.matches[0].id for r in got.results] == [ids[j] for j in best]


def test_a_reader_of_the_shorter_view_still_reads_its_rows(small_min: None) -> None:
    with Engine.open(None) as engine:
        bank, _ = _fill(engine, 4)
        held = bank.xi  # as a query holds it during a write
        before = held.clone()
        for k in range(4, 30):
            engine.upsert("b", _xi(50, k), ids=[f"m{k}-{i}" for i in range(50)])
        assert bank._xi.shape[0] > held.shape[0]
        torch.testing.assert_close(held, before, rtol=0, atol=0)


def test_without_a_mapping_growth_copies_the_same_rows(
    small_min: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(nbytes: int) -> None:
        raise OSError(12, "Cannot allocate memory")  # as under vm.overcommit_memory = 2

    monkeypatch.setattr(arena, "RowArena", refuse)
    with Engine.open(None) as engine:
        bank, addresses = _fill(engine, 20)
        assert bank._arena is None and len(set(addresses)) > 3  # it moved at each growth
        np.testing.assert_array_equal(
            bank.xi.numpy(), np.concatenate([_xi(50, k) for k in range(20)])
        )


def test_after_a_compaction_growth_starts_a_new_mapping(small_min: None) -> None:
    with Engine.open(None) as engine:
        bank, _ = _fill(engine, 20)
        old = bank._arena
        engine.delete_memories("b", [f"m{k}-{i}" for k in range(0, 20, 2) for i in range(50)])
        assert bank._xi.data_ptr() != old.base  # compacted into a plain tensor
        for k in range(20, 60):
            engine.upsert("b", _xi(50, k), ids=[f"m{k}-{i}" for i in range(50)])
        assert bank._arena is not None and bank._arena is not old
        want = np.concatenate([_xi(50, k) for k in [*range(1, 20, 2), *range(20, 60)]])
        np.testing.assert_array_equal(bank.xi.numpy(), want)


def test_a_bank_that_outgrows_its_mapping_is_copied_into_a_larger_one(small_min: None) -> None:
    old = torch.arange(100 * D, dtype=torch.float32).view(100, D)
    small = arena.RowArena(200 * D * 4)
    view = small.rows(200, D, torch.float32)
    assert view is not None
    view[:100] = old
    same, kept = arena.grow(view, 100, 150, small)
    assert kept is small and same.data_ptr() == small.base  # fits: a longer view
    bigger, fresh = arena.grow(same, 100, 400, small)  # 400 rows do not fit in 200
    assert fresh is not None and fresh is not small and bigger.shape == (400, D)
    torch.testing.assert_close(bigger[:100], old, rtol=0, atol=0)


def test_small_banks_and_device_dtypes_grow_as_before() -> None:
    with Engine.open(None) as engine:  # the default threshold: 16 MiB, far above this bank
        bank, _ = _fill(engine, 10)
        assert bank._arena is None
    for dtype in ("bfloat16", "float16"):
        b = MemoryBank(BankConfig(dim=D, beta=4.0, dtype=dtype), torch.device("cpu"))
        b._reserve(10_000_000 // D)  # 20 MB of half rows: past the threshold
        assert b._arena is not None and b._xi.dtype == b.dtype
        assert b._xi.shape == (10_000_000 // D, D)


def _thp_mode() -> str | None:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else None


def _smaps_entry(address: int) -> dict[str, str]:
    """The /proc/self/smaps fields of the mapping that holds `address`."""
    fields: dict[str, str] = {}
    inside = False
    with Path("/proc/self/smaps").open() as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= address < hi
            elif inside:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    return fields


@pytest.mark.skipif(
    arena._MADV_HUGEPAGE is None or _thp_mode() not in ("madvise", "always"),
    reason="transparent huge pages are off on this machine or platform",
)
def test_the_mapping_is_advised_for_huge_pages() -> None:
    # madvise mode gives huge pages only to advised mappings: an arena without the advice
    # reads THPeligible 0 there, so this fails if the advice is dropped.
    a = arena.RowArena(64 << 20)
    fields = _smaps_entry(a.base)
    assert fields.get("THPeligible") == "1", fields
    rows = a.rows(1000, D, torch.float32)
    assert rows is not None
    rows[:] = 1.0  # the advice does not change what the mapping holds
    assert float(rows.sum()) == 1000 * D
