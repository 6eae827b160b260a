"""api.toml's reader (strict, one line per mistake), the expand styles, and the API a
process decides for (`permgate.use_api`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.ownapi.acme import SPEC, api_toml, write_dir

import permgate
from permgate.api.params import BadParam, ExpandReader
from permgate.api.profile import (
    STRIPE_PROFILE,
    ApiDirError,
    parse_api_toml,
    read_profile,
    reinit_command,
    spec_changed,
)


@pytest.fixture
def acme(tmp_path: Path) -> Iterator[Path]:
    yield write_dir(tmp_path / "acme")
    permgate.use_api(None)


def test_the_example_dir_loads_with_its_edge(acme: Path) -> None:
    engine, profile = permgate.read_api_dir(acme, check_spec=True)
    assert profile.name == "acme" and profile.title == "Acme Orders API"
    assert profile.account_header == "Acme-Account"
    assert profile.account_header_lower == b"acme-account"
    assert (profile.auth_schemes, profile.body_encodings) == (("bearer",), ("json",))
    assert (profile.expand_style, profile.error_style) == ("comma", "problem")
    assert profile.upstream_url == "http://127.0.0.1:8000" and not profile.stripe
    assert profile.spec == str(SPEC) and spec_changed(profile) is None
    assert engine.catalog.name == "acme"
    d = engine.decide("GET", "/v1/orders/ord_1?expand=customer", None, {"order_read"})
    assert d.kind == "missing" and d.missing == (("customer_read", "customer_write"),)
    assert engine.decide("GET", "/v1/orders/ord_1?expand=customer", None,
                         {"order_read", "customer_read"}).allowed
    assert engine.decide("POST", "/v1/orders/search", None, {"order_read"}).allowed
    assert not engine.decide("POST", "/v1/orders", None, {"order_read"}).allowed
    assert engine.decide_event("order.created", {"event_read", "order_write"}).allowed
    assert not engine.decide_event("order.created", {"event_read", "customer_read"}).allowed


def test_stripe_is_one_profile_of_the_table() -> None:
    p = STRIPE_PROFILE
    assert p.stripe and p.account_header == "Stripe-Account" and p.expand_style == "stripe"
    assert p.auth_schemes == ("basic", "bearer") and p.error_style == "stripe"
    assert p.base_paths == ("/v1", "/v2") and spec_changed(p) is None
    assert permgate.api_profile() is p and permgate.default_engine() is permgate.engine


def test_use_api_switches_the_process_and_back(acme: Path) -> None:
    engine, profile = permgate.use_api(acme)
    assert permgate.default_engine() is engine and permgate.api_profile() is profile
    from permgate.manifest._catalog import default_catalog

    assert default_catalog() is engine.catalog and "order_read" in engine.catalog.permissions
    permgate.use_api(None)
    assert permgate.default_engine() is permgate.engine
    assert default_catalog() is permgate.engine.catalog


def test_a_changed_spec_is_refused_with_the_command_to_rerun(tmp_path: Path) -> None:
    spec = tmp_path / "openapi.yaml"
    spec.write_bytes(SPEC.read_bytes())
    d = write_dir(tmp_path / "acme", spec=spec)
    permgate.read_api_dir(d, check_spec=True)
    spec.write_bytes(SPEC.read_bytes() + b"\n# changed\n")
    with pytest.raises(ApiDirError) as e:
        permgate.read_api_dir(d, check_spec=True)
    msg = str(e.value)
    assert "changed since its tables were made" in msg and "\n" not in msg
    assert f"permgate init --from-openapi {spec} --out {d.resolve()}" in msg
    assert reinit_command(read_profile(d)) in msg
    permgate.read_api_dir(d)  # without the check (every command but serve): it loads
    spec.unlink()
    with pytest.raises(ApiDirError, match="cannot be read"):
        permgate.read_api_dir(d, check_spec=True)


BAD_TOML = [
    ("[api]\nname = 'acme'\n[nope]\n", "unknown key 'nope'"),
    ("name = 1", "unknown key 'name'"),
    ("[edge]\n", "api is missing"),
    ("[api]\nname = 'Acme'\n", "name must match"),
    ("[api]\nname = 'stripe'\n", "built-in profile"),
    ("[api]\nname = 'acme'\n", "spec is missing"),
    ("[api]\nname = 'acme'\nspec = 'x'\nspec_sha256 = 'zz'\n", "64 hex digits"),
    ("[api]\nname = 'acme'\nspec = 'x'\nspec_sha256 = '" + "0" * 64 + "'\ncolour = 1\n",
     "unknown key 'colour'"),
    ("this is = not toml [", "not valid TOML"),
]


@pytest.mark.parametrize("text,message", BAD_TOML)
def test_api_toml_mistakes_are_one_line(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ApiDirError) as e:
        parse_api_toml(text, tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value)


BAD_EDGE = [
    ({"auth_schemes": '["digest"]'}, "auth_schemes must be one of basic, bearer"),
    ({"auth_schemes": "[]"}, "at least one"),
    ({"auth_schemes": '["bearer", "bearer"]'}, "twice"),
    ({"body_encodings": '["xml"]'}, "body_encodings must be one of form, json"),
    ({"expand_style": '"graphql"'}, "expand_style must be one of"),
    ({"expand_style": '"stripe"', "expand_param": '"embed"'}, "must be \"expand\""),
    ({"expand_param": '"a b"'}, "expand_param must be a parameter name"),
    ({"error_style": '"html"'}, "error_style must be one of stripe, problem"),
    ({"account_header": '"Authorization"'}, "account_header must be a header name"),
    ({"account_header": '"Bad Header"'}, "account_header must be a header name"),
    ({"base_paths": '["v1"]'}, "base_paths must be paths"),
    ({"base_paths": '"/v1"'}, "base_paths must be a list"),
    ({"colour": '"blue"'}, "unknown key 'colour'"),
]


@pytest.mark.parametrize("edge,message", BAD_EDGE)
def test_edge_mistakes_are_one_line(edge: dict[str, str], message: str,
                                    tmp_path: Path) -> None:
    with pytest.raises(ApiDirError) as e:
        parse_api_toml(api_toml(**edge), tmp_path, "DIR/api.toml")
    assert message in str(e.value) and str(e.value).startswith("DIR/api.toml [edge]: ")


@pytest.mark.parametrize("url", ["ftp://x", "http://user:pw@h", "http://h/?q=1", "nohost"])
def test_upstream_url_is_checked(url: str, tmp_path: Path) -> None:
    with pytest.raises(ApiDirError, match=r"\[upstream\]: url must be"):
        parse_api_toml(api_toml(upstream=url), tmp_path)


def test_broken_dirs_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ApiDirError, match="not a folder"):
        permgate.read_api_dir(tmp_path / "missing")
    d = write_dir(tmp_path / "acme")
    (d / "events.json").unlink()
    with pytest.raises(ApiDirError, match=r"events\.json: cannot be read"):
        permgate.read_api_dir(d)
    d = write_dir(tmp_path / "acme2")
    (d / "operations.json").write_text("{not json")
    with pytest.raises(ApiDirError, match="its tables cannot be loaded"):
        permgate.read_api_dir(d)
    d = write_dir(tmp_path / "acme3")
    doc = json.loads((d / "operations.json").read_text())
    doc["operations"][0]["permission"] = "nobody_read"
    (d / "operations.json").write_text(json.dumps(doc))
    with pytest.raises(ApiDirError, match="unknown permissions"):
        permgate.read_api_dir(d)
    d = write_dir(tmp_path / "acme4")
    (d / "api.toml").write_bytes(b"#" * 70_000)
    with pytest.raises(ApiDirError, match="larger than"):
        permgate.read_api_dir(d)


def test_comma_style() -> None:
    r = ExpandReader("comma", "expand")
    assert r.query("expand=customer,product&limit=3") == ("customer", "product")
    assert r.query("expand=customer&expand=customer%2Cproduct") == ("customer", "product")
    assert r.query("limit=3") == () and r.query("") == ()
    assert r.query("expand=+customer+,,") == ("customer",)
    for bad in ("expand[]=customer", "EXPAND=customer", "expand%5B%5D=customer",
                "%65xpand=customer", "expand%255B%255D=x"):
        with pytest.raises(BadParam) as e:
            r.query(bad)
        assert e.value.param == "expand"
    with pytest.raises(BadParam, match="';' is not a parameter separator"):
        r.query("a=1;expand=customer")
    with pytest.raises(BadParam, match="at most 64"):
        r.query("expand=" + ",".join(f"f{i}" for i in range(65)))
    assert r.body({"expand": ["customer"], "name": "x"}) == ("customer",)
    assert r.body(b"expand=customer") == ("customer",)
    with pytest.raises(BadParam):
        r.body({"Expand": "customer"})
    assert r.query("expanded_view=1") == ()  # another word: not the parameter


def test_include_and_none_styles() -> None:
    inc = ExpandReader("include", "include")
    assert inc.query("include=author,comments.author") == ("author", "comments.author")
    for bad in ("include[]=author", "expand=author", "Expand[]=author"):
        with pytest.raises(BadParam, match="include=a,b"):
            inc.query(bad)
    assert inc.query("included_only=1&expanded=1") == ()
    none = ExpandReader("none", "expand")
    assert none.query("limit=1") == ()
    for q in ("expand=customer", "expand[]=customer", "EXPAND=x"):
        with pytest.raises(BadParam, match="expands nothing"):
            none.query(q)
    with pytest.raises(ValueError):
        ExpandReader("stripe", "embed")
    with pytest.raises(ValueError):
        ExpandReader("graphql")


def test_an_engine_with_another_style_refuses_stripes_spelling(acme: Path) -> None:
    engine, _ = permgate.read_api_dir(acme)
    d = engine.decide("GET", "/v1/orders/ord_1?expand[]=customer", None, {"order_read"})
    assert d.kind == "bad_request" and d.param == "expand" and "expand=a,b" in d.message
    # Stripe's engine is untouched by it.
    assert permgate.engine.decide("GET", "/v1/charges/ch_1?expand[]=customer", None,
                                  {"charge_read", "customer_read"}).allowed
