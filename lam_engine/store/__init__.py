"""The durable side: SQLite store of banks and memories, snapshots, the data-dir lock.

storage.py (the Storage class: durability, transactions, CRUD), schema.py (layout),
migrate.py (versions 1 and 2 → 3, VACUUM), load.py (streaming a bank out), rows.py
(batches as rows), codec.py (the one JSON codec), space.py (the disk-reserve policy),
snapshot.py (the portable file), lock.py (one opener per data directory).
"""

from .load import LoadedBank, VectorSink
from .lock import DataDirLock
from .schema import PAGE_SIZE, SCHEMA_VERSION
from .snapshot import Snapshot, read_snapshot, write_snapshot
from .storage import BankRecord, Storage

__all__ = [
    "PAGE_SIZE",
    "SCHEMA_VERSION",
    "BankRecord",
    "DataDirLock",
    "LoadedBank",
    "Snapshot",
    "Storage",
    "VectorSink",
    "read_snapshot",
    "write_snapshot",
]
