"""examples/own-api/README.md, followed literally: its ```sh blocks run in order, as one bash
script (the servers it starts in the background live until its last block), in a copy of
the example's folder, with free ports. Conventions as tests/test_readme.py's (`# exit N`).
The walkthrough starts with the real `permgate init --from-openapi`: a broken init fails it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from tests.ownapi.acme import EXAMPLE
from tests.test_readme import env_for, free_port, script, sh_blocks

# The walkthrough starts the example API, its receiver and `permgate serve`: real processes.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

README = EXAMPLE / "README.md"
INIT = "permgate init --from-openapi openapi.yaml --out acme-api --permissions objects"
KEY_LINES = [
    "allowed: POST /v1/orders/search",
    "denied (missing): GET /v1/orders/{order}",
    "Having the 'customer_read' permission would allow this request to continue.",
    "orders-app.json: valid",
    '"object":"order"',
    '"customer":{"id":"cus_1"',
    "urn:permgate:error:more_permissions_required_for_application",
    "Having the 'order_read' permission would allow this request to continue.",
    "Having the 'order_read' permission would allow it.",
]


def _run(tmp: Path) -> str:
    for name in ("openapi.yaml", "acme.py", "receiver.py"):
        shutil.copy(EXAMPLE / name, tmp / name)
    blocks = sh_blocks(README.read_text(encoding="utf-8"))
    text = "".join(script(body) for _, body in blocks)
    assert text.count(INIT) == 1, "the walkthrough starts with init"
    env = env_for(tmp)
    env.update(ACME_PORT=str(free_port()), PORT=str(free_port()), HOOK_PORT=str(free_port()))
    # Servers the script left behind (a failed step) go with it.
    text = "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + text
    r = subprocess.run(["bash", "-c", text], cwd=tmp, env=env, capture_output=True,
                       text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out + (tmp / "gateway.log").read_text() if (
        tmp / "gateway.log").exists() else out
    return out


def _check(out: str) -> None:
    for line in KEY_LINES:
        assert line in out, f"{line!r} not in the output:\n{out}"
    # Delivered: order.created to the order desk only, customer.created to both.
    hooks = sorted(line for line in out.splitlines() if line.startswith(("/orders ", "/crm ")))
    assert hooks == ["/crm customer.created", "/orders customer.created",
                     "/orders order.created"], out


def test_walkthrough_as_written(tmp_path: Path) -> None:
    _check(_run(tmp_path))
