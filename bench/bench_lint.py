"""Benchmark `lint` and `validate` as manifests grow: the time per entry should stay flat.

    .venv/bin/python bench/bench_lint.py [--sizes 5000,10000,20000,40000]

Not a test: figures depend on the machine. Each size is a manifest of that many
`customer_read` entries with a one-word purpose (every entry but the first is a finding), so
the cost of placing findings in the text dominates, as in a hostile or generated file.
"""

from __future__ import annotations

import argparse
import json
import time

from permgate import manifest


def _text(n: int) -> str:
    perms = [{"permission": "customer_read", "purpose": "x"} for _ in range(n)]
    return json.dumps({"id": "com.example.big", "version": "1.0.0", "permissions": perms},
                      indent=2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="5000,10000,20000,40000")
    args = parser.parse_args()
    from permgate._progress import progress

    rows = []
    sizes = [int(x) for x in args.sizes.split(",")]
    with progress("bench lint", len(sizes)) as bar:  # stderr, terminal only
        for n in sizes:
            text = _text(n)
            t0 = time.perf_counter()
            m = manifest.parse(text)
            advice = manifest.lint(m)
            lint_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            problems = manifest.validate(manifest.parse(text))
            validate_s = time.perf_counter() - t0
            rows.append({"entries": n, "lint_s": round(lint_s, 3), "findings": len(advice),
                         "lint_us_per_entry": round(lint_s / n * 1e6, 1),
                         "validate_s": round(validate_s, 3), "problems": len(problems)})
            print(json.dumps(rows[-1]), flush=True)
            bar.advance()


if __name__ == "__main__":
    main()
