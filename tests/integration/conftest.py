"""A real server process (`python -m service`) for the integration tests, from the harness."""

from __future__ import annotations

from tests.harness.fixtures import session_server
from tests.harness.fuzz import FUZZ_ENV

live_server = session_server("live_server", FUZZ_ENV, clean_exit=True, timeout=60)
