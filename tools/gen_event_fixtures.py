"""Generate the sample objects `permgate trigger` puts in test events.

Reads Stripe's API fixtures (`data/vendor/stripe-openapi/stripe-openapi-git/fixtures3.json.gz`,
MIT, one sample object per resource) and the event catalog; writes
`src/permgate/events/data/event_fixtures.json`: for each event type of the catalog, the
resource of its `data.object`, and each such resource's sample once; and the API version test
events carry (`api_version`): the one the official Python library pins (stripe-python 16.1.0,
a development dependency: `stripe._api_version`), the newest version of the sources we hold
(the fixtures are from 2026-07-29, and the SDK's types back the expansion model).

    python tools/gen_event_fixtures.py [--shared ../shared] [--check]

The object of an event is found from its type: the type without its last segment
(`customer.subscription.updated` -> `customer.subscription`), tried as it is, with its
first `_` as a `.` (`issuing_card` -> `issuing.card`), with `.` as `_`, then its last part
(`subscription`); a few names differ and are listed in ALIASES.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vendored

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "permgate" / "events" / "data" / "event_fixtures.json"
EVENTS = ROOT / "src" / "permgate" / "catalog" / "data" / "stripe_events.json"
FIXTURES = "data/stripe-openapi/stripe-openapi-git/fixtures3.json"
ALIASES = {"application_fee.refund": "fee_refund", "customer.source": "source",
           "account.application": "application"}


def resource_of(event_type: str, resources: set[str]) -> str | None:
    prefix = event_type.rsplit(".", 1)[0]
    if prefix in ALIASES:
        return ALIASES[prefix]
    for name in (prefix, prefix.replace("_", ".", 1), prefix.replace(".", "_"),
                 prefix.rsplit(".", 1)[-1]):
        if name in resources:
            return name
    return None


def build(data: Path = vendored.VENDOR) -> dict[str, Any]:
    fixtures = vendored.read_json(FIXTURES.removeprefix("data/"), data)["resources"]
    catalog = json.loads(EVENTS.read_text("utf-8"))
    rows = catalog["events"] if isinstance(catalog, dict) and "events" in catalog else catalog
    types = sorted(r["type"] for r in rows)
    events: dict[str, str] = {}
    for t in types:
        found = resource_of(t, set(fixtures))
        if found is not None:
            events[t] = found
    objects = {name: {**fixtures[name], "livemode": False}
               if "livemode" in fixtures[name] else fixtures[name]
               for name in sorted(set(events.values()))}
    from stripe._api_version import _ApiVersion  # the development dependency

    return {"_meta": {"generator": "tools/gen_event_fixtures.py",
                      "source": f"shared/{FIXTURES} (Stripe's API fixtures, MIT); api_version: "
                                "stripe-python's pinned version (stripe._api_version)",
                      "rule": "events: event type -> the resource of its data.object; "
                              "objects: one sample per resource, livemode false"},
            "api_version": _ApiVersion.CURRENT, "events": events, "objects": objects}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--shared", type=Path, default=None,
                    help="read the upstream originals in this folder (a provenance check)")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    data = vendored.VENDOR if args.shared is None else args.shared / "data"
    text = json.dumps(build(data), indent=1, sort_keys=True) + "\n"
    if args.check:
        same = OUT.exists() and OUT.read_text("utf-8") == text
        print("event fixtures are current" if same else f"{OUT} is stale")
        return 0 if same else 1
    OUT.write_text(text, "utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
