"""Hostile input matrix against a real server with small limits: documented 4xx, no change.

Requests go out through http.client, byte for byte: raw NaN/Infinity tokens, unnormalized
paths ("../", "%2e%2e"), chunked bodies without a length. After every request the victim bank
must be unchanged (config, count, one stored vector and payload) and no other bank may exist.
"""

# The case table below keeps one case per line (readable as a matrix), hence E501 off here.
# ruff: noqa: E501
from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability.rel_harness import LamServer, ServerFactory, figure

DIM = 8
LIMITS = {
    "max_body_bytes": 262_144,
    "max_store_batch": 16,
    "max_query_batch": 8,
    "max_dim": 1024,
    "max_query_steps": 100,
    "max_dynamics_steps": 1000,
}
VICTIM = [[float(i == j) + 0.25 * j for j in range(DIM)] for i in range(4)]  # (4, d)
OK = [0.5] * DIM
JSON_CT = "application/json"
TALLY: dict[int, int] = {}


@pytest.fixture(scope="module")
def hostile_server(make_module_server: ServerFactory) -> LamServer:
    server = make_module_server("hostile", **LIMITS)
    status, _ = send(server, "POST", "/v1/banks", {"name": "v", "dim": DIM, "beta": 2.0})
    assert status == 201
    memories = [{"id": f"v{i}", "vector": v, "payload": {"i": i}} for i, v in enumerate(VICTIM)]
    status, _ = send(server, "POST", "/v1/banks/v/memories", {"memories": memories})
    assert status == 200
    return server


def send(
    server: LamServer,
    method: str,
    path: str,
    body: Any = None,
    content_type: str | None = JSON_CT,
    chunked: bool = False,
) -> tuple[int, bytes]:
    if body is None:
        raw = None
    elif isinstance(body, bytes):
        raw = body
    else:
        raw = json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    headers = {} if content_type is None or raw is None else {"Content-Type": content_type}
    try:
        if chunked and raw is not None:
            pieces: Iterator[bytes] = (raw[i : i + 65536] for i in range(0, len(raw), 65536))
            conn.request(method, path, body=pieces, headers=headers, encode_chunked=True)
        else:
            conn.request(method, path, body=raw, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _store(vector_json: str) -> bytes:
    return b'{"memories": [{"id": "h", "vector": ' + vector_json.encode() + b"}]}"


def _vec(*head: str) -> str:
    return "[" + ", ".join([*head, *["0.0"] * (DIM - len(head))]) + "]"


def _query(**fields: Any) -> dict[str, Any]:
    return {"queries": [OK], **fields}


def _raw_query(field: str, token: str) -> bytes:
    return f'{{"queries": [{json.dumps(OK)}], "{field}": {token}}}'.encode()


def _mem(i: int, vec: list[float] | None = None) -> dict[str, Any]:
    return {"id": f"m{i}", "vector": vec or OK}


DEEP = 10_000
MEM = "/v1/banks/v/memories"
QRY = "/v1/banks/v/query"
BANKS = "/v1/banks"

# (case id, method, path, body, content type, allowed statuses, chunked)
CASES: list[tuple[str, str, str, Any, str | None, set[int], bool]] = [
    # -- store: vectors -----------------------------------------------------------------
    ("store-wrong-dim", "POST", MEM, {"memories": [{"vector": [1.0] * (DIM - 1)}]}, JSON_CT, {422}, False),
    ("store-dim-too-big", "POST", MEM, {"memories": [{"vector": [1.0] * (DIM + 1)}]}, JSON_CT, {422}, False),
    ("store-NaN-token", "POST", MEM, _store(_vec("NaN")), JSON_CT, {422}, False),
    ("store-Infinity-token", "POST", MEM, _store(_vec("Infinity")), JSON_CT, {422}, False),
    ("store-minus-Infinity-token", "POST", MEM, _store(_vec("-Infinity")), JSON_CT, {422}, False),
    ("store-1e400-literal", "POST", MEM, _store(_vec("1e400")), JSON_CT, {422}, False),
    ("store-1e39-overflows-float32", "POST", MEM, _store(_vec("1e39")), JSON_CT, {422}, False),
    ("store-int-beyond-float32", "POST", MEM, _store(_vec(str(10**40))), JSON_CT, {422}, False),
    ("store-empty-batch", "POST", MEM, {"memories": []}, JSON_CT, {422}, False),
    ("store-empty-vector", "POST", MEM, {"memories": [{"vector": []}]}, JSON_CT, {422}, False),
    ("store-string-in-vector", "POST", MEM, {"memories": [{"vector": ["1"] * DIM}]}, JSON_CT, {422}, False),
    ("store-bool-in-vector", "POST", MEM, {"memories": [{"vector": [True] * DIM}]}, JSON_CT, {422}, False),
    ("store-nested-vector", "POST", MEM, {"memories": [{"vector": [[1.0]] * DIM}]}, JSON_CT, {422}, False),
    ("store-ragged-batch", "POST", MEM, {"memories": [_mem(0), _mem(1, [1.0] * 3)]}, JSON_CT, {422}, False),
    ("store-batch-over-limit", "POST", MEM, {"memories": [_mem(i) for i in range(17)]}, JSON_CT, {413}, False),
    ("store-duplicate-ids", "POST", MEM, {"memories": [_mem(0), _mem(0)]}, JSON_CT, {422}, False),
    ("store-id-too-long", "POST", MEM, {"memories": [{"id": "x" * 513, "vector": OK}]}, JSON_CT, {422}, False),
    ("store-id-empty", "POST", MEM, {"memories": [{"id": "", "vector": OK}]}, JSON_CT, {422}, False),
    ("store-id-number", "POST", MEM, {"memories": [{"id": 5, "vector": OK}]}, JSON_CT, {422}, False),
    ("store-payload-list", "POST", MEM, {"memories": [{"vector": OK, "payload": [1]}]}, JSON_CT, {422}, False),
    ("store-extra-field", "POST", MEM, {"memories": [{"vector": OK, "x": 1}]}, JSON_CT, {422}, False),
    ("store-memories-not-list", "POST", MEM, {"memories": {"vector": OK}}, JSON_CT, {422}, False),
    ("store-top-level-array", "POST", MEM, [{"vector": OK}], JSON_CT, {422}, False),
    # -- bodies ---------------------------------------------------------------------------
    ("body-deep-nesting-array", "POST", MEM, b'{"memories": ' + b"[" * DEEP + b"]" * DEEP + b"}", JSON_CT, {400, 422}, False),
    ("body-deep-nesting-object", "POST", MEM, b'{"a":' * DEEP + b"1" + b"}" * DEEP, JSON_CT, {400, 422}, False),
    ("body-deep-nesting-query", "POST", QRY, b'{"queries": ' + b"[" * DEEP + b"]" * DEEP + b"}", JSON_CT, {400, 422}, False),
    ("body-deep-nesting-bank", "POST", BANKS, b'{"name": ' + b"[" * DEEP + b"]" * DEEP + b"}", JSON_CT, {400, 422}, False),
    ("body-oversized", "POST", MEM, b'{"memories": [' + b" " * 300_000 + b"]}", JSON_CT, {413}, False),
    ("body-oversized-chunked", "POST", MEM, b'{"memories": [' + b" " * 300_000 + b"]}", JSON_CT, {413}, True),
    ("body-not-json", "POST", MEM, b"hello", JSON_CT, {400}, False),
    ("body-truncated-json", "POST", MEM, b'{"memories": [{"vector": [1', JSON_CT, {400}, False),
    ("body-invalid-utf8", "POST", MEM, b'{"memories": "\xff\xfe"}', JSON_CT, {400}, False),
    ("body-empty", "POST", MEM, b"", JSON_CT, {400}, False),
    ("content-type-text", "POST", MEM, {"memories": [{"vector": OK}]}, "text/plain", {415}, False),
    ("content-type-form", "POST", MEM, b"memories=1", "application/x-www-form-urlencoded", {415}, False),
    ("content-type-npy-garbage", "POST", MEM, b"\x93NUMPY garbage", "application/x-npy", {400, 422}, False),
    ("content-type-text-query", "POST", QRY, _query(), "text/plain", {415}, False),
    ("content-type-text-create", "POST", BANKS, {"name": "zz", "dim": 4}, "text/plain", {415}, False),
    # -- query parameters -----------------------------------------------------------------
    ("query-wrong-dim", "POST", QRY, {"queries": [[1.0] * (DIM + 1)]}, JSON_CT, {422}, False),
    ("query-empty", "POST", QRY, {"queries": []}, JSON_CT, {422}, False),
    ("query-empty-row", "POST", QRY, {"queries": [[]]}, JSON_CT, {422}, False),
    ("query-NaN-in-vector", "POST", QRY, f'{{"queries": [{_vec("NaN")}]}}'.encode(), JSON_CT, {422}, False),
    ("query-over-limit", "POST", QRY, {"queries": [OK] * 9}, JSON_CT, {413}, False),
    ("beta-zero", "POST", QRY, _query(beta=0), JSON_CT, {422}, False),
    ("beta-negative", "POST", QRY, _query(beta=-1.0), JSON_CT, {422}, False),
    ("beta-NaN-token", "POST", QRY, _raw_query("beta", "NaN"), JSON_CT, {422}, False),
    ("beta-Infinity-token", "POST", QRY, _raw_query("beta", "Infinity"), JSON_CT, {422}, False),
    ("beta-string", "POST", QRY, _query(beta="x"), JSON_CT, {422}, False),
    ("beta-huge", "POST", QRY, _query(beta=1e308), JSON_CT, {200, 422}, False),
    ("steps-zero", "POST", QRY, _query(steps=0), JSON_CT, {200}, False),  # scores at the cue
    ("steps-negative", "POST", QRY, _query(steps=-1), JSON_CT, {422}, False),
    ("steps-1e9", "POST", QRY, _query(steps=10**9), JSON_CT, {422}, False),
    ("steps-float", "POST", QRY, _query(steps=1.5), JSON_CT, {422}, False),
    ("steps-string", "POST", QRY, _query(steps="x"), JSON_CT, {422}, False),
    ("top_k-negative", "POST", QRY, _query(top_k=-1), JSON_CT, {422}, False),
    ("top_k-huge", "POST", QRY, _query(top_k=10**12), JSON_CT, {200, 422}, False),
    ("top_k-beyond-int64", "POST", QRY, _query(top_k=10**30), JSON_CT, {200, 422}, False),
    ("tol-negative", "POST", QRY, _query(tol=-1.0), JSON_CT, {422}, False),
    ("tol-NaN-token", "POST", QRY, _raw_query("tol", "NaN"), JSON_CT, {422}, False),
    ("mask-wrong-shape", "POST", QRY, _query(mask=[[True] * (DIM - 1)]), JSON_CT, {422}, False),
    ("mask-not-bool", "POST", QRY, _query(mask=[[1] * DIM]), JSON_CT, {422}, False),
    ("query-unknown-field", "POST", QRY, _query(bogus=1), JSON_CT, {422}, False),
    # -- energy and dynamics --------------------------------------------------------------
    ("energy-wrong-dim", "POST", "/v1/banks/v/energy", {"states": [[1.0] * 3]}, JSON_CT, {422}, False),
    ("energy-NaN", "POST", "/v1/banks/v/energy", f'{{"states": [{_vec("NaN")}]}}'.encode(), JSON_CT, {422}, False),
    ("energy-beta-zero", "POST", "/v1/banks/v/energy", {"states": [OK], "beta": 0}, JSON_CT, {422}, False),
    ("dynamics-dt-zero", "POST", "/v1/banks/v/dynamics", {"state": OK, "dt": 0}, JSON_CT, {422}, False),
    ("dynamics-dt-negative", "POST", "/v1/banks/v/dynamics", {"state": OK, "dt": -0.1}, JSON_CT, {422}, False),
    ("dynamics-too-many-steps", "POST", "/v1/banks/v/dynamics", {"state": OK, "dt": 1e-9, "t_max": 1e9}, JSON_CT, {422}, False),
    ("dynamics-tau-zero", "POST", "/v1/banks/v/dynamics", {"state": OK, "tau_f": 0}, JSON_CT, {422}, False),
    ("dynamics-wrong-dim", "POST", "/v1/banks/v/dynamics", {"state": [1.0]}, JSON_CT, {422}, False),
    ("diagnostics-beta-negative", "GET", "/v1/banks/v/diagnostics?beta=-1", None, None, {422}, False),
    ("diagnostics-beta-nan", "GET", "/v1/banks/v/diagnostics?beta=nan", None, None, {422}, False),
    # -- bank names and configs -----------------------------------------------------------
    *[
        (f"create-name-{label}", "POST", BANKS, {"name": name, "dim": 4}, JSON_CT, {422}, False)
        for label, name in [
            ("dotdot-etc", "../etc"),
            ("pct-2e2e", "%2e%2e"),
            ("dotdot-inside", "bank/../x"),
            ("unicode", "ünïcode"),
            ("too-long-65", "a" * 65),
            ("very-long", "a" * 100_000),
            ("empty", ""),
            ("upper", "Upper"),
            ("nul", "a\x00b"),
            ("number", 5),
        ]
    ],
    ("create-dim-zero", "POST", BANKS, {"name": "zz", "dim": 0}, JSON_CT, {422}, False),
    ("create-dim-negative", "POST", BANKS, {"name": "zz", "dim": -1}, JSON_CT, {422}, False),
    ("create-dim-over-limit", "POST", BANKS, {"name": "zz", "dim": 1025}, JSON_CT, {422}, False),
    ("create-dim-huge", "POST", BANKS, {"name": "zz", "dim": 10**12}, JSON_CT, {422}, False),
    ("create-beta-zero", "POST", BANKS, {"name": "zz", "dim": 4, "beta": 0}, JSON_CT, {422}, False),
    ("create-beta-NaN", "POST", BANKS, b'{"name": "zz", "dim": 4, "beta": NaN}', JSON_CT, {422}, False),
    ("create-model-Z", "POST", BANKS, {"name": "zz", "dim": 4, "model": "Z"}, JSON_CT, {422}, False),
    ("create-dtype-float64", "POST", BANKS, {"name": "zz", "dim": 4, "dtype": "float64"}, JSON_CT, {422}, False),
    ("create-device-bogus", "POST", BANKS, {"name": "zz", "dim": 4, "device": "tpu:9"}, JSON_CT, {422}, False),
    ("create-victim-other-config", "POST", BANKS, {"name": "v", "dim": 4}, JSON_CT, {409}, False),
    ("patch-beta-negative", "PATCH", "/v1/banks/v", {"beta": -1.0}, JSON_CT, {422}, False),
    ("patch-beta-NaN", "PATCH", "/v1/banks/v", b'{"beta": NaN}', JSON_CT, {422}, False),
    ("patch-dim", "PATCH", "/v1/banks/v", {"dim": 4}, JSON_CT, {422}, False),
    ("snapshot-garbage-replace-victim", "POST", "/v1/banks/v/snapshot?replace=true", b"PK\x03\x04garbage", "application/zip", {400, 422}, False),
    ("snapshot-garbage-new", "POST", "/v1/banks/zz/snapshot", b"not a zip", "application/zip", {400, 422}, False),
    # -- paths ----------------------------------------------------------------------------
    ("path-dotdot-raw", "GET", "/v1/banks/../etc", None, None, {404}, False),
    ("path-dotdot-encoded-slash", "GET", "/v1/banks/..%2Fetc", None, None, {404}, False),
    ("path-pct-2e2e", "GET", "/v1/banks/%2e%2e", None, None, {404}, False),
    ("path-pct-2e2e-delete", "DELETE", "/v1/banks/%2e%2e", None, None, {404}, False),
    ("path-dotdot-delete-victim", "DELETE", "/v1/banks/x/..%2Fv", None, None, {404, 405}, False),
    ("path-inner-dotdot-store", "POST", "/v1/banks/bank%2F..%2Fv/memories", {"memories": [{"vector": OK}]}, JSON_CT, {404}, False),
    ("path-unicode", "GET", "/v1/banks/%C3%BCn%C3%AFcode", None, None, {404}, False),
    ("path-very-long", "GET", "/v1/banks/" + "a" * 8000, None, None, {404, 414, 431}, False),
    ("path-nul", "GET", "/v1/banks/a%00b", None, None, {404}, False),
    ("path-memory-traversal", "GET", "/v1/banks/v/memories/..%2F..%2Fetc%2Fpasswd", None, None, {404}, False),
    ("path-memory-delete-traversal", "DELETE", "/v1/banks/v/memories/..%2Fv0", None, None, {404}, False),
    ("scroll-limit-zero", "GET", "/v1/banks/v/memories?limit=0", None, None, {422}, False),
    ("scroll-limit-negative", "GET", "/v1/banks/v/memories?limit=-1", None, None, {422}, False),
    ("scroll-limit-huge", "GET", "/v1/banks/v/memories?limit=99999999999999999999", None, None, {422}, False),
    ("scroll-cursor-garbage", "GET", "/v1/banks/v/memories?cursor=zzz%00", None, None, {400, 422}, False),
    ("scroll-cursor-long", "GET", "/v1/banks/v/memories?cursor=" + "9" * 5000, None, None, {400, 422}, False),
    ("delete-many-not-list", "POST", "/v1/banks/v/memories/delete", {"ids": "v0"}, JSON_CT, {422}, False),
    ("delete-many-over-limit", "POST", "/v1/banks/v/memories/delete", {"ids": [f"n{i}" for i in range(17)]}, JSON_CT, {413}, False),
    ("method-not-allowed", "PUT", "/v1/banks/v", {"beta": 1}, JSON_CT, {405}, False),
]  # fmt: skip


def _assert_finite_result(out: dict[str, Any]) -> None:
    """A 200 must carry numbers: NaN would be serialized as null, which API.md never allows."""
    for res in out.get("results", []):
        assert None not in res["state"] and res["energy"] is not None, res
    assert None not in out.get("energies", []), out


def _victim_state(server: LamServer) -> tuple[Any, ...]:
    status, raw = send(server, "GET", "/v1/banks/v")
    assert status == 200, raw
    info = json.loads(raw)
    status, raw = send(server, "GET", "/v1/banks/v/memories/v1")
    assert status == 200, raw
    mem = json.loads(raw)
    status, raw = send(server, "GET", "/v1/banks")
    names = sorted(b["name"] for b in json.loads(raw)["banks"])
    return info["count"], info["dim"], info["beta"], mem["vector"], mem["payload"], names


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "allowed", "chunked"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_hostile_request_gets_documented_error_and_changes_nothing(
    hostile_server: LamServer,
    method: str,
    path: str,
    body: Any,
    content_type: str | None,
    allowed: set[int],
    chunked: bool,
) -> None:
    before = _victim_state(hostile_server)
    assert before == (4, DIM, 2.0, VICTIM[1], {"i": 1}, ["v"])
    status, raw = send(hostile_server, method, path, body, content_type, chunked)
    TALLY[status] = TALLY.get(status, 0) + 1
    assert status in allowed, raw[:500]
    text = raw.decode("utf-8", "replace")
    assert "Traceback" not in text and 'File "' not in text and "/work/" not in text
    if status == 200:
        _assert_finite_result(json.loads(raw))
    if status >= 400:
        err = json.loads(raw)["error"]
        assert isinstance(err["code"], str) and err["code"], err
        assert isinstance(err["message"], str) and err["message"], err
    assert _victim_state(hostile_server) == before
    status, _ = send(hostile_server, "GET", "/healthz")
    assert status == 200


def test_zz_hostile_summary(hostile_server: LamServer) -> None:
    """Runs after the matrix (file order): the server survived all of it, nothing leaked to disk."""
    assert _victim_state(hostile_server)[0] == 4
    root = hostile_server.data_dir
    stray = [p.name for p in root.parent.iterdir() if p.name not in {root.name, "hostile.log"}]
    figure("hostile_inputs", cases=len(CASES), statuses=dict(sorted(TALLY.items())), stray=stray)
    assert stray == []
    assert "Traceback" not in hostile_server.log_text(), hostile_server.tail()


# β or vectors so large that β·ξ·v overflows float32: the answer must be a 422 or finite numbers,
# never a 200 full of nulls (NaN). Each case uses its own bank, so a failure here (a known bug,
# see docs/reliability.md) does not spill over into the matrix above.
OVERFLOW_CASES = [
    ("query-beta-1e308", "POST", "query", {"queries": [[1.0, 0.5, 0, 0]], "beta": 1e308}),
    ("query-beta-1e39", "POST", "query", {"queries": [[1.0, 0.5, 0, 0]], "beta": 1e39}),
    ("energy-beta-1e39", "POST", "energy", {"states": [[1.0, 0.5, 0, 0]], "beta": 1e39}),
    ("query-vectors-1e30", "POST", "query", {"queries": [[1e30, 0.5, 0, 0]]}),
    ("energy-vectors-1e30", "POST", "energy", {"states": [[1e30, 0.5, 0, 0]]}),
    ("patch-beta-1e308", "PATCH", "", {"beta": 1e308}),
]


@pytest.mark.parametrize(
    ("method", "route", "body"), [pytest.param(*c[1:], id=c[0]) for c in OVERFLOW_CASES]
)
def test_float32_overflow_is_422_or_finite(
    hostile_server: LamServer,
    method: str,
    route: str,
    body: dict[str, Any],
    request: pytest.FixtureRequest,
) -> None:
    bank = "ovf"
    send(hostile_server, "DELETE", f"/v1/banks/{bank}")
    status, raw = send(hostile_server, "POST", BANKS, {"name": bank, "dim": 4, "beta": 1.0})
    assert status == 201, raw
    memories = [
        {"id": "a", "vector": [1e30 if "vectors" in request.node.callspec.id else 1.0, 0, 0, 0]},
        {"id": "b", "vector": [0, 1.0, 0, 0]},
    ]
    status, raw = send(hostile_server, "POST", f"/v1/banks/{bank}/memories", {"memories": memories})
    assert status == 200, raw
    try:
        path = f"/v1/banks/{bank}" + (f"/{route}" if route else "")
        status, raw = send(hostile_server, method, path, body)
        assert status in (200, 422), raw
        if status == 200 and route:
            _assert_finite_result(json.loads(raw))
        if status == 200 and not route:  # PATCH accepted: the bank must still answer with numbers
            status, raw = send(
                hostile_server, "POST", f"{path}/query", {"queries": [[1, 0.5, 0, 0]]}
            )
            assert status == 200
            _assert_finite_result(json.loads(raw))
    finally:
        send(hostile_server, "DELETE", f"/v1/banks/{bank}")


def test_create_bank_with_beta_beyond_float32_is_422(hostile_server: LamServer) -> None:
    status, raw = send(hostile_server, "POST", BANKS, {"name": "hugebeta", "dim": 4, "beta": 1e308})
    send(hostile_server, "DELETE", "/v1/banks/hugebeta")
    assert status == 422, raw
