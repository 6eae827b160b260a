"""`permgate console link`, and the gateway's key cache dropping keys that end by themselves."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import permgate
from permgate.cli import main
from permgate.gateway.resolver import MISS, Resolver
from permgate.store import KeyInfo, Store, people


def test_console_link_prints_a_working_one_time_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path}/p.db"
    assert main(["db", "upgrade", "--db", db]) == 0
    capsys.readouterr()
    assert main(["console", "link", "--account", "acct_cli", "--user", "ann", "--role",
                 "admin", "--db", db, "--url", "https://consent.example/", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["url"].startswith("https://consent.example/console/links/acl_")
    token = out["url"].rsplit("/", 1)[1]
    with Store.open(db) as store:
        found = people.redeem_link(store, token)
        assert found is not None and found[0].account == "acct_cli"
        assert people.redeem_link(store, token) is None
    assert main(["console", "link", "--account", "nope", "--user", "ann", "--role", "admin",
                 "--db", db]) == 1
    assert "acct_" in capsys.readouterr().err


class _Keys:
    """A store that knows one key, which ends at `expires`."""

    def __init__(self, expires: float) -> None:
        self.calls = 0
        self.info = KeyInfo("key_1", "app", "test", "restricted", "inst_1", "acct_1",
                            datetime.fromtimestamp(expires, UTC))

    def authenticate(self, secret: str) -> KeyInfo | None:
        self.calls += 1
        ends = self.info.expires_at
        return self.info if ends is not None and ends.timestamp() > time.time() else None

    def effective_grant(self, app_id: str, account: str, mode: str) -> None:
        return None

    def change_counter(self) -> int:
        return 0


def test_cached_keys_leave_the_cache_when_they_end() -> None:
    store = _Keys(time.time() + 0.3)
    resolver = Resolver(store, permgate.engine.grant, refresh_interval=60)
    try:
        assert asyncio.run(resolver.authenticate("rk_test_x")) == store.info
        assert resolver.cached_key("rk_test_x") == store.info  # cached, no change since
        time.sleep(0.35)
        assert resolver.cached_key("rk_test_x") is MISS  # ended: asked again
        assert asyncio.run(resolver.authenticate("rk_test_x")) is None
        assert store.calls == 2
    finally:
        resolver._executor.shutdown(wait=True)
