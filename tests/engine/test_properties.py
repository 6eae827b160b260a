"""Properties that must hold for every request and grant set (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import permgate
from permgate import BadPath

engine = permgate.engine
cat = engine.catalog
NAMES = sorted(cat.permissions)
OPS = [op for op in engine.operations if op.permission is not None]
FIELDS = sorted({f for obj in engine.graph.objects() for f in engine.graph.fields(obj)})

concrete_id = st.from_regex(r"[a-z]{2,4}_[A-Za-z0-9]{1,12}", fullmatch=True)
grants = st.sets(st.sampled_from(NAMES), max_size=12)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str]:
    op = draw(st.sampled_from(OPS))
    segs = [draw(concrete_id) if s.startswith("{") else s for s in op.path.split("/")]
    path = "/".join(segs)
    expands = draw(st.lists(st.sampled_from(FIELDS), max_size=2))
    if expands:
        prefix = "data." if op.is_list else ""
        path += "?" + "&".join(f"expand[]={prefix}{e}" for e in expands)
    return op.method, path


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), grants, grants)
@pytest.mark.slow
def test_adding_a_grant_never_turns_allow_into_deny(
    req: tuple[str, str], base: set[str], extra: set[str]
) -> None:
    method, path = req
    if engine.decide(method, path, grants=base).allowed:
        assert engine.decide(method, path, grants=base | extra).allowed


@settings(max_examples=300)
@given(st.sampled_from([op for op in OPS if op.permission and op.permission.endswith("_read")]),
       grants)
def test_write_covers_read(op: permgate.Operation, base: set[str]) -> None:
    assert op.permission is not None
    write = op.permission[: -len("_read")] + "_write"
    if write not in cat.permissions:
        return
    path = "/".join("x_1" if s.startswith("{") else s for s in op.path.split("/"))
    assert engine.decide(op.method, path, grants=base | {write}).allowed


dot_segment = st.sampled_from([".", "..", "%2e", "%2E%2e", ".%2e", "%2e."])


@settings(max_examples=400)
@given(st.sampled_from(OPS), dot_segment, st.integers(min_value=1, max_value=6))
def test_router_never_accepts_a_dot_segment(
    op: permgate.Operation, dots: str, where: int
) -> None:
    segs = ["x_1" if s.startswith("{") else s for s in op.path.split("/")]
    segs.insert(min(where, len(segs)), dots)
    path = "/".join(segs)
    try:
        routed = engine.route(op.method, path)
    except BadPath:
        return
    raise AssertionError(f"{path} routed to {routed}")


@settings(max_examples=300)
@given(st.text(alphabet="/.%2eEfF0aA_-\\ ", max_size=40))
def test_anything_routed_has_no_dot_segment(path: str) -> None:
    try:
        op = engine.route("GET", "/" + path)
    except BadPath:
        return
    if op is not None:
        assert not any(s in (".", "..") for s in ("/" + path).split("/"))
        assert "%2e" not in path.lower()
