"""The official stripe npm package on node through `permgate serve` to localstripe."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.gateway.procs import Gateway, new_app
from tests.needs import npm_ci

from permgate.store import Store

pytestmark = pytest.mark.e2e
NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def node_sdk() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the node SDK end-to-end test")
    npm_ci(NODE_DIR, NODE_DIR / "node_modules" / "stripe")
    return NODE_DIR


def run_scenario(node_dir: Path, gateway: Gateway, key: str, account: str) -> dict[str, Any]:
    done = subprocess.run(
        ["node", "scenario.mjs", json.dumps({"url": gateway.url, "key": key,
                                             "account": account})],
        cwd=node_dir, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_node_sdk_allowed_denied_and_bad_key(
    node_sdk: Path, gateway: Gateway, store: Store
) -> None:
    app = new_app(store, ["customer_read"])
    out = run_scenario(node_sdk, gateway, app.key, app.account)

    assert out["allowed"]["ok"], out["allowed"]
    assert out["allowed"]["value"]["object"] == "list"
    assert out["allowed"]["value"]["requestId"].startswith("req_")

    denied = out["denied"]["error"]
    assert denied["isPermissionError"] and denied["type"] == "StripePermissionError"
    assert denied["statusCode"] == 403
    assert denied["code"] == "more_permissions_required_for_application"
    assert "'charge_read' permission would allow" in denied["message"]
    assert f"account '{app.account}'" in denied["message"]

    expand = out["deniedExpand"]["error"]
    assert expand["isPermissionError"]
    assert expand["code"] == "more_permissions_required_for_application"

    bad = out["badKey"]["error"]
    assert bad["isAuthenticationError"] and bad["statusCode"] == 401
