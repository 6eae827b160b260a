"""The example API's DIR (examples/own-api/openapi.yaml), written by hand as
/work/brief/apidir.md fixes it: what `permgate init --from-openapi ... --permissions objects`
makes of that document. Until the `init` command is in the tree the edge's tests load this;
the README walkthrough (tests/ownapi/test_walkthrough.py) runs the real `init`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "examples" / "own-api"
SPEC = EXAMPLE / "openapi.yaml"
OBJECTS = {"customer": "Customers", "product": "Products", "order": "Orders"}
RULE = "hand-written for the edge's tests (tests/ownapi/acme.py)"


def _perm(name: str, level: str, resource: str, title: str, description: str) -> dict[str, Any]:
    return {"name": name, "level": level, "resource": resource, "product": "Acme",
            "title": title, "description": description, "implies": [], "also_request": [],
            "sources": ["reference"], "refused": None, "rule": RULE}


def tables() -> dict[str, Any]:
    perms = [_perm("event_read", "read", "event", "Events",
                   "Read the events of the objects the app may read.")]
    for obj, title in OBJECTS.items():
        perms.append(_perm(f"{obj}_read", "read", obj, title, f"Read {title.lower()}."))
        perms.append(_perm(f"{obj}_write", "write", obj, title,
                           f"Create and change {title.lower()}."))

    def op(method: str, path: str, obj: str, level: str, is_list: bool = False
           ) -> dict[str, Any]:
        return {"method": method, "path": "/v1" + path, "permission": f"{obj}_{level}",
                "unavailable": None, "object": obj, "objects": [obj], "list": is_list,
                "sources": ["openapi"], "rule": f"{RULE}: object {obj}, {level}"}

    operations = [
        op("GET", "/customers", "customer", "read", True),
        op("POST", "/customers", "customer", "write"),
        op("GET", "/customers/{customer}", "customer", "read"),
        op("GET", "/products", "product", "read", True),
        op("GET", "/products/{product}", "product", "read"),
        op("GET", "/orders", "order", "read", True),
        op("POST", "/orders", "order", "write"),
        op("POST", "/orders/search", "order", "read", True),
        op("GET", "/orders/{order}", "order", "read"),
        op("PATCH", "/orders/{order}", "order", "write"),
    ]
    return {
        "permissions": {"_meta": {"generator": RULE}, "permissions": perms},
        "events": {"_meta": {"generator": RULE}, "events": [
            {"type": "order.created", "permissions": ["order_read"], "event_read_only": False,
             "source": "openapi webhooks", "note": None},
            {"type": "customer.created", "permissions": ["customer_read"],
             "event_read_only": False, "source": "openapi webhooks", "note": None},
        ]},
        "operations": {"_meta": {"generator": RULE}, "operations": operations},
        "objects": {"_meta": {"generator": RULE}, "objects": {
            obj: {"permission": f"{obj}_read"} for obj in OBJECTS}},
        "expansions": {"_meta": {"generator": RULE}, "expansions": {
            "order": {"customer": ["customer"]}}, "field_permissions": []},
    }


def api_toml(upstream: str = "http://127.0.0.1:8000", spec: Path = SPEC,
             digest: str | None = None, **edge: str) -> str:
    digest = digest or hashlib.sha256(spec.read_bytes()).hexdigest()
    fields = {"base_paths": '["/v1"]', "account_header": '"Acme-Account"',
              "auth_schemes": '["bearer"]', "body_encodings": '["json"]',
              "expand_style": '"comma"', "expand_param": '"expand"',
              "error_style": '"problem"'}
    fields.update(edge)
    lines = "".join(f"{k} = {v}\n" for k, v in fields.items())
    return (f'[api]\nname = "acme"\ntitle = "Acme Orders API"\nspec = {json.dumps(str(spec))}\n'
            f'spec_sha256 = "{digest}"\npermissions_style = "objects"\n\n[edge]\n{lines}\n'
            f'[upstream]\nurl = "{upstream}"\nauth_scheme = "bearer"\n')


def write_dir(directory: Path, *, upstream: str = "http://127.0.0.1:8000",
              spec: Path = SPEC, **edge: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, doc in tables().items():
        (directory / f"{name}.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    (directory / "api.toml").write_text(api_toml(upstream, spec, **edge), encoding="utf-8")
    (directory / "REVIEW.md").write_text("# Review\n\nHand-written tables.\n",
                                         encoding="utf-8")
    return directory
