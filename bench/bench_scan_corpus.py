"""Score `permgate scan` on the development corpus: precision and recall of missing and unused.

    scripts/bench scan_corpus --corpus /work/corpus
    scripts/bench scan_corpus --corpus /work/corpus --data ../shared/data/scan-dev-corpus.json -v
    scripts/bench scan_corpus --corpus DEV_DIR --heldout-corpus HELD_DIR   # + the held-out corpus
    scripts/bench scan_corpus --corpus DEV_DIR --heldout-corpus HELD_DIR --heldout2-corpus NEW_DIR
    scripts/bench scan_corpus --corpus3 A.json B.json --corpus3-dir C3_DIR   # + the third corpus
    scripts/bench scan_corpus --corpus3 A.json B.json --corpus3-dir R3 --split reserve3

"needs" on the development apps is scored against (granted - unused) | missing from the corpus
list (what the code needs, as the manifest grants it), and the scan's covered | missing.

The held-out corpus (`bench/data/scan-heldout.json`, issue 25: public backends that call Stripe
and are not Stripe Apps) has no manifests: its truth is what the app's accounts' traffic needs;
the scan's `needed` (no manifest) is scored against it, per half, the held-back half printed
last. There "missing" is "needs" against an empty manifest and "unused" does not apply.
It holds two corpora with their own splits: the first (halves `dev`, `held`, code in
`HELD_DIR/<repo name>`) and the second, Connect and OAuth platforms (halves `new-dev`, `new-held`,
code in `NEW_DIR/<owner+name>`, the entry's `dir`). Printed in this order: old dev half, old
held-back half, new dev half, new held-back half (last). `--dev-only` leaves both held-back halves
out (to develop against the dev halves without looking at the held-back ones). Entries whose
`needs` is null (dropped by the written split rule, or not labelled) are not scored.

The later corpora (`--corpus3 FILE...`, files shaped like `bench/data/scan-corpus3a.json`:
top-level `apps`, entries with `repo`, `dir`, `split`, `needs`, `scan_root`; code in
`--corpus3-dir DIR/<dir>`) are scored the same way, one split at a time (`--split`, default
`held3`), printed last under its own heading. The held-back splits (corpus 3's `reserve3`,
corpus 4's `held4`, corpus 5's `held5`) are scored once, at the end of a round of work, with
`--split reserve3`, `--split held4` or `--split held5`.

The corpus file (`scan-dev-corpus.json` in the shared data folder) lists public apps (repo,
commit, manifest, where to run the scan) with the verdict a careful reading gives. Their code is
never part of this repository: get each one at its commit into `CORPUS/<repo name>/` (the part
after the slash). An app whose folder is absent is skipped and said so; with no corpus at all the
script says so and exits 0.

Totals are micro-averaged (true positives over all apps). An app with nothing expected and
nothing reported scores 1.0. Also reported: files/s over all apps, files dropped (could not be
read or parsed at all), files read partly, and "invalid expansion" / "unavailable" findings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA = (Path(__file__).resolve().parents[1].parent / "shared" / "data"
                / "scan-dev-corpus.json")
HELDOUT = Path(__file__).resolve().parent / "data" / "scan-heldout.json"


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    wrong: list[str] = field(default_factory=list)

    def add(self, got: set[str], want: set[str]) -> None:
        self.tp += len(got & want)
        self.fp += len(got - want)
        self.fn += len(want - got)
        self.wrong += [f"+{p}" for p in sorted(got - want)] + [f"-{p}" for p in sorted(want - got)]

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def _data_path(given: str | None) -> Path:
    if given:
        return Path(given)
    for p in (DEFAULT_DATA, Path("/work/shared/data/scan-dev-corpus.json")):
        if p.is_file():
            return p
    return DEFAULT_DATA


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="/work/corpus", help="folder holding one folder per app")
    ap.add_argument("--data", help="scan-dev-corpus.json (default: ../shared/data/...)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each app's findings")
    ap.add_argument("--heldout-corpus", help="folder holding the held-out backends, one each")
    ap.add_argument("--heldout", default=str(HELDOUT), help="the held-out list")
    ap.add_argument("--heldout2-corpus",
                    help="folder holding the second held-out corpus (default: --heldout-corpus)")
    ap.add_argument("--dev-only", action="store_true",
                    help="score only the dev halves of the held-out corpora")
    ap.add_argument("--corpus3", nargs="+", metavar="FILE", default=[],
                    help="the third corpus's lists (scan-corpus3*.json); only held3 is scored")
    ap.add_argument("--corpus3-dir", metavar="DIR", help="folder holding the third corpus's code")
    ap.add_argument("--split", choices=sorted(SPLITS), default="held3",
                    help="which labelled split of the --corpus3 files to score (default held3; "
                         "reserve3, held4 and held5 are the held-back tests, scored once, "
                         "last)")
    args = ap.parse_args()
    if args.corpus3 and not args.corpus3_dir:
        ap.error("--corpus3 needs --corpus3-dir")
    code = _dev(args)
    _heldout_all(args)
    _corpus3(args)
    return code


def _dev(args: argparse.Namespace) -> int:
    """The development apps (with manifests): missing, unused and needs."""
    data_path = _data_path(args.data)
    corpus = Path(args.corpus)
    if not data_path.is_file():
        print(f"scan_corpus: skipped: no corpus list at {data_path}")
        return 0
    if not corpus.is_dir():
        print(f"scan_corpus: skipped: no corpus folder at {corpus} (see the docstring)")
        return 0
    apps = json.loads(data_path.read_text("utf-8"))["apps"]

    from permgate import manifest as mf
    from permgate.scan import scan

    total = {"missing": Score(), "unused": Score(), "needs": Score()}
    files = 0
    seconds = 0.0
    dropped: list[str] = []
    partial: list[str] = []
    invalid = unavailable = 0
    absent: list[str] = []
    print(f"{'app':40} {'files':>5} {'missing P/R':>12} {'unused P/R':>12}  wrong")
    from permgate._progress import track

    for app in track(apps, "bench scan_corpus: apps"):  # stderr, terminal only
        name = app["repo"].split("/", 1)[1]
        repo_dir = corpus / name
        if not repo_dir.is_dir():
            absent.append(name)
            continue
        mpath = repo_dir / app["manifest"]
        root = repo_dir if app["scan_root"] == "repository root" else mpath.parent
        granted = list(mf.load(mpath).permission_names)
        t0 = time.perf_counter()
        v = scan(root, granted, str(mpath), progress=False)  # a bar would be timed too
        seconds += time.perf_counter() - t0
        files += v.findings.files
        dropped += [f"{name}/{s.file}: {s.reason}" for s in v.findings.skipped if s.dropped]
        partial += [f"{name}/{p.file}: {p.reason}" for p in v.findings.partial]
        invalid += len(v.invalid)
        unavailable += len(v.unavailable)
        per = {"missing": Score(), "unused": Score(), "needs": Score()}
        per["missing"].add({m.permission for m in v.missing}, set(app["missing"]))
        per["unused"].add({u.permission for u in v.unused}, set(app["unused"]))
        per["needs"].add({m.permission for m in v.missing} | set(v.covered),
                         (set(granted) - set(app["unused"])) | set(app["missing"]))
        for k in per:
            total[k].tp += per[k].tp
            total[k].fp += per[k].fp
            total[k].fn += per[k].fn
        wrong = " ".join(f"m{w}" for w in per["missing"].wrong) + " " + " ".join(
            f"u{w}" for w in per["unused"].wrong)
        if v.invalid:
            wrong += f" invalid-expansion×{len(v.invalid)}"
        print(f"{name:40} {v.findings.files:5} "
              f"{per['missing'].precision:5.2f}/{per['missing'].recall:4.2f}  "
              f"{per['unused'].precision:5.2f}/{per['unused'].recall:4.2f}  {wrong.strip()}")
        if args.verbose:
            from permgate.scan import report
            sys.stdout.write("".join("    " + line + "\n" for line in
                                     report.text(v).splitlines() if line.startswith("  ")))
    m, u, n = total["missing"], total["unused"], total["needs"]
    print(f"\nTOTAL missing precision {m.precision:.2f} recall {m.recall:.2f} "
          f"(tp {m.tp} fp {m.fp} fn {m.fn}); unused precision {u.precision:.2f} recall "
          f"{u.recall:.2f} (tp {u.tp} fp {u.fp} fn {u.fn}); needs precision {n.precision:.2f} "
          f"recall {n.recall:.2f} (tp {n.tp} fp {n.fp} fn {n.fn})")
    rate = files / seconds if seconds else 0.0
    print(f"files {files} in {seconds:.2f} s ({rate:.0f} files/s, first-parse costs included); "
          f"dropped {len(dropped)}; read partly {len(partial)}; invalid expansion {invalid}; "
          f"unavailable {unavailable}")
    for d in dropped:
        print(f"  dropped: {d}")
    for p in partial:
        print(f"  partly:  {p}")
    if absent:
        print(f"absent (not scored): {', '.join(absent)}")
    return 0


HALVES = (("dev", "old corpus, dev half"), ("held", "old corpus, held-back half"),
          ("new-dev", "new corpus (Connect/OAuth), dev half"),
          ("new-held", "new corpus (Connect/OAuth), held-back half"))


def _heldout_all(args: argparse.Namespace) -> None:
    if not (args.heldout_corpus or args.heldout2_corpus):
        return
    first = Path(args.heldout_corpus or args.heldout2_corpus)
    second = Path(args.heldout2_corpus or args.heldout_corpus)
    halves = [h for h in HALVES if not (args.dev_only and "held" in h[0])]
    _heldout(Path(args.heldout), {"dev": first, "held": first, "new-dev": second,
                                  "new-held": second}, halves)


def _heldout(data: Path, corpora: dict[str, Path], halves: list[tuple[str, str]]) -> None:
    """Score `needed` on the held-out backends, half by half, the new held-back half last."""
    apps = json.loads(data.read_text("utf-8"))["apps"]
    for half, title in halves:
        _score_needs(f"held-out {title} ({data.name})", title,
                     [a for a in apps if a["split"] == half], corpora[half])


SPLITS = {
    "held3": "third corpus, held-back half",
    "reserve3": "third corpus, reserve (never scanned before the final score)",
    "held4": "fourth corpus (connected-account traffic; never scanned before the final score)",
    "held5": "fifth corpus (never scanned before the final score)",
}


def _corpus3(args: argparse.Namespace) -> None:
    """The later corpora: one split (`--split`, held3 by default) under its own heading; the
    other splits of the files are never read."""
    if not args.corpus3:
        return
    apps: list[dict[str, object]] = []
    names = []
    for f in args.corpus3:
        apps += [a for a in json.loads(Path(f).read_text("utf-8"))["apps"]
                 if a.get("split") == args.split]
        names.append(Path(f).name)
    title = SPLITS[args.split]
    _score_needs(f"{title} ({args.split}; {', '.join(names)})", title, apps,
                 Path(args.corpus3_dir))


def _root(base: Path, app: dict[str, object]) -> Path | None:
    """The folder to scan: `base/<dir>` (or the repository's name), then the entry's scan_root
    when it is a folder inside it; None when that would leave the app's folder."""
    repo = str(app["repo"])
    top = base / str(app.get("dir") or repo.split("/", 1)[-1])
    sub = str(app.get("scan_root") or "repository root")
    if sub in ("repository root", ".", ""):
        return top
    root = (top / sub).resolve()
    return root if root.is_relative_to(top.resolve()) else None


def _score_needs(heading: str, title: str, apps: list[dict[str, object]], base: Path) -> None:
    """Score the scan's `needed` against each entry's `needs`; entries whose needs is null
    (dropped or not labelled) are not scored."""
    from permgate.scan import scan

    total = Score()
    print(f"\n{heading}")
    print(f"{'backend':40} {'files':>5} {'needs P/R':>12}  wrong")
    absent = []
    scored = 0
    for app in apps:
        needs = app.get("needs")
        if not isinstance(needs, list):
            continue
        root = _root(base, app)
        name = str(app.get("dir") or str(app["repo"]).split("/", 1)[-1])
        if root is None or not root.is_dir():
            absent.append(name)
            continue
        v = scan(root, progress=False)
        per = Score()
        per.add(set(v.needed), {str(n) for n in needs})
        scored += 1
        total.tp, total.fp, total.fn = (total.tp + per.tp, total.fp + per.fp,
                                        total.fn + per.fn)
        print(f"{name:40} {v.findings.files:5} {per.precision:5.2f}/{per.recall:4.2f}  "
              f"{' '.join(per.wrong)}")
    print(f"TOTAL {title} ({scored} backends): needs (= missing against an empty manifest) "
          f"precision {total.precision:.2f} recall {total.recall:.2f} (tp {total.tp} "
          f"fp {total.fp} fn {total.fn}); unused: not applicable (no manifests)")
    if absent:
        print(f"absent (not scored): {', '.join(absent)}")


if __name__ == "__main__":
    sys.exit(main())
