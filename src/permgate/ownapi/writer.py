"""Writing an API DIR (the contract: /work/brief/apidir.md, docs/own-api.md) atomically.

Everything is rendered in memory and loaded by the engine first; then it is written into a
temporary directory beside DIR and renamed into place, so DIR is either the old one, or
absent, or complete: never half-written.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from permgate.ownapi.rules import Result, Style, derive
from permgate.ownapi.spec import SpecError, read_spec

FILES = ("permissions.json", "events.json", "operations.json", "objects.json",
         "expansions.json", "api.toml", "REVIEW.md")
# api.toml's first line: what `--force` looks for before it replaces a DIR
_GENERATOR_LINE = "# written by `permgate init --from-openapi`; see docs/own-api.md"


def toml_str(s: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's (json never writes `\\/`); DEL, which
    JSON leaves raw and TOML forbids, is escaped too."""
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(toml_str(i) for i in items) + "]"


def render_toml(r: Result, spec: Path, sha: str) -> str:
    return "\n".join([
        _GENERATOR_LINE,
        "[api]",
        f"name = {toml_str(r.name)}",
        f"title = {toml_str(r.title)}",
        f"spec = {toml_str(str(spec))}",
        f"spec_sha256 = {toml_str(sha)}",
        f"permissions_style = {toml_str(r.style)}",
        "",
        "[edge]",
        f"base_paths = {toml_list(r.base_paths)}",
        f"account_header = {toml_str(r.account_header)}",
        f"auth_schemes = {toml_list(r.auth_schemes)}",
        f"body_encodings = {toml_list(r.body_encodings)}",
        f"expand_style = {toml_str(r.expand_style)}",
        f"expand_param = {toml_str(r.expand_param)}",
        f"error_style = {toml_str(r.error_style)}",
        "",
        "[upstream]",
        f"url = {toml_str(r.upstream_url)}",
        f"auth_scheme = {toml_str(r.upstream_auth)}",
        "",
    ])


# links and images need `[`; emphasis `*`, `_`, `~`; HTML `<` (escaped as an entity below)
_MD_ESCAPE = str.maketrans({c: "\\" + c for c in "\\[]*_~"})


def _md(s: str) -> str:
    """Text from the document, inert in Markdown outside a code span: HTML and Markdown
    syntax escaped (a `<!--` from the spec must not hide the rest of a line from the
    reviewer), whitespace collapsed, `|` neutral in a table cell."""
    one = " ".join(str(s).split()).translate(_MD_ESCAPE)
    return (one.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|").replace("`", "'"))


def _code(s: str) -> str:
    """Text from the document inside a code span (`...`): nothing renders there but `|`
    (a table cell ends at it even in code) and a backtick (which would end the span)."""
    return " ".join(str(s).split()).replace("|", "\\|").replace("`", "'")


def render_review(r: Result, spec: Path, command: str) -> str:
    out = [f"# Review: {_md(r.title)} (`{r.name}`)", "",
           f"Generated from `{_code(str(spec))}`; re-run with `{_code(command)}`.",
           "Every line below is a decision made by a heuristic rather than read from the "
           "document. Check each; fix the document (the `x-permgate-*` extensions, "
           "docs/own-api.md) and run init again rather than editing the tables by hand.", "",
           f"Permission names: **{r.style}**"
           + (" (the API's own OAuth scopes)" if r.style == "scopes"
              else " (`<object>_read` / `<object>_write`)"), ""]
    groups: dict[str, list[tuple[str, str]]] = {}
    for f in r.findings:
        groups.setdefault(f.kind, []).append((f.subject, f.detail))
    titles = {
        "security": "Operations with no security requirement (never left open)",
        "any-of": "Scopes read as any-of",
        "all-of": "All-of scopes permgate cannot express (operation unavailable)",
        "level": "Levels guessed (from words, or method and scope disagree)",
        "reader": "Objects read under several permissions (events, expansions)",
        "implies": "Write scopes that imply no read scope",
        "object": "Objects guessed (tags, paths, sibling operations, schema shapes)",
        "owner": "Sub-paths given their owner's object",
        "route": "Templates permgate cannot route (operation unavailable)",
        "event": "Events no app receives",
        "edge": "Edge settings guessed (api.toml)",
        "names": "Names",
    }
    out.append("## Needs a look")
    out.append("")
    if not groups:
        out.append("Nothing: every decision came from the document or an explicit extension.")
        out.append("")
    for kind in (*titles, *sorted(set(groups) - set(titles))):
        rows = groups.get(kind)
        if not rows:
            continue
        out += [f"### {titles.get(kind, kind)} ({len(rows)})", ""]
        out += [f"- `{_code(s)}`: {_md(d)}" for s, d in rows]
        out.append("")
    out += ["## Expansion suggestions (disabled)", ""]
    if r.suggestions:
        out.append("These fields look like ids of other objects. None is expandable until the "
                   "document says so (a wrong expansion leaks data): add to the property")
        out.append("`x-permgate-expand: <object>` and run init again.")
        out.append("")
        out += [f"- [ ] `{_code(o)}.{_code(f)}` -> `{_code(t)}`" for o, f, t in r.suggestions]
    else:
        out.append("None.")
    out += ["", "## Every operation", "",
            "| operation | permission | object | rule |", "|---|---|---|---|"]
    for row in r.operations:
        perm = row["permission"] or f"unavailable: {row['unavailable']}"
        obj = f"`{_code(row['object'])}`" if row["object"] else ""
        out.append(f"| `{row['method']} {_code(row['path'])}` | `{_code(perm)}` | {obj} | "
                   f"`{_code(row['rule'])}` |")
    out.append("")
    return "\n".join(out)


def _doc(kind: str, spec: Path, sha: str, body: dict[str, Any]) -> str:
    meta = {"generator": "permgate init --from-openapi", "kind": kind,
            "sources": [f"{spec} (sha256 {sha})"],
            "generated": datetime.date.today().isoformat(),
            "rule": "each row's `rule` names the rule that produced it (docs/own-api.md)"}
    return json.dumps({"_meta": meta, **body}, indent=1, ensure_ascii=False) + "\n"


def render(spec: str | Path, *, style: Style = "auto", name: str | None = None,
           command: str = "permgate init") -> tuple[Result, dict[str, str]]:
    """(the derivation, file name -> text) for a document; nothing written."""
    where = str(spec)
    path = Path(spec).resolve()
    doc, raw = read_spec(path, where)
    sha = hashlib.sha256(raw).hexdigest()
    try:
        r = derive(doc, where, style=style, name=name)
    except SpecError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as e:
        # the rules check the shapes they rely on; a document shaped in a way they missed is
        # still bad input (one line, exit 2), not an internal error
        raise SpecError(f"{where}: the document has content permgate cannot read "
                        f"({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
    files = {
        "permissions.json": _doc("permissions", path, sha, {"permissions": r.permissions}),
        "events.json": _doc("events", path, sha, {"events": r.events}),
        "operations.json": _doc("operations", path, sha, {"operations": r.operations}),
        "objects.json": _doc("objects", path, sha, {"objects": r.objects}),
        "expansions.json": _doc("expansions", path, sha,
                                {"expansions": r.expansions, "field_permissions": []}),
        "api.toml": render_toml(r, path, sha),
        "REVIEW.md": render_review(r, path, command),
    }
    return r, files


def check_loads(d: Path, name: str) -> None:
    """The engine loads the tables, or init fails (nothing is moved into place)."""
    from permgate.load import load

    try:
        load(d / "permissions.json", d / "events.json", d / "operations.json",
             d / "objects.json", d / "expansions.json", name=name)
    except Exception as e:  # whatever the loader refuses: one line, nothing moved
        raise SpecError(f"the generated tables do not load: {' '.join(str(e).split())[:200]}"
                        ) from None


def check_replaceable(target: Path, spec: Path) -> None:
    """`--force` replaces only a DIR an earlier init wrote: its api.toml starts with the
    generator line and it holds nothing but init's files. Never the spec's own directory,
    `/`, the home directory or the working directory (or one above them)."""
    real = target.resolve()
    if target.is_symlink():
        raise SpecError(f"{target}: is a symbolic link; --force replaces only a directory "
                        "init wrote")
    if spec.resolve().is_relative_to(real):
        raise SpecError(f"{target}: holds the document itself; choose another --out")
    guards = [Path("/"), Path.cwd()]
    with contextlib.suppress(RuntimeError):  # no home directory known
        guards.append(Path.home())
    for guard in guards:
        if guard.resolve().is_relative_to(real):
            raise SpecError(f"{target}: is {guard} or above it; --force will not replace it")
    foreign = sorted(p.name for p in real.iterdir() if p.name not in FILES)
    if foreign:
        raise SpecError(f"{target}: holds files init did not write ({', '.join(foreign[:3])}"
                        f"{', ...' if len(foreign) > 3 else ''}); --force replaces only a DIR "
                        "init wrote")
    toml = real / "api.toml"
    try:
        with open(toml, encoding="utf-8", errors="replace") as f:
            first = f.readline().rstrip("\n")
    except OSError:
        first = ""
    if first != _GENERATOR_LINE:
        raise SpecError(f"{target}: has no api.toml written by init; --force replaces only a "
                        "DIR init wrote")


def init_api(spec: str | Path, out: str | Path, *, style: Style = "auto",
             name: str | None = None, force: bool = False,
             command: str = "permgate init") -> Result:
    """Write DIR from an OpenAPI document; DIR appears complete or not at all. An old DIR
    (`force`) is moved aside, the new one renamed into place, and only then is the old one
    deleted: any failure or interrupt before that puts it back, or leaves it beside DIR."""
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise SpecError(f"{target}: exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        if not force:
            raise SpecError(f"{target}: exists and is not empty (--force replaces a DIR init "
                            "wrote)")
        check_replaceable(target, Path(spec))
    r, files = render(spec, style=style, name=name, command=command)
    parent = target.resolve().parent
    if not parent.is_dir():
        raise SpecError(f"{parent}: no such directory")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.init-", dir=parent))
    except OSError as e:
        raise SpecError(f"{parent}: cannot write there: {e.strerror}") from None
    old: Path | None = None
    done = False
    try:
        for fname, text in files.items():
            (tmp / fname).write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        check_loads(tmp, r.name)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=parent))
            os.rename(target, old / "dir")
        os.rename(tmp, target)
        done = True
    except BaseException as e:
        # Decided by what is on disk, not by flags an interrupt could skip. The previous DIR
        # goes back first, before any clean-up a second interrupt could cut short; it is
        # never deleted here (os.rmdir removes only the empty holder).
        if not tmp.exists() and target.exists():
            done = True  # interrupted just after the swap: it is complete
        kept = None
        if not done and old is not None and (old / "dir").exists():
            try:
                if target.exists():
                    raise FileExistsError(str(target))
                os.rename(old / "dir", target)
            except OSError:
                kept = old / "dir"
        if old is not None and not done:
            with contextlib.suppress(OSError):
                os.rmdir(old)  # only when empty: the old DIR went back
        shutil.rmtree(tmp, ignore_errors=True)
        if kept is not None:
            raise SpecError(f"{target}: cannot write it; the previous DIR is kept at "
                            f"{kept}") from None
        if not done:
            if isinstance(e, OSError):
                raise SpecError(f"{target}: cannot write it: {e.strerror or e}") from None
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)  # the swap is complete: now the old DIR goes
    return r
