"""Shared bits of the examples: import the SDK from a checkout, open a client, argparse."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
try:
    import lam_client  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

from lam_client import Client  # noqa: E402

DEFAULT_OUT = REPO / "docs" / "images"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help="where the PNG goes")
    p.add_argument("--url", help="use a running server (default: embedded, in a temp dir)")
    p.add_argument("--api-key", help="API key for --url")
    return p


def open_client(args: argparse.Namespace) -> Client:
    if args.url:
        return Client(args.url, api_key=args.api_key)
    return Client(path=tempfile.mkdtemp(prefix="lam-example-"))


def fresh_bank(client: Client, name: str, dim: int, **config: object) -> str:
    if name in {b.name for b in client.list_banks()}:
        client.delete_bank(name)
    client.create_bank(name, dim, **config)
    return name
