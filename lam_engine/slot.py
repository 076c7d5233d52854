"""One bank as the engine holds it: memories on a device, its prefilter index, its locks."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field

import torch

from .bank import MemoryBank
from .banks import Bank
from .clock import SYSTEM_CLOCK, Clock
from .config import BankConfig, PrefilterConfig
from .errors import ClusterRequiredError, DeviceUnavailableError
from .index import Prefilter, make_prefilter
from .locks import RWLock
from .reads import ONE_BANK, SHARDED, Reads
from .results import BankInfo
from .shards import ShardedBank


def now() -> str:
    """The store's timestamp format: UTC, milliseconds, "Z"."""
    return (
        dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(f"device {name!r} requested but CUDA is not available")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"device {name!r} does not exist")
        return dev
    return torch.device("cpu")


@dataclass
class BankSlot:
    """A bank with its locks and optional prefilter index.

    Readers (queries) hold `lock` for reading; a write holds `writer` from its commit to the
    store until it is applied, and `lock` for writing while it changes `bank`/`prefilter`.
    """

    name: str
    bank: MemoryBank  # implements `Bank` (banks.py), as ShardedBank does
    created_at: str
    lock: RWLock = field(default_factory=RWLock)
    writer: threading.Lock = field(default_factory=threading.Lock)
    prefilter: Prefilter | None = None
    # Store write generation that `bank` and `prefilter` reflect; None when unknown (then
    # the index is never saved). Read and set under `writer`.
    generation: int | None = None
    # How the prefilter was made at open: "loaded" (saved index), "built", or None.
    index_origin: str | None = None
    # How query and energy run on `bank` (reads.py), chosen with the bank's kind.
    reads: Reads = ONE_BANK

    @property
    def config(self) -> BankConfig:
        return self.bank.config

    def info(self) -> BankInfo:
        return BankInfo(
            name=self.name,
            config=self.config,
            count=self.bank.count - len(self.bank.expired_rows(self.bank.clock.now())),
            memory_bytes=self.bank.memory_bytes,
            device=str(self.bank.device),
            created_at=self.created_at,
            index=self.bank.index_info(self.prefilter),
        )

    def rebuild_index(self) -> None:
        """Fill the (empty or stale) prefilter index from the bank's alive memories."""
        if self.prefilter is not None:
            fill_index(self.prefilter, self.bank)


def fill_index(index: Prefilter, bank: Bank) -> None:
    index.rebuild(bank.keys[bank.alive_rows()], bank.alive_vectors())


def empty_index(config: BankConfig, prefilter: PrefilterConfig) -> Prefilter | None:
    """A new, empty index for a bank of `config` (Model B only; kind "none": None).

    A sharded bank has none here: each of its shards keeps its own (shards/bank.py).
    """
    if prefilter.kind == "none" or config.model != "B" or config.shards > 1:
        return None
    return make_prefilter(prefilter, config.dim)


def device_for(config: BankConfig, default_device: str, *, on_load: bool) -> torch.device:
    name = config.device if config.device != "auto" else default_device
    if on_load and name.startswith("cuda") and not torch.cuda.is_available():
        # A bank made on a GPU host still loads (on CPU) on a host without one.
        return torch.device("cpu")
    return resolve_device(name)


def new_slot(
    name: str,
    config: BankConfig,
    created_at: str,
    *,
    default_device: str,
    on_load: bool,
    clock: Clock = SYSTEM_CLOCK,
) -> BankSlot:
    """An empty bank on its device, with an empty index if its config asks for one.

    `shards` > 1 makes a ShardedBank (in-process shards); replicas need a cluster.
    """
    if config.replicas > 1:
        raise ClusterRequiredError(
            "replicas > 1 needs cluster mode (LAM_CLUSTER=ray)", {"replicas": config.replicas}
        )
    device = device_for(config, default_device, on_load=on_load)
    sharded = config.shards > 1
    bank = ShardedBank(config, device, clock) if sharded else MemoryBank(config, device, clock)
    slot = BankSlot(
        name=name, bank=bank, created_at=created_at, reads=SHARDED if sharded else ONE_BANK
    )
    slot.prefilter = empty_index(config, config.prefilter)
    return slot
