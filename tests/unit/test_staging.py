"""Appends staged beside their commit (stager.py, MemoryBank.stage): the same bank as a
plain append, nothing visible before the commit, nothing kept after a failed one."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from lam_engine import BankConfig, Engine, MemoryNotFoundError, StorageError, stager
from lam_engine.bank import MemoryBank
from lam_engine.bulk import Staged
from tests import reference as oracle

D = 64
ROWS = stager.MIN_STAGE_BYTES // (4 * D) + 1  # the smallest batch that is staged


def _xi(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, D), dtype=np.float32)


def _states(engine: Engine, v: np.ndarray, beta: float) -> np.ndarray:
    return np.stack([r.state for r in engine.query("b", v, beta=beta).results])


@pytest.fixture
def engine() -> Engine:
    e = Engine.open(None)
    yield e
    e.close()


def test_staged_appends_equal_the_stored_vectors(engine: Engine, monkeypatch) -> None:
    staged: list[Staged | None] = []
    finish = stager.finish
    monkeypatch.setattr(stager, "finish", lambda f: staged.append(finish(f)) or staged[-1])
    engine.create_bank("b", BankConfig(dim=D))
    parts = [_xi(ROWS, s) for s in range(5)]  # grows the tensor on the way (64 rows at first)
    for k, x in enumerate(parts):
        engine.upsert("b", x, ids=[f"{k}-{i}" for i in range(len(x))])
    assert all(s is not None for s in staged), "every batch was staged"
    bank = engine._banks["b"].bank
    want = np.concatenate(parts)
    assert bank.count == len(want)
    np.testing.assert_array_equal(bank.xi.numpy(), want)
    v = want[[3, ROWS + 7]] + 0.1
    np.testing.assert_allclose(
        _states(engine, v, 2.0),
        oracle.step(want.astype(np.float64), v.astype(np.float64), 2.0),
        rtol=1e-4, atol=1e-5,
    )  # fmt: skip


def test_small_batches_and_replacements_are_not_staged(engine: Engine, monkeypatch) -> None:
    starts: list[object] = []
    start = stager.start
    monkeypatch.setattr(stager, "start", lambda b, v: starts.append(start(b, v)) or starts[-1])
    engine.create_bank("b", BankConfig(dim=D))
    x = _xi(ROWS, 0)
    engine.upsert("b", x[:10], ids=[f"m{i}" for i in range(10)])  # small: copied in apply
    engine.upsert("b", x, ids=[f"m{i}" for i in range(ROWS)])  # replaces m0..m9: not staged
    assert starts == [None]  # only the first called start (below the size); the second did not
    np.testing.assert_array_equal(engine._banks["b"].bank.xi.numpy(), x)


def test_failed_commit_keeps_nothing_staged(engine: Engine, monkeypatch) -> None:
    engine.create_bank("b", BankConfig(dim=D))
    first = _xi(ROWS, 1)
    engine.upsert("b", first, ids=[f"a{i}" for i in range(ROWS)])

    def fail(*args, **kwargs):
        raise StorageError("disk full")

    with monkeypatch.context() as m:
        m.setattr(engine.storage, "upsert", fail)
        with pytest.raises(StorageError):
            engine.upsert("b", _xi(ROWS, 2), ids=[f"x{i}" for i in range(ROWS)])
    assert engine.bank_info("b").count == ROWS
    with pytest.raises(MemoryNotFoundError):
        engine.get_memory("b", "x0")
    again = _xi(ROWS, 3)  # the next append takes the rows the failed one had staged into
    engine.upsert("b", again, ids=[f"c{i}" for i in range(ROWS)])
    np.testing.assert_array_equal(
        engine._banks["b"].bank.xi.numpy(), np.concatenate([first, again])
    )


def test_readers_never_see_staged_rows(engine: Engine, monkeypatch) -> None:
    """A query during the commit answers from the rows stored before it (the store is held
    until the query has run, so the staged copy is done by then)."""
    engine.create_bank("b", BankConfig(dim=D))
    first = _xi(ROWS, 4)
    engine.upsert("b", first, ids=[f"a{i}" for i in range(ROWS)])
    in_commit, release = threading.Event(), threading.Event()
    upsert = engine.storage.upsert

    def slow_upsert(*args, **kwargs):
        in_commit.set()
        assert release.wait(30)
        return upsert(*args, **kwargs)

    monkeypatch.setattr(engine.storage, "upsert", slow_upsert)
    writer = threading.Thread(
        target=engine.upsert,
        args=("b", _xi(ROWS, 5)),
        kwargs={"ids": [f"b{i}" for i in range(ROWS)]},
    )
    writer.start()
    try:
        assert in_commit.wait(30)
        v = first[:2] + 0.05
        got = _states(engine, v, 3.0)
        assert engine.bank_info("b").count == ROWS
    finally:
        release.set()
        writer.join(30)
    np.testing.assert_allclose(
        got, oracle.step(first.astype(np.float64), v.astype(np.float64), 3.0), rtol=1e-4, atol=1e-5
    )
    assert engine.bank_info("b").count == 2 * ROWS


def test_apply_copies_rows_a_stale_stage_does_not_hold() -> None:
    """A Staged of another tensor, or of other rows, is ignored: apply copies the batch."""
    bank = MemoryBank(BankConfig(dim=D), torch.device("cpu"))
    x = _xi(ROWS, 6)
    other_tensor = Staged(torch.zeros(ROWS, D), 0, ROWS)  # the right rows of another tensor
    bank.apply(bank.prepare(x, [f"m{i}" for i in range(ROWS)]), list(range(ROWS)), other_tensor)
    np.testing.assert_array_equal(bank.xi.numpy(), x)
    other_rows = Staged(bank._xi, 0, ROWS)  # the bank's tensor, rows already memories
    bank.apply(
        bank.prepare(x + 1, [f"n{i}" for i in range(ROWS)]), list(range(ROWS, 2 * ROWS)), other_rows
    )
    np.testing.assert_array_equal(bank.xi.numpy(), np.concatenate([x, x + 1]))


def test_a_sharded_bank_is_not_staged_and_stores_the_same(engine: Engine, monkeypatch) -> None:
    """Its rows go to their shards by id in apply: no stage is started for it."""
    starts: list[object] = []
    start = stager.start
    monkeypatch.setattr(stager, "start", lambda b, v: starts.append(start(b, v)) or starts[-1])
    engine.create_bank("s", BankConfig(dim=D, shards=3))
    x = _xi(ROWS, 7)
    engine.upsert("s", x, ids=[f"m{i}" for i in range(ROWS)])
    assert starts == [None]
    got = np.stack([engine.get_memory("s", f"m{i}").vector for i in (0, ROWS // 2, ROWS - 1)])
    np.testing.assert_array_equal(got, x[[0, ROWS // 2, ROWS - 1]])
