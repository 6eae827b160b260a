"""Reading `expand` from queries and form bodies: only the exact spellings count, and any key
another parser could read as `expand` is refused (issue 11, item 6), as is a raw `;` in a
query (Rack and old CGI parsers split on it). Each case here was forwarded unchecked before:
the key was ignored, so the request was decided as if it expanded nothing."""

from __future__ import annotations

import pytest

import permgate
from permgate.api.params import BadParam, expand_from_body, expand_from_form, expand_from_query

engine = permgate.engine


@pytest.mark.parametrize("key", [
    "EXPAND[]", "Expand[]", "EXPAND", "[expand][]", "[expand]", "expand[][]", "expand[0][x]",
    "expand[foo]", "expand%255B%255D", "EXPAND%5B%5D", "%5Bexpand%5D%5B%5D", "expand+",
    "%20expand[]", "expand[%20]", "%2545xpand[]",
])
def test_lookalike_expand_keys_are_refused(key: str) -> None:
    d = engine.decide("GET", f"/v1/charges/ch_1?{key}=customer", None, {"charge_read"})
    assert d.kind == "bad_request" and d.status == 400 and d.param == "expand", key
    assert "expand" in d.message
    d = engine.decide("POST", "/v1/charges/ch_1", f"{key}=customer".encode(), {"charge_write"})
    assert d.kind == "bad_request" and d.param == "expand", key


@pytest.mark.parametrize("key", [
    "expand", "expand[]", "expand[0]", "expand[12]", "expand%5B%5D", "expand%5b0%5d",
    "%65xpand[]",
])
def test_exact_spellings_are_read(key: str) -> None:
    assert expand_from_form(f"a=1&{key}=customer") == ("customer",)
    d = engine.decide("GET", f"/v1/charges/ch_1?{key}=customer", None, {"charge_read"})
    assert d.kind == "missing" and d.missing == (engine.catalog.satisfiers("customer_read"),)


def test_other_keys_are_left_alone() -> None:
    assert expand_from_form("expand_at=1&expandable=2&foo[expand]=3&q=expand") == ()
    assert engine.decide("GET", "/v1/charges/ch_1?expandable=x", None, {"charge_read"}).allowed


def test_semicolon_in_a_query_is_refused() -> None:
    with pytest.raises(BadParam):
        expand_from_query("limit=3;expand[]=customer")
    d = engine.decide("GET", "/v1/charges/ch_1?limit=3;expand[]=customer", None,
                      {"charge_read"})
    assert d.kind == "bad_request" and d.status == 400
    assert "';'" in d.message
    d = engine.decide("GET", "/v1/charges?limit=3;x=1", None, {"charge_read"})
    assert d.kind == "bad_request"
    # Percent-encoded, it is data, not a separator.
    assert engine.decide("GET", "/v1/charges?description=a%3Bb", None, {"charge_read"}).allowed


def test_semicolon_in_a_form_body_that_names_expand_is_refused() -> None:
    # Found by the gateway fuzz test: `description=x;expand%5B%5D=customer` in a form body
    # was forwarded, and an upstream that splits on ';' expands the customer.
    with pytest.raises(BadParam):
        expand_from_body(b"description=x;expand%5B%5D=customer")
    d = engine.decide("POST", "/v1/charges/ch_1", b"description=x;expand[]=customer",
                      {"charge_write"})
    assert d.kind == "bad_request" and "form body" in d.message
    # A ';' that cannot hide a key (no '%', no 'expand') is plain data.
    assert engine.decide("POST", "/v1/charges/ch_1", b"description=a;b", {"charge_write"}).allowed


def test_mapping_bodies_follow_the_same_rules() -> None:
    assert expand_from_body({"expand": ["customer", "customer"]}) == ("customer",)
    with pytest.raises(BadParam):
        expand_from_body({"EXPAND": ["customer"]})
