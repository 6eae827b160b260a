"""Issue 25: the TypeScript checker (from node) and jedi against the scan's own value flow.

    .venv/bin/python bench/bench_scan_tools.py --files 1000 \\
        --ts-dir DIR_WITH_node_modules --jedi-python PYTHON_WITH_jedi_AND_stripe

Generates a tree of N TypeScript and N Python files whose Stripe clients travel through a
factory, a constructor field and a parameter, then times, for each tool, start-up (an empty
tree) and the whole tree, and counts the calls whose receiver the tool resolves to Stripe.
The tools are not dependencies of permgate: give a folder where `npm install typescript@5
stripe@17` ran, and a Python where `pip install jedi stripe` ran; a tool not given is skipped.
Not a test: figures depend on the machine (the load average is printed with them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TS_FILE = """import Stripe from 'stripe';
import {{getStripe}} from './client';
export class Svc{i} {{
  constructor(private readonly api: Stripe) {{}}
  run() {{ return this.api.invoices.list(); }}
}}
export async function go{i}(token: string, id: string) {{
  const s = getStripe(token);
  await s.customers.retrieve(id);
  return new Svc{i}(s).run();
}}
export function util{i}(xs: number[]) {{ return xs.map((x) => x * {i}); }}
"""
PY_FILE = """from client import get_stripe


class Svc{i}:
    def __init__(self, api):
        self.api = api

    def run(self):
        return self.api.invoices.list()


def go{i}(token, cid):
    s = get_stripe(token)
    s.customers.retrieve(cid)
    return Svc{i}(s).run()
"""
TS_EVAL = r"""
const t0 = process.hrtime.bigint();
const ts = require('typescript');
const fs = require('fs'), path = require('path');
const dir = process.argv[2], mods = process.argv[3];
const files = fs.readdirSync(dir).filter(f => f.endsWith('.ts')).map(f => path.join(dir, f));
const program = ts.createProgram(files, {noEmit: true, target: ts.ScriptTarget.ES2020,
  module: ts.ModuleKind.CommonJS, esModuleInterop: true, types: [], typeRoots: [],
  moduleResolution: ts.ModuleResolutionKind.Node10, baseUrl: mods,
  paths: {stripe: [path.join(mods, 'node_modules/stripe')]}});
const checker = program.getTypeChecker();
let calls = 0, stripe = 0;
for (const sf of program.getSourceFiles()) {
  if (!files.includes(sf.fileName)) continue;
  const visit = (node) => {
    if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression)) {
      calls++;
      const t = checker.typeToString(checker.getTypeAtLocation(node.expression.expression));
      if (/Resource|Stripe/.test(t)) stripe++;
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
}
console.log(JSON.stringify({calls, stripe_receivers: stripe,
  seconds: Number(process.hrtime.bigint() - t0) / 1e9}));
"""
JEDI_EVAL = r"""
import ast, json, sys, time
t0 = time.perf_counter()
import jedi
from pathlib import Path
d = Path(sys.argv[1]); proj = jedi.Project(d); calls = hits = 0
for f in sorted(d.glob("*.py")):
    src = f.read_text(); script = jedi.Script(src, path=f, project=proj)
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            calls += 1
            recv = node.func.value
            names = script.infer(recv.end_lineno, recv.end_col_offset)
            hits += any("stripe" in (n.module_name or "") for n in names)
print(json.dumps({"calls": calls, "stripe_receivers": hits,
                  "seconds": round(time.perf_counter() - t0, 3)}))
"""


def _tree(root: Path, n: int) -> tuple[Path, Path]:
    ts_dir, py_dir = root / "ts", root / "py"
    ts_dir.mkdir(parents=True)
    py_dir.mkdir(parents=True)
    (ts_dir / "client.ts").write_text("import Stripe from 'stripe';\nexport function getStripe("
                                      "t: string): Stripe { return new Stripe(t); }\n")
    (py_dir / "client.py").write_text("import stripe\n\n\ndef get_stripe(t):\n"
                                      "    return stripe.StripeClient(t)\n")
    for i in range(n):
        (ts_dir / f"f{i}.ts").write_text(TS_FILE.format(i=i))
        (py_dir / f"f{i}.py").write_text(PY_FILE.format(i=i))
    return ts_dir, py_dir


def _timed(cmd: list[str]) -> dict[str, object]:
    t0 = time.perf_counter()
    before = os.times()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system)
    result: dict[str, object] = {"wall_s": round(time.perf_counter() - t0, 2),
                                 "cpu_s": round(cpu, 2)}
    try:
        result.update(json.loads(out.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        result["error"] = (out.stderr or out.stdout)[-300:]
    return result


def _scan_calls(tree: Path) -> dict[str, object]:
    exe = str(Path(sys.executable).with_name("permgate"))
    t0 = time.perf_counter()
    before = os.times()
    out = subprocess.run([exe, "scan", str(tree), "--format", "json", "--no-progress"],
                         capture_output=True, text=True, check=False)
    after = os.times()
    calls = json.loads(out.stdout)["calls"] if out.stdout else []
    return {"wall_s": round(time.perf_counter() - t0, 2),
            "cpu_s": round((after.children_user - before.children_user)
                           + (after.children_system - before.children_system), 2),
            "stripe_calls_found": len(calls)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--ts-dir", type=Path, help="a folder with node_modules/{typescript,stripe}")
    ap.add_argument("--jedi-python", help="a Python with jedi and stripe installed")
    args = ap.parse_args()
    out: dict[str, object] = {"files_per_language": args.files,
                              "load_average_1min": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp:
        empty_ts, empty_py = _tree(Path(tmp) / "empty", 0)
        ts_dir, py_dir = _tree(Path(tmp) / "tree", args.files)
        out["permgate_scan"] = {"empty": _scan_calls(empty_ts), "ts": _scan_calls(ts_dir),
                                "python": _scan_calls(py_dir)}
        if args.ts_dir is not None:
            script = Path(tmp) / "eval.js"
            script.write_text(TS_EVAL)
            env_dir = str(args.ts_dir.resolve())
            out["typescript_checker"] = {
                "empty": _timed(["node", str(script), str(empty_ts), env_dir]),
                "tree": _timed(["node", str(script), str(ts_dir), env_dir])}
        if args.jedi_python:
            script = Path(tmp) / "eval.py"
            script.write_text(JEDI_EVAL)
            out["jedi"] = {"empty": _timed([args.jedi_python, str(script), str(empty_py)]),
                           "tree": _timed([args.jedi_python, str(script), str(py_dir)])}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
