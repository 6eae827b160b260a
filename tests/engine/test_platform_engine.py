"""The engine is not Stripe-specific: a platform's own API loads through the same loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import permgate
from permgate import BadPath, UnknownPermission


def _write(tmp: Path, name: str, doc: object) -> Path:
    p = tmp / name
    p.write_text(json.dumps(doc))
    return p


@pytest.fixture()
def toy(tmp_path: Path) -> permgate.Engine:
    row = {"product": "Toys", "description": "", "also_request": [], "sources": ["reference"],
           "refused": None}
    perms = {"permissions": [
        {**row, "name": "widget_read", "level": "read", "resource": "widget", "title": "Widgets",
         "implies": []},
        {**row, "name": "widget_write", "level": "write", "resource": "widget",
         "title": "Widgets", "implies": []},
        {**row, "name": "box_read", "level": "read", "resource": "box", "title": "Boxes",
         "implies": ["widget_read"]},
        {**row, "name": "event_read", "level": "read", "resource": "event", "title": "Events",
         "implies": []},
    ]}
    events = {"events": [
        {"type": "widget.created", "permissions": ["widget_read"], "event_read_only": False,
         "source": "documented", "note": None},
        {"type": "app.authorized", "permissions": [], "event_read_only": True,
         "source": "documented", "note": None},
    ]}
    ops = {"operations": [
        {"method": "GET", "path": "/v1/widgets", "permission": "widget_read", "object": "widget",
         "list": True},
        {"method": "GET", "path": "/v1/widgets/search", "permission": "widget_read",
         "object": "widget", "list": True},
        {"method": "GET", "path": "/v1/widgets/{widget}", "permission": "widget_read",
         "object": "widget"},
        {"method": "POST", "path": "/v1/widgets/{widget}", "permission": "widget_write",
         "object": "widget"},
        {"method": "GET", "path": "/v1/boxes/{box}", "permission": "box_read", "object": "box"},
        {"method": "POST", "path": "/v1/vaults", "unavailable": "Vaults have no permission",
         "object": "vault"},
    ]}
    objects = {"objects": {"widget": {"permission": "widget_read"},
                           "box": {"permission": "box_read"},
                           "vault": {"unavailable": "Vaults have no permission"}}}
    expansions = {"expansions": {"widget": {"box": ["box"], "vault": ["vault"],
                                            "holder": ["box", "widget"]},
                                 "box": {"widget": ["widget"]}},
                  "field_permissions": []}
    return permgate.load(
        _write(tmp_path, "p.json", perms), _write(tmp_path, "e.json", events),
        _write(tmp_path, "o.json", ops), _write(tmp_path, "obj.json", objects),
        _write(tmp_path, "x.json", expansions), name="toys",
    )


def test_read_write_and_implication(toy: permgate.Engine) -> None:
    assert toy.decide("GET", "/v1/widgets/w_1", grants={"widget_read"}).allowed
    assert toy.decide("GET", "/v1/widgets/w_1", grants={"widget_write"}).allowed
    assert toy.decide("GET", "/v1/widgets/w_1", grants={"box_read"}).allowed  # box implies widget
    d = toy.decide("POST", "/v1/widgets/w_1", grants={"widget_read", "box_read"})
    assert not d.allowed and d.status == 403
    assert d.missing == (("widget_write",),)
    assert d.required == (("widget_write",),)


def test_required_lists_most_specific_first(toy: permgate.Engine) -> None:
    d = toy.decide("GET", "/v1/widgets/w_1", grants=(), account="acct_9")
    assert d.missing == (("widget_read", "widget_write", "box_read"),)
    assert d.message == (
        "This application does not have the required permissions for this endpoint on account "
        "'acct_9'. Having the 'widget_read' permission would allow this request to continue."
    )


def test_literal_beats_parameter(toy: permgate.Engine) -> None:
    op = toy.route("GET", "/v1/widgets/search")
    assert op is not None and op.path == "/v1/widgets/search"
    assert toy.route("GET", "/v1/widgets/search/more") is None


def test_expansion(toy: permgate.Engine) -> None:
    d = toy.decide("GET", "/v1/widgets/w_1?expand[]=box", grants={"widget_read"})
    assert not d.allowed and d.missing == (("box_read",),)
    assert toy.decide("GET", "/v1/widgets/w_1?expand[0]=box.widget", grants={"box_read"}).allowed
    d = toy.decide("GET", "/v1/widgets?expand[]=box", grants={"box_read"})
    assert d.kind == "bad_request" and d.param == "expand"
    assert toy.decide("GET", "/v1/widgets?expand[]=data.box", grants={"box_read"}).allowed
    # polymorphic: every type the field can hold must be readable
    d = toy.decide("GET", "/v1/widgets/w_1?expand[]=holder", grants={"widget_read"})
    assert d.missing == (("box_read",),)
    d = toy.decide("GET", "/v1/widgets/w_1?expand[]=vault", grants={"widget_read"})
    assert d.kind == "unavailable" and "Vaults have no permission" in d.message
    d = toy.decide("POST", "/v1/widgets/w_1", body=b"name=x&expand%5B%5D=box",
                   grants={"widget_write"})
    assert d.missing == (("box_read",),)


def test_unavailable_unknown_hostile(toy: permgate.Engine) -> None:
    d = toy.decide("POST", "/v1/vaults", grants={"widget_write"})
    assert d.kind == "unavailable" and d.status == 403
    assert toy.decide("GET", "/v1/nothing", grants={"widget_read"}).status == 404
    d = toy.decide("DELETE", "/v1/widgets/w_1", grants={"widget_write"})
    assert d.kind == "unknown" and "GET, POST" in d.message
    for bad in ("/v1/widgets/../boxes/b", "/v1//widgets", "/v1/widgets/%2e%2e", "/v1/widgets/"):
        assert toy.decide("GET", bad, grants={"widget_read"}).kind == "bad_request", bad
    with pytest.raises(BadPath):
        toy.route("GET", "/v1/widgets/./x")


def test_events(toy: permgate.Engine) -> None:
    assert toy.decide_event("widget.created", {"event_read", "box_read"}).allowed
    d = toy.decide_event("widget.created", {"widget_read"})
    assert d.missing == (("event_read",),)
    assert toy.decide_event("app.authorized", {"event_read"}).allowed
    assert toy.decide_event("nope.created", {"event_read"}).kind == "unknown"


def test_grant_validation(toy: permgate.Engine) -> None:
    with pytest.raises(UnknownPermission) as e:
        toy.grant(["widget_reed"])
    assert e.value.suggestion == "widget_read"
    g = toy.grant(["box_read"])
    assert "widget_read" in g.closure
    assert toy.decide("GET", "/v1/widgets/w_1", grants=g).allowed


def test_top_level_shortcuts_are_the_default_engine() -> None:
    d = permgate.decide("GET", "/v1/customers/cus_1", grants={"customer_read"})
    assert d.allowed
    assert permgate.decide_event("customer.created", {"event_read", "customer_read"}).allowed
    assert permgate.engine.catalog.permissions["credit_note_read"].implies == ("invoice_read",)
    assert permgate.engine is permgate.default_engine()
