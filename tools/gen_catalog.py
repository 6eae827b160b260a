"""Generate the Stripe permission catalog from the public sources vendored in data/vendor/.

Reads the facts of the reference page's object table (the seed, extracted from its prose and
committed as `data/vendor/stripe-apps-permissions-reference.object-table.json`), the schema's
permission enum, the documented event table and the SDK's event list; writes
`src/permgate/catalog/data/stripe_permissions.json` and `stripe_events.json`, one row per line so
that a review sees one changed row per change.

    python tools/gen_catalog.py [--shared ../shared] [--check]

`--check` exits 1 if the committed files differ from what the sources give. `--shared` reads the
upstream originals instead (the data folder and the reference's text) and, with `--check`, also
checks the committed facts of the reference; without `--check` it rewrites them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import vendored

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "permgate" / "catalog" / "data"

# The reference page renders "Product" and "Resource" run together ("BillingCoupons"); these are
# the product names the page uses, longest first so that "Stripe Apps" wins over a shorter one.
PRODUCTS = (
    "Money Management", "Stripe Apps", "Reporting", "Checkout", "Terminal", "Treasury",
    "Billing", "Connect", "Issuing", "Webhook", "Orders", "Radar", "Core", "Tax",
)
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*_(read|write)$")
IMPLIES_RE = re.compile(r"implies the following permissions?: (.+?)\.?$")
ALSO_RE = re.compile(r"you must also request ([a-z_]+)\.?")

# Names in "implies" notes that differ from the resource titles of the rows.
TITLE_ALIASES = {"billing clocks": "test clocks"}
# Resources the reference names only as implied, with no row (and so no title of their own).
IMPLIED_ONLY = {
    "mandates": ("mandate", "Mandates"),
    "financing transactions": ("financing_transaction", "Financing Transactions"),
    "balance transfers": ("balance_transfer", "Balance Transfers"),
}
# Schema enum spellings that are typos of documented names: never valid, but suggested.
SCHEMA_TYPOS = {
    "apply_pay_domain_read": "apple_pay_domain_read",
    "apply_pay_domain_write": "apple_pay_domain_write",
    "shpping_rate_write": "shipping_rate_write",
}
# Names outside the seed's rows that Stripe accepts (schema enum, or the event table).
EXTRA_NAMES: dict[str, dict[str, str]] = {
    "elements_write": {
        "product": "Core", "title": "Elements", "source": "schema",
        "description": "Allows Stripe.js Elements to act for the account (named by the "
        "reference's \"must also request\" notes; listed in the manifest schema).",
    },
    "mandate_write": {
        "product": "Core", "title": "Mandates", "source": "schema",
        "description": "Listed in the manifest schema and requested by published apps; "
        "the reference has no row for Mandates.",
    },
    "stripecli_session_write": {
        "product": "Stripe Apps", "title": "Stripe CLI sessions", "source": "schema",
        "description": "Listed in the manifest schema only; not described by the reference.",
    },
    "capital_for_platforms_financing_offer_read": {
        "product": "Capital", "title": "Capital for platforms financing offers",
        "source": "schema",
        "description": "Listed in the manifest schema only; not described by the reference.",
    },
    "funding_instruction_read": {
        "product": "Core", "title": "Funding Instructions", "source": "event-table",
        "description": "Named by the event permission table (topup.* events) only.",
    },
    "issuing_card_sensitive_read": {
        "product": "Issuing", "title": "Issuing card sensitive data", "source": "event-table",
        "description": "Named by the event permission table "
        "(issuing_personalization_design.* events) only.",
    },
}
REFUSED = {
    "webhook_write": "Stripe refuses webhook_write at upload (\"requesting webhook_write "
    "permission is disallowed\"); listen to your connected accounts' events with a webhook "
    "endpoint instead, or contact Stripe Support.",
}
# Events that need only event_read (the reference: account.application.* reach every app).
EVENT_READ_ONLY = ("account.application.authorized", "account.application.deauthorized")


def parse_reference(text: str) -> list[dict[str, Any]]:
    """The object table of the reference page: one dict per row, in page order."""
    start = text.index("ProductResourcePermissionsDescription")
    end = text.index("Event permissions", start)
    lines = [ln.strip() for ln in text[start:end].splitlines()[1:]]
    lines = [ln for ln in lines if ln]
    rows: list[dict[str, Any]] = []
    i = 0
    while i < len(lines):
        header = lines[i]
        names: list[str] = []
        j = i + 1
        while j < len(lines) and NAME_RE.match(lines[j]):
            names.append(lines[j])
            j += 1
        if not names:
            raise SystemExit(f"reference: expected permission names after {header!r}")
        desc: list[str] = []
        while j < len(lines) and not (j + 1 < len(lines) and NAME_RE.match(lines[j + 1])):
            if NAME_RE.match(lines[j]):
                raise SystemExit(f"reference: stray permission name {lines[j]!r}")
            desc.append(lines[j])
            j += 1
        product = next((p for p in PRODUCTS if header.startswith(p)), None)
        if product is None or header == product:
            raise SystemExit(f"reference: cannot split product from {header!r}")
        rows.append({
            "product": product, "title": header[len(product):], "names": names, "text": desc,
        })
        i = j
    return rows


def resource_key(names: list[str]) -> str:
    keys = {n.rsplit("_", 1)[0] for n in names}
    if len(keys) != 1:
        raise SystemExit(f"reference: one row with two resources: {names}")
    return keys.pop()


def split_titles(phrase: str) -> list[str]:
    """'Mandates (Read), Payment Intents (Read), and SKUs (Read)' -> titles, read-only."""
    parts = re.split(r",\s*(?:and\s+)?|\s+and\s+", phrase)
    titles = []
    for part in parts:
        m = re.fullmatch(r"(.+?) \(Read\)", part.strip())
        if not m:
            raise SystemExit(f"reference: cannot read implied permission {part!r}")
        titles.append(m.group(1))
    return titles


def dump_reference_facts(rows: list[dict[str, Any]]) -> str:
    """The reference's object table as committed: one row per line, in page order."""
    return "[\n" + ",\n".join(" " + json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n"


def build_permissions(rows: list[dict[str, Any]], schema_enum: list[str],
                      event_names: set[str]) -> list[dict[str, Any]]:
    by_title = {r["title"].lower(): resource_key(r["names"]) for r in rows}
    out: dict[str, dict[str, Any]] = {}
    implied_only: dict[str, dict[str, Any]] = {}

    def resolve(title: str) -> str:
        low = TITLE_ALIASES.get(title.lower(), title.lower())
        if low in by_title:
            key = by_title[low]
            if f"{key}_read" not in {n for r in rows for n in r["names"]}:
                raise SystemExit(f"reference: {title} (Read) implied, but it has no read")
            return f"{key}_read"
        if low in IMPLIED_ONLY:
            key, shown = IMPLIED_ONLY[low]
            implied_only.setdefault(f"{key}_read", {"title": shown})
            return f"{key}_read"
        raise SystemExit(f"reference: implied resource {title!r} is unknown")

    for row in rows:
        implies: list[str] = []
        also: list[dict[str, str]] = []
        description: list[str] = []
        for line in row["text"]:
            m = IMPLIES_RE.search(line)
            if m:
                implies.extend(resolve(t) for t in split_titles(m.group(1)))
                continue
            a = ALSO_RE.search(line)
            if a:
                also.append({"permission": a.group(1), "note": line})
                continue
            description.append(line)
        for name in row["names"]:
            out[name] = {
                "name": name,
                "level": name.rsplit("_", 1)[1],
                "resource": resource_key(row["names"]),
                "product": row["product"],
                "title": row["title"],
                "description": " ".join(description),
                "implies": implies,
                "also_request": also,
                "sources": ["reference"],
                "refused": REFUSED.get(name),
            }
    for name, info in implied_only.items():
        out[name] = {
            "name": name, "level": "read", "resource": name.rsplit("_", 1)[0],
            "product": "", "title": info["title"],
            "description": f"Named by the reference only as implied by other permissions "
            f"(\"{info['title']} (Read)\"); it has no row of its own.",
            "implies": [], "also_request": [], "sources": ["implied"], "refused": None,
        }
    for name, info in EXTRA_NAMES.items():
        if name in out:
            raise SystemExit(f"{name} is in the reference now: drop it from EXTRA_NAMES")
        row = {
            "name": name, "level": name.rsplit("_", 1)[1], "resource": name.rsplit("_", 1)[0],
            "product": info["product"], "title": info["title"],
            "description": info["description"], "implies": [], "also_request": [],
            "sources": [info["source"]], "refused": None,
        }
        out[name] = row
    for name in schema_enum:
        if name in SCHEMA_TYPOS:
            continue
        if name not in out:
            raise SystemExit(f"schema enum name {name!r} is neither documented nor known")
        if "schema" not in out[name]["sources"]:
            out[name]["sources"].append("schema")
    for name in event_names:
        if name not in out:
            raise SystemExit(f"event table names unknown permission {name!r}")
    for name, fix in SCHEMA_TYPOS.items():
        if fix not in out:
            raise SystemExit(f"typo {name} points at unknown {fix}")
    for p in out.values():
        for target in p["implies"]:
            if target not in out:
                raise SystemExit(f"{p['name']} implies unknown {target}")
        for a in p["also_request"]:
            if a["permission"] not in out:
                raise SystemExit(f"{p['name']} asks for unknown {a['permission']}")
    return sorted(out.values(), key=lambda p: p["name"])


def build_events(
    documented: dict[str, list[str]], sdk_events: list[str], objects: dict[str, Any],
    event_objects: dict[str, Any], permission_names: set[str],
) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for etype, perms in documented.items():
        note = None
        only_event_read = etype in EVENT_READ_ONLY
        if only_event_read:
            perms = []
            note = "needs only event_read"
        elif not perms:
            note = ("the documented table's cell is empty: no permission allows it, so no app "
                    "receives it (deny by default)")
        rows[etype] = {"type": etype, "permissions": sorted(perms),
                       "event_read_only": only_event_read, "source": "documented", "note": note}
    for etype in sdk_events:
        if etype in rows:
            continue
        obj = event_object(etype, objects, event_objects)
        siblings = {tuple(documented[e]) for e in documented
                    if e.rsplit(".", 1)[0] == etype.rsplit(".", 1)[0] and documented[e]}
        if len(siblings) == 1:
            perms = list(next(iter(siblings)))
            note = f"derived: as the documented {etype.rsplit('.', 1)[0]}.* events"
        elif isinstance(obj, dict):
            perms = []
            note = f"derived: not receivable; {obj['unavailable']}"
        else:
            perms = [f"{obj}_read"]
            if perms[0] not in permission_names:
                raise SystemExit(f"{etype}: derived {perms[0]} is not a permission")
            note = f"derived from the event's object ({etype.rsplit('.', 1)[0]})"
        rows[etype] = {"type": etype, "permissions": sorted(perms), "event_read_only": False,
                       "source": "derived", "note": note}
    return sorted(rows.values(), key=lambda r: r["type"])


def event_object(etype: str, objects: dict[str, Any], event_objects: dict[str, Any]) -> Any:
    """The resource of the object an event type is about: longest known prefix wins."""
    parts = etype.split(".")
    for n in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in event_objects:
            target = event_objects[prefix]
            return target if isinstance(target, dict) else objects[target]
        if prefix in objects:
            return objects[prefix]
    raise SystemExit(f"event {etype}: no object type known for it (add it to stripe_objects.json)")


def dump_rows(meta: dict[str, Any], key: str, rows: list[dict[str, Any]]) -> str:
    body = ",\n".join("  " + json.dumps(r, ensure_ascii=False, sort_keys=False) for r in rows)
    return (
        "{\n \"_meta\": " + json.dumps(meta, ensure_ascii=False) + ",\n"
        f" \"{key}\": [\n" + body + "\n ]\n}\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--shared", type=Path, default=None,
                    help="read the upstream originals in this folder (a provenance check)")
    ap.add_argument("--check", action="store_true", help="fail if the committed files differ")
    args = ap.parse_args(argv)
    data = vendored.VENDOR if args.shared is None else args.shared / "data"
    facts = dump_reference_facts(json.loads(vendored.REFERENCE_FACTS.read_text("utf-8"))
                                 if vendored.REFERENCE_FACTS.exists() else [])
    if args.shared is not None:
        ref = (args.shared / vendored.REFERENCE_TEXT).read_text(encoding="utf-8")
        extracted = dump_reference_facts(parse_reference(ref))
        if extracted != facts:
            if args.check:
                print(f"stale: {vendored.REFERENCE_FACTS.relative_to(ROOT)}", file=sys.stderr)
                return 1
            vendored.REFERENCE_FACTS.write_text(extracted, encoding="utf-8")
            facts = extracted
    rows = json.loads(facts)
    schema = vendored.read_json("stripe-apps-schema/stripe-app.schema.json", data)
    enum = schema["properties"]["permissions"]["items"]["properties"]["permission"]["enum"]
    documented = vendored.read_json("event-permissions.json", data)
    documented.pop("_meta")
    sdk_events = vendored.read_json("stripe-event-types.python-sdk-16.1.0.json", data)
    hand = json.loads((ROOT / "tools" / "stripe_objects.json").read_text())
    objects = hand["objects"]
    event_objects = {k: v for k, v in hand["event_objects"].items() if not k.startswith("_")}

    event_names = {p for perms in documented.values() for p in perms}
    perms = build_permissions(rows, enum, event_names)
    names = {p["name"] for p in perms}
    events = build_events(documented, sdk_events, objects, event_objects, names)

    meta_p = {
        "generator": "tools/gen_catalog.py",
        "sources": [
            "shared/docs/stripe-apps-permissions-reference.txt (Stripe Apps permissions "
            "reference; the object table)",
            "shared/data/stripe-apps-schema/stripe-app.schema.json (permission enum; typos "
            "kept only as suggestions)",
            "shared/data/event-permissions.json (names used by the event table)",
        ],
        "generated": "2026-11-26",
        "typos": SCHEMA_TYPOS,
        "source_kinds": {
            "reference": "a row of the reference's object table",
            "implied": "named by the reference only as implied by another permission",
            "schema": "listed in the published manifest schema's enum",
            "event-table": "named by the documented event permission table",
        },
    }
    meta_e = {
        "generator": "tools/gen_catalog.py",
        "sources": [
            "shared/data/event-permissions.json (documented table, 162 rows, 2025-03)",
            "shared/data/stripe-event-types.python-sdk-16.1.0.json (current event types)",
            "tools/stripe_objects.json (object -> resource, for derived rules)",
        ],
        "generated": "2026-11-26",
        "rule": "an app receives an event if it holds event_read and, unless event_read_only, "
        "at least one of the row's permissions (none listed: no app receives it)",
    }
    outputs = {
        OUT / "stripe_permissions.json": dump_rows(meta_p, "permissions", perms),
        OUT / "stripe_events.json": dump_rows(meta_e, "events", events),
    }
    stale = [p for p, text in outputs.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"stale: {p.relative_to(ROOT)}", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for p, text in outputs.items():
        p.write_text(text, encoding="utf-8")
    documented_n = sum(1 for e in events if e["source"] == "documented")
    derived = [e for e in events if e["source"] == "derived"]
    print(f"permissions: {len(perms)} "
          f"({sum('reference' in p['sources'] for p in perms)} from reference rows)")
    print(f"events: {len(events)} ({documented_n} documented, {len(derived)} derived, "
          f"{sum(1 for e in derived if not e['permissions'])} derived as not receivable)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
