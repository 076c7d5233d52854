"""Typed errors of the engine, and the ONE table of their HTTP statuses.

Each family carries its status as a class attribute (`status`); `service/errors.py` and the
embedded client read it from here. The engine itself never speaks HTTP: the number is part
of the contract of an error family, not of a transport.
"""

from __future__ import annotations

from typing import Any


class LamError(Exception):
    """Base of every error the engine raises on purpose."""

    code: str = "lam_error"
    status: int = 500  # a family without a status of its own is a server bug

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInputError(LamError):
    """A value out of range or of the wrong shape (HTTP 422)."""

    code = "invalid_input"
    status = 422


class DimensionMismatchError(InvalidInputError):
    code = "dimension_mismatch"


class NonFiniteError(InvalidInputError):
    code = "non_finite"


class InvalidParameterError(InvalidInputError):
    code = "invalid_parameter"


class EmptyBatchError(InvalidInputError):
    code = "empty_batch"


class DuplicateIdError(InvalidInputError):
    code = "duplicate_id"


class DeviceUnavailableError(InvalidInputError):
    code = "device_unavailable"


class ClusterRequiredError(InvalidInputError):
    """A bank setting that only a cluster can honour (replicas > 1 outside cluster mode)."""

    code = "cluster_required"


class NotFoundError(LamError):
    code = "not_found"
    status = 404


class BankNotFoundError(NotFoundError):
    code = "bank_not_found"


class MemoryNotFoundError(NotFoundError):
    code = "memory_not_found"


class ConflictError(LamError):
    code = "conflict"
    status = 409


class BankExistsError(ConflictError):
    code = "bank_exists"


class EmptyBankError(ConflictError):
    code = "empty_bank"


class EmptySelectionError(ConflictError):
    """A query or energy whose filter no memory passes: there is no softmax to take."""

    code = "empty_selection"


class DataDirLockedError(ConflictError):
    """Another live process (or another Engine of this one) holds the data directory."""

    code = "data_dir_locked"


class LimitExceededError(LamError):
    """A batch or body beyond a configured limit (HTTP 413)."""

    code = "limit_exceeded"
    status = 413


class NonconvexLagrangianError(InvalidInputError):
    """`/dynamics` on a bank whose Lagrangian has no PSD Hessian: its energy may rise."""

    code = "nonconvex_lagrangian"


class NumericOverflowError(InvalidInputError):
    """β·ξ·v (or an energy) of this request does not fit the bank's float arithmetic."""

    code = "numeric_overflow"


class SnapshotFormatError(InvalidInputError):
    code = "invalid_snapshot"


class StorageError(LamError):
    """The durable store cannot take the write (disk full, read-only): HTTP 507."""

    code = "storage_unavailable"
    status = 507
