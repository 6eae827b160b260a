"""bench_scan_corpus --corpus3: the third corpus's held3 half is scored, last, under its own
heading; reserve3 is never scanned or printed. A fake corpus of our own, in a temp dir."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_scan_corpus.py"

# An installing-account call (an OAuth access token as the key) and the developer's own one.
APP = ("import Stripe from 'stripe';\n"
       "export async function sync(accessToken: string) {\n"
       "  const s = new Stripe(accessToken);\n"
       "  return s.customers.list();\n"
       "}\n")


def _run(tmp_path: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, str(BENCH), "--corpus", str(tmp_path / "nodev"),
                          *args], capture_output=True, text=True, timeout=300, check=True)
    return out.stdout


def _tree(base: Path, name: str, files: dict[str, str]) -> None:
    for rel, body in files.items():
        (base / name / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / name / rel).write_text(body)


def test_corpus3_scores_held3_only_and_last(tmp_path: Path) -> None:
    code = tmp_path / "c3"
    _tree(code, "o+right", {"src/a.ts": APP})
    _tree(code, "o+wrong", {"src/a.ts": APP})
    _tree(code, "o+sub", {"other/x.ts": APP, "server/a.ts": APP.replace("customers", "charges")})
    _tree(code, "o+reserved", {"src/a.ts": APP})
    a = {"apps": [
        {"repo": "o/right", "dir": "o+right", "split": "held3", "needs": ["customer_read"],
         "scan_root": "repository root"},
        {"repo": "o/wrong", "dir": "o+wrong", "split": "held3", "needs": ["invoice_read"],
         "scan_root": "repository root"},
        {"repo": "o/reserved", "dir": "o+reserved", "split": "reserve3",
         "needs": ["customer_read"], "scan_root": "repository root"},
    ]}
    b = {"apps": [
        {"repo": "o/sub", "dir": "o+sub", "split": "held3", "needs": ["charge_read"],
         "scan_root": "server"},
        {"repo": "o/unlabelled", "dir": "o+unlabelled", "split": "held3", "needs": None,
         "scan_root": "repository root"},
        {"repo": "o/escape", "dir": "o+right", "split": "held3", "needs": [],
         "scan_root": "../o+wrong"},
    ]}
    (tmp_path / "c3a.json").write_text(json.dumps(a))
    (tmp_path / "c3b.json").write_text(json.dumps(b))
    out = _run(tmp_path, "--corpus3", str(tmp_path / "c3a.json"), str(tmp_path / "c3b.json"),
               "--corpus3-dir", str(code))
    head = out.index("third corpus, held-back half")
    assert out.rfind("held-out") < head  # last, after any other corpus
    part = out[head:]
    assert "o+reserved" not in out and "reserve3" not in out
    assert "o+unlabelled" not in out  # needs null: not scored
    line = {ln.split()[0]: ln for ln in part.splitlines() if ln.startswith("o+")}
    assert "1.00/1.00" in line["o+right"]
    assert "+customer_read -invoice_read" in line["o+wrong"]
    assert "1.00/1.00" in line["o+sub"]  # scanned from its scan_root, not the repository root
    # a scan_root leaving the app's folder is not scanned
    assert "absent (not scored): o+right" in part
    assert "(3 backends)" in part and "tp 2 fp 1 fn 1" in part


def test_split_scores_that_split_only(tmp_path: Path) -> None:
    code = tmp_path / "c3"
    _tree(code, "o+held", {"src/a.ts": APP})
    _tree(code, "o+reserved", {"src/a.ts": APP})
    a = {"apps": [
        {"repo": "o/held", "dir": "o+held", "split": "held3", "needs": ["customer_read"],
         "scan_root": "repository root"},
        {"repo": "o/reserved", "dir": "o+reserved", "split": "reserve3",
         "needs": ["invoice_read"], "scan_root": "repository root"},
    ]}
    (tmp_path / "c3a.json").write_text(json.dumps(a))
    out = _run(tmp_path, "--corpus3", str(tmp_path / "c3a.json"), "--corpus3-dir", str(code),
               "--split", "reserve3")
    assert "o+held" not in out and "third corpus, reserve" in out
    assert "+customer_read -invoice_read" in out and "(1 backends)" in out


def test_corpus3_needs_its_folder(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(BENCH), "--corpus3", str(tmp_path / "x.json")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--corpus3-dir" in out.stderr
