"""`if_novel` through the SDK (sync over HTTP and embedded, async), the CLI, and a restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from lam_client import AsyncClient, Client, InvalidInput, Skipped
from lam_client.cli import app
from tests.harness import LamServer

EYE = np.eye(4, dtype=np.float32)
# Near m0, new, near the new one, near m1: two novel memories among four.
BATCH = np.array([[1, 0.02, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0.03], [0.01, 1, 0, 0]], np.float32)
IDS = ["d0", "n2", "d2", "d1"]


def seeded(c: Client, name: str) -> None:
    c.create_bank(name, dim=4, beta=8.0, normalize=True)
    c.store(name, EYE[:2], ids=["m0", "m1"])


def check(result_ids: list[str], skipped: list[Skipped], count: int) -> None:
    assert result_ids == ["n2"] and count == 3
    assert [(s.index, s.id, s.nearest) for s in skipped] == [
        (0, "d0", "m0"),
        (2, "d2", "n2"),
        (3, "d1", "m1"),
    ]
    assert all(s.energy < 0 for s in skipped)


def test_store_if_novel(client: Client, bank_name: str) -> None:
    seeded(client, bank_name)
    res = client.store(bank_name, BATCH, ids=IDS, if_novel=0.0)
    check(res.ids, res.skipped, res.count)
    assert client.store(bank_name, EYE[3:], ids=["n3"]).skipped == []  # not gated
    with pytest.raises(InvalidInput):  # NaN: null over HTTP (validation_error), or refused
        client.store(bank_name, EYE[3:], if_novel=float("nan"))
    assert client.get_bank(bank_name).count == 4
    # upload: skipped indexes count over the whole upload.
    up = client.upload(bank_name, BATCH, ids=IDS, batch_size=3, progress=False, if_novel=0.0)
    assert up.ids == [] and [s.index for s in up.skipped] == [0, 1, 2, 3]


def test_async_store_if_novel(server: LamServer, write_key: str, bank_name: str) -> None:
    async def run() -> None:
        async with AsyncClient(server.url, api_key=write_key) as ac:
            await ac.create_bank(bank_name, dim=4, beta=8.0, normalize=True)
            await ac.store(bank_name, EYE[:2], ids=["m0", "m1"])
            res = await ac.store(bank_name, BATCH, ids=IDS, if_novel=0.0)
            check(res.ids, res.skipped, res.count)

    asyncio.run(run())


def lam_json(data: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, ["--path", str(data), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_load_if_novel(tmp_path: Path) -> None:
    data = tmp_path / "data"
    lam_json(data, "bank", "create", "c", "--dim", "4", "--beta", "8", "--normalize")
    src = tmp_path / "b.jsonl"
    src.write_text(
        "\n".join(json.dumps({"vector": v}) for v in [*EYE[:2].tolist(), *BATCH.tolist()])
    )
    out = lam_json(data, "load", "c", str(src), "--if-novel", "0", "--batch-size", "4")
    assert out == {"bank": "c", "stored": 3, "skipped_batches": 0, "count": 3, "skipped": 3}


def test_gated_write_survives_a_kill(tmp_path: Path) -> None:
    srv = LamServer(tmp_path / "data", tmp_path / "server.log", env={"LAM_LOG_LEVEL": "warning"})
    try:
        srv.start()
        with Client(srv.url) as c:
            seeded(c, "k")
            res = c.store("k", BATCH, ids=IDS, if_novel=0.0)
            check(res.ids, res.skipped, res.count)
        srv.kill()  # SIGKILL right after the acknowledgement: no clean shutdown
        srv.start()
        with Client(srv.url) as c:
            page = c.scroll("k")
            assert [m.id for m in page.memories] == ["m0", "m1", "n2"]
            again = c.store("k", BATCH, ids=IDS, if_novel=0.0)  # n2 now judged as stored
            assert again.ids == [] and again.skipped[1].nearest == "n2"
    finally:
        srv.stop()
