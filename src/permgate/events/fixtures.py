"""The sample data permgate's own test events are built from (tools/gen_event_fixtures.py):
Stripe's sample object of each resource and the API version those events carry."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def fixtures() -> dict[str, Any]:
    text = resources.files("permgate.events").joinpath("data/event_fixtures.json").read_text(
        "utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def api_version() -> str:
    """The API version of the events permgate makes itself (`trigger`, an install's
    `account.application.*`): Stripe's helpers in Go and .NET refuse an event without one."""
    return str(fixtures()["api_version"])
