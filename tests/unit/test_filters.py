"""The filter language (docs/API.md "Filters", docs/filters.md) against a plain reference.

- For random payloads (nested objects, arrays, nulls, missing keys, mixed kinds) and random
  filters over every operator and nesting: the unindexed evaluation, the indexed one (every
  kind of index on every key, after upserts, deletes and compactions) and `reference`
  below, written plainly from the spec, select the same rows.
- Every malformed variant of a valid filter (one part mutated) raises InvalidFilterError
  whose path names the mutated part.
- Each operator's edge cases, one by one.
"""

from __future__ import annotations

import copy
import math
import operator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine.errors import InvalidInputError, InvalidParameterError
from lam_engine.filters import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    Filter,
    InvalidFilterError,
    RowsView,
    evaluate,
    parse_filter,
)
from lam_engine.payload_index import INDEX_KINDS, PayloadIndexes

# ---- the reference: the spec, read literally, over raw JSON --------------------------------
_ABSENT = object()


def _at(payload: Any, key: str) -> Any:
    cur = payload
    for part in key.split("."):
        if type(cur) is not dict or part not in cur:
            return _ABSENT
        cur = cur[part]
    return cur


def _same(e: Any, x: Any) -> bool:
    return type(e) is type(x) and e == x  # JSON kinds: True is not 1, 1.0 is not 1


def _in_range(e: Any, r: dict[str, Any]) -> bool:
    if type(e) not in (int, float):
        return False
    ops = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
    return all(ops[k](e, b) for k, b in r.items() if b is not None)


def reference(cond: dict[str, Any], mid: str | None, payload: Any) -> bool:
    if "key" in cond:
        v = _at(payload, cond["key"])
        if "is_null" in cond:
            return v is _ABSENT or v is None or (type(v) is list and None in v)
        items = [] if v is _ABSENT else v if type(v) is list else [v]
        if "range" in cond:
            return any(_in_range(e, cond["range"]) for e in items)
        m = cond["match"]
        wanted = [m["value"]] if "value" in m else m["any"]
        return any(_same(e, x) for e in items for x in wanted)
    if "has_id" in cond:
        return mid in cond["has_id"]
    must = cond.get("must") or []
    should = cond.get("should") or []
    must_not = cond.get("must_not") or []
    return (
        all(reference(c, mid, payload) for c in must)
        and (not should or any(reference(c, mid, payload) for c in should))
        and not any(reference(c, mid, payload) for c in must_not)
    )


# ---- strategies -----------------------------------------------------------------------------
NAMES = ["a", "b", "c"]
KEYS = ["a", "b", "c", "a.b", "b.a", "c.a.b"]
# Small pools, shared by payloads and filters, so that conditions often hit; the big ints
# and odd floats sit where exactness matters (2^53, the int64 edges, ±inf, NaN).
BIG = [2**53, 2**53 + 1, -(2**53) - 1, 2**62 + 1, 2**63 - 1, -(2**63)]
common = st.one_of(st.booleans(), st.integers(-1, 1), st.sampled_from(["x", "y"]))
odd_ints = st.sampled_from(BIG)
numbers = st.one_of(
    st.integers(-1, 1), st.sampled_from([-0.5, 0.5, 1.0, 9007199254740992.0]), odd_ints
)
rare = st.one_of(
    st.none(),
    odd_ints,
    st.sampled_from([0.5, 1.0, -0.5, math.inf, -math.inf, math.nan, 2.0**63, 2.0**53 + 2]),
    st.sampled_from(["1", ""]),
)
scalars = st.one_of(common, common, rare)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(NAMES), inner, min_size=1, max_size=3),
    ),
    max_leaves=6,
)
_objects = st.dictionaries(st.sampled_from(NAMES), json_values, min_size=2, max_size=3)
payloads = st.one_of(_objects, _objects, _objects, _objects, st.sampled_from([None, {}]))
match_scalars = st.one_of(common, common, common, odd_ints, st.sampled_from(["1", ""]))
keys = st.sampled_from(["a", "a", "b", "b", "c", *KEYS])  # top-level keys more often
IDS = [f"m{i}" for i in range(16)]

field_conditions = st.one_of(
    st.builds(lambda k, v: {"key": k, "match": {"value": v}}, keys, match_scalars),
    st.builds(
        lambda k, vs: {"key": k, "match": {"any": vs}}, keys, st.lists(match_scalars, max_size=3)
    ),
    st.builds(
        lambda k, r: {"key": k, "range": r},
        keys,
        st.dictionaries(
            st.sampled_from(["gt", "gte", "lt", "lte"]), numbers, min_size=1, max_size=2
        )
        | st.dictionaries(st.sampled_from(["gt", "gte", "lt", "lte"]), numbers, min_size=1),
    ),
    st.builds(lambda k: {"key": k, "is_null": True}, keys),
    st.builds(lambda ids: {"has_id": ids}, st.lists(st.sampled_from([*IDS, "nope"]), max_size=3)),
)


def _filters(conditions: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    clause = st.lists(conditions, max_size=2)
    some = st.lists(conditions, min_size=1, max_size=2)
    optional = {"must": clause, "should": clause, "must_not": clause}
    # Mostly filters that say something: {} and empty lists are covered, not dominant.
    return st.one_of(
        *(
            st.fixed_dictionaries({k: some}, optional={o: clause for o in optional if o != k})
            for k in optional
        ),
        st.fixed_dictionaries({}, optional=optional),
    )


filters = st.recursive(field_conditions, _filters, max_leaves=10).filter(
    lambda f: "key" not in f and "has_id" not in f
) | _filters(field_conditions)
index_specs = st.dictionaries(keys, st.sampled_from(INDEX_KINDS), max_size=len(KEYS))


@st.composite
def banks(draw: st.DrawFn) -> tuple[list[str | None], list[Any], np.ndarray]:
    n = draw(st.integers(0, len(IDS)))  # 0: an empty bank
    pls = draw(st.lists(payloads, min_size=n, max_size=n))
    alive = np.array(draw(st.lists(st.sampled_from([True] * 4 + [False]), min_size=n, max_size=n)))
    ids: list[str | None] = [IDS[r] if alive[r] else None for r in range(n)]
    return ids, [p if alive[r] else None for r, p in enumerate(pls)], alive


full_specs = st.fixed_dictionaries({k: st.sampled_from(INDEX_KINDS) for k in KEYS})
_TYPED = {
    "keyword": st.sampled_from(["x", "y", "1"]),
    "integer": st.one_of(st.integers(-2, 2), odd_ints),
    "float": st.one_of(
        st.sampled_from([-0.5, 0.5, 1.0, 2.0, math.inf, 2.0**53, 2.0**53 + 2]), st.integers(-2, 2)
    ),
    "bool": st.booleans(),
}


def typed_filters(spec: dict[str, str]) -> st.SearchStrategy[dict[str, Any]]:
    """Filters whose values are of the kind of the key's index (so they hit its entries)."""

    def for_key(key: str) -> st.SearchStrategy[dict[str, Any]]:
        kind = spec[key]
        value = st.integers(-2, 2) if kind == "float" else _TYPED[kind]  # floats never match
        value = st.one_of(value, value, value, match_scalars)
        bound = st.one_of(
            st.sampled_from([-0.5, 0.5, 1.0, 2.0, 2.0**53, 2.0**53 + 2]), _TYPED["integer"]
        )
        bounds = st.dictionaries(st.sampled_from(["gt", "gte", "lt", "lte"]), bound, min_size=1)
        return st.one_of(
            st.builds(lambda v: {"key": key, "match": {"value": v}}, value),
            st.builds(lambda vs: {"key": key, "match": {"any": vs}}, st.lists(value, max_size=3)),
            st.builds(lambda r: {"key": key, "range": r}, bounds),
            st.just({"key": key, "is_null": True}),
        )

    return st.recursive(keys.flatmap(for_key), _filters, max_leaves=8).filter(
        lambda f: "key" not in f
    )


@st.composite
def typed_payloads(draw: st.DrawFn, spec: dict[str, str]) -> Any:
    """Payloads whose indexed keys mostly hold their index's kind (clean data: the index
    answers from its entries), with a stray kind, a null or an array now and then."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from([None, {}]))
    out: dict[str, Any] = {}
    for key in draw(st.permutations(KEYS)):
        if draw(st.integers(0, 9)) < 3:
            continue
        one = st.one_of(*[_TYPED[spec.get(key, "keyword")]] * 6, scalars)
        value = draw(st.one_of(one, one, one, st.lists(one, max_size=3)))
        *parents, last = key.split(".")
        cur: Any = out
        for p in parents:
            cur = cur.setdefault(p, {})
            if not isinstance(cur, dict):
                break
        else:
            if last not in cur:
                cur[last] = value
    return out


def _rows(mask: np.ndarray) -> list[int]:
    assert mask.dtype == bool
    return np.flatnonzero(mask).tolist()


# ---- (a) indexed == unindexed == reference ------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(bank=banks(), raw=filters, spec=index_specs)
def test_indexed_equals_unindexed_equals_reference(bank: Any, raw: Any, spec: Any) -> None:
    ids, pls, alive = bank
    flt = parse_filter(raw)
    assert isinstance(flt, Filter)
    want = [r for r in range(len(ids)) if alive[r] and reference(raw, ids[r], pls[r])]
    assert _rows(evaluate(flt, RowsView(ids, pls, alive))) == want
    indexes = PayloadIndexes(spec)
    indexes.add(range(len(ids)), pls)
    assert _rows(flt.evaluate(RowsView(ids, pls, alive, indexes))) == want


@settings(max_examples=200, deadline=None)
@given(spec=full_specs, data=st.data())
def test_indexed_clean_data_equals_reference(spec: dict[str, str], data: st.DataObject) -> None:
    """Every key indexed, data mostly of the index's kind: answers come from the entries."""
    pls = data.draw(st.lists(typed_payloads(spec), min_size=1, max_size=16))
    alive = np.array(data.draw(st.lists(st.booleans(), min_size=len(pls), max_size=len(pls))))
    ids = [IDS[r] if alive[r] else None for r in range(len(pls))]
    indexes = PayloadIndexes(spec)
    indexes.add(range(len(pls)), pls)
    for raw in data.draw(st.lists(typed_filters(spec) | filters, min_size=1, max_size=4)):
        want = [r for r in range(len(pls)) if alive[r] and reference(raw, ids[r], pls[r])]
        flt = parse_filter(raw)
        assert _rows(evaluate(flt, RowsView(ids, pls, alive, indexes))) == want


@settings(max_examples=150, deadline=None)
@given(
    spec=full_specs,
    data=st.data(),
    deletes=st.sets(st.integers(0, 9), max_size=5),
    compact=st.booleans(),
)
def test_indexes_follow_upserts_deletes_and_compaction(
    spec: dict[str, str], data: st.DataObject, deletes: set[int], compact: bool
) -> None:
    """The write sequence a bank performs, mirrored on its indexes, keeps them exact."""
    raws = data.draw(st.lists(typed_filters(spec) | filters, min_size=1, max_size=3))
    first = data.draw(st.lists(typed_payloads(spec), min_size=1, max_size=10))
    updates = data.draw(st.lists(st.tuples(st.integers(0, 9), typed_payloads(spec)), max_size=6))
    n = len(first)
    pls = list(first)
    ids: list[str | None] = list(IDS[:n])
    alive = np.ones(n, dtype=bool)
    indexes = PayloadIndexes(spec)
    indexes.add(range(n), pls)
    # A read sorts the entries; the writes below then go through the pending path.
    evaluate(parse_filter(raws[0]), RowsView(ids, pls, alive, indexes))
    for row, p in updates:  # an upsert keeps its row
        if row < n:
            pls[row] = p
            indexes.add([row], [p])
    gone = sorted(r for r in deletes if r < n)
    for r in gone:
        alive[r], ids[r], pls[r] = False, None, None
    indexes.remove(gone)
    if compact:  # the bank drops tombstones in order; the indexes renumber alike
        keep = np.flatnonzero(alive)
        indexes.remap(keep)
        ids, pls = [ids[r] for r in keep], [pls[r] for r in keep]
        alive = np.ones(len(keep), dtype=bool)
    for raw in raws:
        flt = parse_filter(raw)
        want = [r for r in range(len(ids)) if alive[r] and reference(raw, ids[r], pls[r])]
        assert _rows(evaluate(flt, RowsView(ids, pls, alive, indexes))) == want


# ---- (b) every malformed variant is refused, at the mutated part ----------------------------
def _sites(obj: Any, path: str, depth: int, out: list[tuple[str, str, int]]) -> None:
    """(path, kind, depth of the filter holding it) of every part a mutation can target."""
    out.append((path, "filter", depth))
    for clause in ("must", "should", "must_not"):
        for i, c in enumerate(obj.get(clause) or []):
            p = f"{path}.{clause}[{i}]"
            if "key" in c:
                out.append((p, "field", depth))
            elif "has_id" in c:
                out.append((p, "has_id", depth))
            else:
                _sites(c, p, depth + 1, out)


def _get(root: dict[str, Any], path: str) -> Any:
    cur: Any = {"filter": root}
    for step in path.replace("[", ".[").split("."):
        cur = cur[int(step[1:-1])] if step.startswith("[") else cur[step]
    return cur


def _mutations(kind: str, part: Any, path: str, depth: int) -> list[tuple[Any, str]]:
    """(a mutated copy of the part, the path the error must name)."""
    if kind == "filter":
        chain: Any = {}
        for _ in range(MAX_DEPTH + 1 - depth):  # nested so that one level is too deep
            chain = {"must": [chain]}
        deep = copy.deepcopy(part)
        deep.setdefault("must", []).append(chain)
        k = len(deep["must"]) - 1
        return [
            ({**part, "oops": 1}, f"{path}.oops"),
            ({**part, "must": "x"}, f"{path}.must"),
            ({**part, "should": {"key": "a"}}, f"{path}.should"),
            ({**part, "must_not": [3]}, f"{path}.must_not[0]"),
            ({**part, "must": [{"kee": "a", "is_null": True}]}, f"{path}.must[0].kee"),
            (deep, f"{path}.must[{k}]" + ".must[0]" * (MAX_DEPTH - depth)),
            (["must"], path),
        ]
    if kind == "has_id":
        return [
            ({"has_id": "m1"}, f"{path}.has_id"),
            ({"has_id": ["m1", 2]}, f"{path}.has_id[1]"),
            ({"has_id": ["m1"], "key": "a"}, f"{path}.has_id"),  # read as a field condition
            ({"has_id": [], "must": []}, f"{path}.must"),
        ]
    op = next(o for o in ("match", "range", "is_null") if o in part)
    other = "is_null" if op != "is_null" else "match"
    later = max(op, other, key=("match", "range", "is_null").index)
    bare = {"key": part["key"]}
    out = [
        ({**part, "oops": 1}, f"{path}.oops"),
        ({**part, "key": ""}, f"{path}.key"),
        ({**part, "key": "a..b"}, f"{path}.key"),
        ({**part, "key": ".a"}, f"{path}.key"),
        ({**part, "key": 7}, f"{path}.key"),
        ({**part, "key": "k" * 513}, f"{path}.key"),
        (bare, path),
        ({**part, other: part.get(other, True)}, f"{path}.{later}"),
        ({**bare, "is_null": False}, f"{path}.is_null"),
        ({**bare, "is_null": None}, f"{path}.is_null"),
        ({**bare, "match": "x"}, f"{path}.match"),
        ({**bare, "match": {}}, f"{path}.match"),
        ({**bare, "match": {"value": 1, "any": [1]}}, f"{path}.match.any"),
        ({**bare, "match": {"valeu": 1}}, f"{path}.match.valeu"),
        ({**bare, "match": {"any": "x"}}, f"{path}.match.any"),
        ({**bare, "match": {"any": ["x", 1, 2.5]}}, f"{path}.match.any[2]"),
        ({**bare, "match": {"any": [None]}}, f"{path}.match.any[0]"),
        ({**bare, "range": []}, f"{path}.range"),
        ({**bare, "range": {}}, f"{path}.range"),
        ({**bare, "range": {"gte": None}}, f"{path}.range"),
        ({**bare, "range": {"gte": 1, "ge": 2}}, f"{path}.range.ge"),
        ({**bare, "range": {"lt": 1, "gt": True}}, f"{path}.range.gt"),
        ({**bare, "range": {"lte": "3"}}, f"{path}.range.lte"),
        ({**bare, "range": {"lte": [3]}}, f"{path}.range.lte"),
        ({**bare, "range": {"gt": math.nan}}, f"{path}.range.gt"),
        ({**bare, "range": {"gt": math.inf}}, f"{path}.range.gt"),
        ({**bare, "range": {"gt": 2**63}}, f"{path}.range.gt"),
    ]
    for bad in (1.5, None, [1], {"a": 1}, 2**63, -(2**63) - 1):
        out.append(({**bare, "match": {"value": bad}}, f"{path}.match.value"))
    return out


@settings(max_examples=300, deadline=None)
@given(raw=filters, data=st.data())
def test_every_malformed_variant_names_its_path(raw: dict[str, Any], data: st.DataObject) -> None:
    sites: list[tuple[str, str, int]] = []
    _sites(raw, "filter", 1, sites)
    path, kind, depth = data.draw(st.sampled_from(sites))
    part = _get(raw, path)
    mutated, where = data.draw(st.sampled_from(_mutations(kind, part, path, depth)))
    if path == "filter":
        bad = mutated
    else:
        bad = copy.deepcopy(raw)
        parent, _, last = path.rpartition("[")
        _get(bad, parent)[int(last[:-1])] = mutated
    with pytest.raises(InvalidFilterError) as err:
        parse_filter(bad)
    assert err.value.details["path"] == where, err.value.details
    assert err.value.details["reason"]


# ---- the error family ----------------------------------------------------------------------
def test_invalid_filter_is_a_422_invalid_input() -> None:
    assert issubclass(InvalidFilterError, InvalidInputError)
    assert InvalidFilterError.code == "invalid_filter"
    assert InvalidFilterError.status == 422
    with pytest.raises(InvalidFilterError, match=r"filter\.must"):
        parse_filter({"must": {}})


def test_bounds_on_size_and_depth() -> None:
    ok: dict[str, Any] = {}
    for _ in range(MAX_DEPTH - 1):
        ok = {"must": [ok]}
    parse_filter(ok)  # exactly MAX_DEPTH levels
    with pytest.raises(InvalidFilterError) as err:
        parse_filter({"must": [ok]})
    assert err.value.details["path"] == "filter" + ".must[0]" * (MAX_DEPTH)
    many = [{"key": "a", "is_null": True}] * MAX_CONDITIONS
    parse_filter({"must": many})
    with pytest.raises(InvalidFilterError) as err:
        parse_filter({"must": many, "should": [{"has_id": []}]})
    assert err.value.details["path"] == "filter.should[0]"
    with pytest.raises(InvalidFilterError) as err:
        parse_filter({"must": [{"key": "a", "match": {"any": list(range(70_000))}}]})
    assert err.value.details["path"] == "filter.must[0].match.any"


def test_paths_quote_odd_names_and_can_be_rooted_elsewhere() -> None:
    with pytest.raises(InvalidFilterError) as err:
        parse_filter({"must": [], "bad key": 1}, path="body.filter")
    assert err.value.details["path"] == 'body.filter["bad key"]'
    with pytest.raises(InvalidFilterError) as err:
        parse_filter([])
    assert err.value.details["path"] == "filter"


def test_unknown_index_kind_is_invalid_parameter() -> None:
    for spec in ({"a": "text"}, {"a": None}, {"": "keyword"}, {"a..b": "integer"}, ["a"]):
        with pytest.raises(InvalidParameterError) as err:
            PayloadIndexes(spec)  # type: ignore[arg-type]
        assert err.value.code == "invalid_parameter"
        assert err.value.details["path"].startswith("payload_index")


# ---- each operator's edge cases --------------------------------------------------------------
PAYLOADS: list[Any] = [
    {"tag": "x", "n": 1, "f": 1.0, "ok": True, "arr": ["x", 2, None], "obj": {"k": "v"}},
    {"tag": ["y", "x"], "n": True, "f": 1, "ok": 1, "arr": [], "obj": [{"k": "v"}]},
    {"tag": None, "n": 2.5, "f": "1", "ok": None, "arr": [["x"]], "obj": "v"},
    {},
    None,
]


def _select(raw: dict[str, Any], spec: dict[str, str] | None = None) -> list[int]:
    """Rows selected, the same indexed (with `spec`) and not."""
    ids = [f"m{i}" for i in range(len(PAYLOADS))]
    alive = np.ones(len(PAYLOADS), dtype=bool)
    flt = parse_filter(raw)
    plain = _rows(evaluate(flt, RowsView(ids, PAYLOADS, alive)))
    for kind in INDEX_KINDS:
        indexes = PayloadIndexes({k: kind for k in ("tag", "n", "f", "ok", "arr", "obj.k")})
        indexes.add(range(len(PAYLOADS)), PAYLOADS)
        assert _rows(evaluate(flt, RowsView(ids, PAYLOADS, alive, indexes))) == plain, kind
    return plain


def _c(**cond: Any) -> dict[str, Any]:
    return {"must": [cond]}


@pytest.mark.parametrize(
    ("cond", "rows"),
    [
        ({"key": "tag", "match": {"value": "x"}}, [0, 1]),  # a scalar, or one element
        ({"key": "n", "match": {"value": 1}}, [0]),  # True is not 1
        ({"key": "n", "match": {"value": True}}, [1]),
        ({"key": "f", "match": {"value": 1}}, [1]),  # 1.0 is not 1; "1" is not 1
        ({"key": "ok", "match": {"value": True}}, [0]),
        ({"key": "arr", "match": {"value": 2}}, [0]),
        ({"key": "arr", "match": {"value": "x"}}, [0]),  # [["x"]]: one level only
        ({"key": "obj.k", "match": {"value": "v"}}, [0]),  # no step into an array
        ({"key": "tag", "match": {"any": ["y", 2]}}, [1]),
        ({"key": "tag", "match": {"any": []}}, []),
        ({"key": "n", "range": {"gte": 1}}, [0, 2]),  # bools are not numbers
        ({"key": "n", "range": {"gt": 1, "lt": 2.5}}, []),
        ({"key": "n", "range": {"gt": 1, "lte": 2.5}}, [2]),
        ({"key": "f", "range": {"lte": 1}}, [0, 1]),  # "1" is a string
        ({"key": "n", "range": {"gt": 5, "lt": 1}}, []),
        ({"key": "tag", "is_null": True}, [2, 3, 4]),  # null, absent, no payload
        ({"key": "arr", "is_null": True}, [0, 3, 4]),  # a null element; [] is not null
        ({"key": "obj.k", "is_null": True}, [1, 2, 3, 4]),  # through a non-object: missing
        ({"key": "obj", "is_null": True}, [3, 4]),
        ({"has_id": ["m1", "m4", "zz"]}, [1, 4]),
        ({"has_id": []}, []),
    ],
)
def test_operator_edge_cases(cond: dict[str, Any], rows: list[int]) -> None:
    assert _select(_c(**cond)) == rows


def test_clauses() -> None:
    x = {"key": "tag", "match": {"value": "x"}}
    null = {"key": "tag", "is_null": True}
    assert _select({}) == [0, 1, 2, 3, 4]
    assert _select({"must": [], "should": [], "must_not": []}) == [0, 1, 2, 3, 4]
    assert _select({"must": None, "should": None}) == [0, 1, 2, 3, 4]  # null = absent
    assert _select({"should": [x, null]}) == [0, 1, 2, 3, 4]
    assert _select({"must_not": [x]}) == [2, 3, 4]
    assert _select({"must": [x], "must_not": [{"has_id": ["m0"]}]}) == [1]
    assert _select({"must": [{"should": [x]}, {}]}) == [0, 1]  # {} nested: no constraint
    assert _select({"must_not": [{"must_not": [x]}]}) == [0, 1]


def test_deleted_rows_are_never_selected() -> None:
    ids = ["a", None, "c"]
    alive = np.array([True, False, True])
    pls: list[Any] = [{}, None, {}]
    indexes = PayloadIndexes({"t": "keyword"})
    indexes.add(range(3), pls)
    for view in (RowsView(ids, pls, alive), RowsView(ids, pls, alive, indexes)):
        assert _rows(evaluate(None, view)) == [0, 2]
        assert _rows(evaluate(parse_filter({"must": [{"key": "t", "is_null": True}]}), view)) == [
            0,
            2,
        ]
