"""One Bank protocol (lam_engine/banks.py): both kinds of bank implement it, and the engine
reads and writes them without asking which kind it holds."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from lam_engine import BankConfig
from lam_engine.bank import MemoryBank
from lam_engine.banks import Bank
from lam_engine.shards import ShardedBank

ROOT = Path(__file__).resolve().parents[2]


def test_both_kinds_of_bank_implement_the_protocol() -> None:
    cpu = torch.device("cpu")
    assert isinstance(MemoryBank(BankConfig(dim=3), cpu), Bank)
    assert isinstance(ShardedBank(BankConfig(dim=3, shards=2), cpu), Bank)


def test_the_engine_never_asks_which_kind_of_bank_it_holds() -> None:
    """No `isinstance(…, ShardedBank)` nor `getattr(bank, …)` dispatch outside the shards
    package; slot.new_slot is the one place that picks a kind (by the config)."""
    asks = re.compile(r"isinstance\([^)]*ShardedBank|getattr\(\s*bank\b")
    found = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in (ROOT / "lam_engine").rglob("*.py")
        if "shards" not in p.parts
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if asks.search(line)
    ]
    assert found == []
