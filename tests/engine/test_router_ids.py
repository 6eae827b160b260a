"""The router's fast acceptance of id segments (api/router.py) agrees with the full check."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

import permgate
from permgate.api.operations import Operation
from permgate.api.router import BadPath, Router, segment_reason

ROUTER = Router([Operation("GET", "/v1/things/{thing}", "thing_read", None, "thing")])
OP = ROUTER.operations[0]


def routes(seg: str) -> bool | None:
    """True: routed; False: refused as hostile; None: unknown."""
    try:
        return ROUTER.route("GET", f"/v1/things/{seg}") is OP or None
    except BadPath:
        return False


def test_uuid_and_dashed_ids_route() -> None:
    for seg in ("123e4567-e89b-12d3-a456-426614174000", "price-gold", "123", "cus_1",
                "balance.summary.1", "A-_-b"):
        assert routes(seg) is True, seg
    engine = permgate.default_engine()
    d = engine.decide("GET", "/v1/customers/123e4567-e89b-12d3-a456-426614174000", None,
                      engine.grant(["customer_read"]))
    assert d.allowed


@given(st.text(alphabet=string.printable + "é", max_size=12))
def test_fast_path_agrees_with_segment_reason(seg: str) -> None:
    if "/" in seg or "?" in seg:
        return
    expected = segment_reason(seg) is None and seg.isascii()
    assert (routes(seg) is True) == expected, seg
