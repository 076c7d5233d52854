"""`python -m lam_client.cli` is `lam`."""

from . import app

app()
