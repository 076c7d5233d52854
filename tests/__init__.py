"""LAM's tests, importable as a package (`from tests.harness import LamServer`,
`from tests.reference import ...`): pyproject sets pytest's pythonpath to the repository root."""
