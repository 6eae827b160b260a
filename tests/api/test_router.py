"""The router's reading of paths is the only reading: what it routes, no server reads otherwise.

Regression for issue 11, item 6: double-encoded dots (`%252e%252e`), `..;` segments and `;`
path parameters used to fill id parameters and were forwarded.
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import permgate
from permgate.api.router import BadPath

engine = permgate.engine
ID = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")


@pytest.mark.parametrize("seg", [
    "%252e%252e", "%252E%252E%252Fcharges", "..;", ".;", "cus_1;", ";x", "cus_1;jsessionid=1",
    "%2e%2e;", "%25", "cus%5F1", "a%20b", "a:b", "a,b", "a+b", "a=b", "a!b", "a$b", "a~b",
    "a'b", "a(b)", "a*b", "a..b", ".a", "a.", "..", ".",
])
def test_hostile_id_segments_are_refused(seg: str) -> None:
    with pytest.raises(BadPath):
        engine.route("GET", f"/v1/customers/{seg}")
    with pytest.raises(BadPath):
        engine.route("GET", f"/v1/customers/{seg}/sources")


@pytest.mark.parametrize("seg", [
    "cus_NffrFeUfNV2Hib", "acct_1032D82eZvKYlo2C", "file_1Mr4LDLkdIwHu7ixFCz0dZiH",
    "balance.summary.1", "gold-plan", "US", "123",
])
def test_real_id_shapes_route(seg: str) -> None:
    assert engine.route("GET", f"/v1/customers/{seg}") is not None
    assert engine.route("GET", f"/v1/reporting/report_types/{seg}") is not None


@pytest.mark.parametrize("path", ["/v1/customers;/cus_1", "/v1;x/customers", "/v1/%63harges"])
def test_literal_segments_with_parameters_or_escapes_are_not_known(path: str) -> None:
    with contextlib.suppress(BadPath):
        assert engine.route("GET", path) is None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abc_-.;%25eEfF/:", min_size=1, max_size=24))
def test_whatever_routes_reads_the_same_under_any_decoding(tail: str) -> None:
    path = "/v1/customers/" + tail
    try:
        op = engine.route("GET", path)
    except BadPath:
        return
    if op is None:
        return
    # Routed: every segment is a plain id, which single and double decoding leave alone.
    for seg in tail.split("/"):
        assert ID.fullmatch(seg), path
    assert unquote(unquote(path)) == path
    assert ";" not in path
