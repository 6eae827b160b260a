"""Real processes for the consent end-to-end tests: localstripe and `permgate serve` with the
admin API (for account sessions) and the console mounted beside the proxy."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from tests.console.support import ACCOUNT
from tests.gateway.procs import Gateway, run_gateway

from permgate.gateway.demo import start_localstripe
from permgate.store import Store

ADMIN_TOKEN = secrets.token_hex(32)  # the admin API refuses weak tokens
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@dataclass
class Platform:
    gateway: Gateway
    store: Store

    @property
    def url(self) -> str:
        return self.gateway.url

    def account_link(self, role: str = "admin", user: str = "ann", next_path: str | None = None
                     ) -> str:
        body = {"account": ACCOUNT, "user_id": user, "display_name": f"{user.title()} <b>",
                "role": role, "return_url": "https://platform.example/settings"}
        if next_path:
            body["next"] = next_path
        r = httpx.post(self.url + "/admin/v1/account_sessions", json=body,
                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 201, r.text
        url: str = r.json()["url"]
        assert url.startswith(self.url + "/console/links/acl_")
        return url


@contextmanager
def platform(tmp: Path) -> Iterator[Platform]:
    db_url = f"sqlite:///{tmp / 'consent.db'}"
    upstream = start_localstripe(tmp / "localstripe.log")
    try:
        with Store.open(db_url, upgrade=True) as store, run_gateway(
                db_url, upstream.url, tmp, env={"PERMGATE_ADMIN_TOKEN": ADMIN_TOKEN}) as gw:
            yield Platform(gw, store)
    finally:
        upstream.stop()


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)
