"""Fixtures of the reliability suite: real `python -m service` processes on loopback ports.

Starting the service costs a few seconds (torch import), so servers that tests can share are
module-scoped; tests that kill or fill their server get their own (tests/harness).
"""

from __future__ import annotations

from tests.harness.fixtures import make_module_server as make_module_server
from tests.harness.fixtures import make_server as make_server
from tests.harness.fixtures import session_server

# One default-settings server for the concurrency and load tests (no kills, no limits).
shared_server = session_server("shared_server", {})
