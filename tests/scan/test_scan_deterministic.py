"""The scan's output is a function of its input: not of PYTHONHASHSEED, nor of the order in
which tree-sitter hands back a query's captures. A client passed to one function from two call
sites whose keys differ in kind (a key read from a record, a key with a fallback), in JS and in
Python, each bound twice under one name: which binding a call uses, and the reasons that name
it, must come out the same in every process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from permgate.scan import scan

# Two kinds of key, one per route: read from a record, and with a fallback.
_KEYS = ("req.body?.key?.trim()", "req.body?.stripe_key || req.body?.key")
_ROUTE = """  app.post('/r{i}', async (req, res) => {{
    try {{
      const key = {key};
      if (!key || !key.startsWith('sk_')) {{
        return res.redirect('/audit?error=invalid_key');
      }}
      const stripe = new Stripe(key);
      let account;
      try {{
        account = await stripe.accounts.retrieve();
      }} catch (err) {{
        return res.status(400).send(`failed: ${{err.message}}`);
      }}
      res.json(await runAudit(stripe, {{ id: account.id }}));
      await runAll(stripe);
    }} catch (err) {{
      res.status(500).send(`Audit failed: ${{err.message}}`);
    }}
  }});
"""
# Enough checks that the files read before the routes do work whose layout in memory follows
# the hash seed (which is what reordered tree-sitter's captures before they were sorted).
_CHECKS = [f"check{w}{i}" for i in range(6) for w in ("Failed", "Stuck", "Retry", "Unpaid")]

FILES = {
    "src/routes.js": (
        "const Stripe = require('stripe');\n"
        "const { runAudit } = require('./audit');\n"
        "const { runAll } = require('./index');\n\n"
        "function mount(app) {\n"
        + "".join(_ROUTE.format(i=i, key=_KEYS[i % 2]) for i in range(4))
        + "}\n\nmodule.exports = { mount };\n"
    ),
    "src/audit.js": (
        "async function runAudit(stripe, account) {\n"
        "  const invoices = await stripe.invoices.list({ limit: 10 });\n"
        "  const subs = await stripe.subscriptions.list({ status: 'past_due' });\n"
        "  return { account, invoices, subs };\n"
        "}\n\nmodule.exports = { runAudit };\n"
    ),
    "src/index.js": (
        "const { " + ", ".join(_CHECKS) + " } = require('./checks');\n\n"
        "async function runAll(stripe) {\n"
        + "".join(f"  const r{i} = await {n}(stripe);\n" for i, n in enumerate(_CHECKS))
        + "  return [" + ", ".join(f"r{i}" for i in range(len(_CHECKS))) + "];\n}\n\n"
        "module.exports = { runAll };\n"
    ),
    "src/checks.js": (
        "".join(f"async function {n}(stripe) {{\n"
                f"  const list = await stripe.invoices.list({{ limit: {i + 1} }});\n"
                "  return list.data.length;\n}\n" for i, n in enumerate(_CHECKS))
        + "module.exports = { " + ", ".join(_CHECKS) + " };\n"
    ),
    "app/views.py": (
        "import stripe\n\nfrom app.sync import sync\n\n\n"
        "def from_record(record):\n"
        "    client = stripe.StripeClient(record.api_key)\n"
        "    client.accounts.retrieve()\n"
        "    sync(client)\n\n\n"
        "def from_request(request):\n"
        "    client = stripe.StripeClient(request.POST.get('key') or request.GET['key'])\n"
        "    client.accounts.retrieve()\n"
        "    sync(client)\n"
    ),
    "app/sync.py": (
        "def sync(client):\n"
        "    client.customers.list(limit=10)\n"
        "    client.charges.list(limit=10)\n"
    ),
}


def _scan_json(root: Path, seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-m", "permgate", "scan", str(root), "--format", "json",
         "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode in (0, 3), out.stderr  # 3: needs not granted (no manifest: never)
    return out.stdout


def test_scan_output_is_the_same_in_every_process(tmp_path: Path) -> None:
    for name, body in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    outputs = [_scan_json(tmp_path, seed) for seed in ("1", "2", "3", "6")]
    # the fixture is read: both languages' calls and the reasons the test is about
    first = outputs[0]
    for needle in ("src/audit.js", "src/checks.js", "app/sync.py", "runAudit()", "runAll()",
                   "sync()", "routes.js:", "views.py:"):
        assert needle in first, needle
    for other in outputs[1:]:
        assert other == first


def test_bindings_are_read_in_source_order(tmp_path: Path) -> None:
    """A key bound just before the client that uses it (in a `case`): read first, as it runs;
    the cursor's order had the client bound before its key was known (unknown account)."""
    (tmp_path / "accounts.ts").write_text(
        "import { Stripe } from 'stripe'\n\n"
        "export default async function handler(req: any, res: any) {\n"
        "  let out: any;\n"
        "  switch (req.method) {\n"
        "    case 'GET':\n"
        "      const KEY = `${process.env.STRIPE_KEY}`\n"
        "      const stripe = new Stripe(KEY, { apiVersion: '2020-08-27' })\n"
        "      try {\n"
        "        const { data } = await stripe.accounts.list()\n"
        "        out = data\n"
        "      } catch (error: any) {\n"
        "        return res.status(500).json({ message: error.message })\n"
        "      }\n"
        "      break;\n"
        "  }\n"
        "  res.json(out)\n"
        "}\n")
    calls = scan(tmp_path).calls
    assert [(c.call.call, c.call.account) for c in calls] == [("stripe.accounts.list", "own")]
    assert "process.env.STRIPE_KEY" in calls[0].call.reason
