"""Walk a tree, hand each source file to its language's extractor, collect what they find.

Two passes: a light project-wide one over the few files that build a client or talk to the
API host (factories, module clients, thin HTTP wrappers, by name), then every file.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from permgate._progress import progress as show_progress
from permgate.scan import common, handlers
from permgate.scan.files import language_of, read_source, source_files
from permgate.scan.model import (
    Call,
    Escape,
    EventUse,
    FileFindings,
    Partial,
    Skipped,
    Unresolved,
)
from permgate.scan.modules import Modules

# A file that mentions neither Stripe nor a quoted dotted name cannot hold a finding:
# skipping its parse keeps large trees fast.
_MAYBE = re.compile(rb"(?i)stripe|[\"'`][a-z_]+\.[a-z_.]+[\"'`]")
# Files worth the project-wide pass: they build a client or call the API host.
_INDEX = re.compile(
    rb"new Stripe|Stripe\(|StripeClient|api\.stripe\.com|require\(['\"]stripe|\.api_key\s*="
)


def _maybe() -> re.Pattern[bytes]:
    """The quick filter; with another API than Stripe's (`--api`), files naming its host
    pass too (raw HTTP calls to it are what the scan reads of them)."""
    hosts, _ = common.api_where()
    if hosts == common.API_HOSTS:
        return _MAYBE
    names = b"|".join(re.escape(h.encode("utf-8")) for h in hosts)
    return re.compile(_MAYBE.pattern + b"|" + names)


# Languages whose files pass values to the project's functions (value flow, issue 25): a file
# of theirs that never says "stripe" but calls a function the project follows is read too.
FLOW_LANGUAGES = ("js", "python", "php", "ruby", "go")
PROGRESS_FILES = 2_000  # show progress for trees at least this large (when stderr is a TTY)


@dataclass(slots=True)
class Findings:
    root: Path
    files: int = 0
    calls: list[Call] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    events: list[EventUse] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    partial: list[Partial] = field(default_factory=list)
    escapes: list[Escape] = field(default_factory=list)
    tests_excluded: int = 0
    include_tests: bool = False


def _in_app(call: Call) -> Call:
    """A call of a Stripe App's tree, read by the app's own line (`common.pasted_in_app`)."""
    account, reason = common.pasted_in_app(call.account, call.reason)
    return call if account == call.account else replace(call, account=account, reason=reason)


def _rel(root: Path, path: Path) -> str:
    try:
        rel = path.relative_to(root) if root.is_dir() else Path(path.name)
    except ValueError:
        rel = path
    return rel.as_posix()


def scan_file(ctx: common.Context, path: Path, data: bytes) -> FileFindings:
    lang = language_of(path)
    if lang == "js":
        from permgate.scan import js

        return js.extract(ctx, data, path.suffix)
    if lang == "python":
        from permgate.scan import python

        return python.extract(ctx, data)
    if lang == "ruby":
        from permgate.scan import ruby

        return ruby.extract(ctx, data)
    if lang == "go":
        from permgate.scan import golang

        return golang.extract(ctx, data)
    if lang == "php":
        from permgate.scan import php

        return php.extract(ctx, data)
    return FileFindings()


def _extract(
    ctx: common.Context, path: Path, data: bytes, index: bool
) -> tuple[FileFindings, common.Project | None]:
    lang = language_of(path)
    if lang == "js":
        from permgate.scan import js

        return js.extract_and_index(ctx, data, path.suffix, index=index)
    if lang == "python":
        from permgate.scan import python

        return python.extract_and_index(ctx, data, index=index)
    if lang == "ruby":
        from permgate.scan import ruby

        return ruby.extract_and_index(ctx, data)
    if lang == "php":
        from permgate.scan import php

        return php.extract_and_index(ctx, data)
    if lang == "go":
        from permgate.scan import golang

        return golang.extract_and_index(ctx, data)
    return scan_file(ctx, path, data), None


_BARE = re.compile(r"[:/\\]")


def _names_regex(
    project: common.Project, leave: frozenset[str] = frozenset(),
) -> re.Pattern[bytes] | None:
    # A name that says "stripe" already made its files pass the quick filter.
    # ("php:getClient", "php:App\\Billing", "go:billing/Charge": a language's own namespace
    # of names, a PHP namespace or a Go package's directory, matched by the bare name)
    # sorted before the bound: `project.wanted` is a set, and which names a hostile tree's
    # bound keeps must not depend on its hash order
    names = sorted({n for n in (*(_BARE.split(f)[-1] for f in project.factories),
                                *project.clients, *project.wrappers,
                                *(_BARE.split(fname)[-1] for fname, _idx in project.params),
                                *project.wanted)
                    if len(n) >= 4 and n.lower() not in common.HTTP_VERBS and n.isidentifier()
                    and "stripe" not in n.lower() and n not in leave
                    })[:2_000]  # bounded: a hostile tree has many
    if not names:
        return None
    return re.compile(rb"\b(?:" + b"|".join(re.escape(n.encode()) for n in names) + rb")\b")


def _late(
    root: Path, path: Path, names: re.Pattern[bytes], event_types: frozenset[str],
    project: common.Project, modules: Modules | None = None,
) -> FileFindings | Skipped | None:
    """A file skipped by the quick filter that names a project factory, client or wrapper."""
    if language_of(path) not in FLOW_LANGUAGES:
        return None
    data = read_source(path)
    if isinstance(data, Skipped) or not names.search(data):
        return None
    rel = _rel(root, path)
    text = data.decode("utf-8", "replace")
    ctx = common.Context(rel, common.is_ui_extension(rel, text), event_types, project, modules)
    try:
        found = scan_file(ctx, path, data)
    except SyntaxError as e:
        return Skipped(rel, f"syntax error at line {e.lineno}: {e.msg}")
    except (RecursionError, MemoryError, ValueError) as e:
        return Skipped(rel, f"could not be parsed: {type(e).__name__}")
    found.ui = ctx.ui_extension
    _settle(found, rel)
    return found


def _settle(found: FileFindings, rel: str) -> None:
    """Decide the file's handlers now and drop what only that needed (memory stays flat)."""
    if found.ui:
        found.events = [EventUse(e.file, e.line, e.column, e.event, "installing",
                                 "a UI extension") for e in found.events]
    else:
        found.events = handlers.decide(found, rel)
    found.scopes = []
    found.local_calls = []
    found.source = b""


_ROUNDS = 3  # rounds of re-reading files that used what the project learnt later
# PHP, Ruby and Go name the functions whose parameters they follow by name, not by path (a
# method's class is not known at `$x->handle($k)`): a name called from more files than this
# that never say "stripe" is too common to be one function (`handle`, `perform`), and reading
# them all would parse the whole tree. Such a name's parameters are unknown instead.
_COMMON_NAME = 100
_BY_NAME = ("php", "ruby", "go")
_LANG_PREFIX = ("php:", "rb:", "go:")


def _too_common(project: common.Project, names: set[str]) -> None:
    """Parameters of PHP/Ruby/Go functions named by a too-common name: unknown (what the
    unread callers pass is not known)."""
    for key in list(project.params):
        if key[0].startswith(_LANG_PREFIX) and _BARE.split(key[0])[-1] in names:
            project.params[key] = ("unknown", f"{_BARE.split(key[0])[-1]}() is called from "
                                   f"more than {_COMMON_NAME} files: a name too common to "
                                   "follow")
_UNREAD = "<not read yet>"  # a file the quick filter skipped that calls a project name


def _has_manifest(root: Path) -> bool:
    """A Stripe App manifest in the tree's top three levels (bounded: no full walk)."""
    if not root.is_dir():
        return False
    return any(next(iter(root.glob(pattern)), None) is not None for pattern in (
        "stripe-app.json", "*/stripe-app.json", "*/*/stripe-app.json"))


def _names(project: common.Project) -> set[str]:
    """The names the project-wide pass knows (files name them in `FileFindings.imports`)."""
    names = project.factories.keys() | project.clients.keys() | project.wrappers.keys()
    names |= {fname for fname, _idx in project.params}
    if project.module_key is not None:
        names.add("<module key>")
    return names


def _uses_newer(found: FileFindings, learnt: dict[str, int], read_with: int) -> bool:
    """Whether the file uses a name the project learnt after the file was last read."""
    return any(learnt.get(n, -1) > read_with for n in found.imports)


def _reindex(
    root: Path, path: Path, res: FileFindings, event_types: frozenset[str],
    project: common.Project, modules: Modules,
) -> FileFindings | None:
    """Read a file again with what the project knows now; merge what it offers in turn."""
    data = read_source(path)
    if not isinstance(data, bytes):
        return None
    rel = _rel(root, path)
    ui = res.ui or common.is_ui_extension(rel, data.decode("utf-8", "replace"))
    ctx = common.Context(rel, ui, event_types, project, modules)
    try:
        found, facts = _extract(ctx, path, data, True)
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return None  # what the first reading found stands
    if facts is not None:
        project.merge(facts)
    found.ui = ui
    _settle(found, rel)
    return found


def scan_tree(
    root: Path, event_types: frozenset[str] | None, *, include_tests: bool = False,
    progress: bool | None = None, app: bool | None = None,
) -> Findings:
    """`event_types` None: the engine's, loaded only once a file needs parsing."""
    out = Findings(root, include_tests=include_tests)
    maybe = _maybe()

    def on_test() -> None:
        out.tests_excluded += 1

    paths: list[Path] = []
    for item in source_files(root, include_tests=include_tests, on_test=on_test):
        if isinstance(item, Skipped):
            out.skipped.append(Skipped(_rel(root, Path(item.file)), item.reason))
        else:
            paths.append(item)
    # A bar only for large trees (small ones finish before it would be read), unless asked.
    wanted = len(paths) >= PROGRESS_FILES if progress is None else progress
    with show_progress("scanning", len(paths), enabled=wanted) as bar:
        # Pass 1: read and parse each file once; files that build a client or call the API host
        # also tell the project-wide pass about their factories, module clients and wrappers.
        project = common.Project()
        modules = Modules(root)  # constants a file imports, read from the path it names
        results: list[FileFindings | Skipped | None] = []
        for path in paths:
            bar.advance()
            rel = _rel(root, path)
            data = read_source(path)
            if isinstance(data, Skipped):
                results.append(Skipped(rel, data.reason, data.dropped))
                continue
            out.files += 1
            if not maybe.search(data):
                results.append(None)
                continue
            text = data.decode("utf-8", "replace")
            if event_types is None:
                import permgate

                event_types = frozenset(permgate.default_engine().catalog.events)
            ctx = common.Context(rel, common.is_ui_extension(rel, text), event_types,
                                 modules=modules)
            try:
                found, facts = _extract(ctx, path, data, bool(_INDEX.search(data)))
            except SyntaxError as e:
                results.append(Skipped(rel, f"syntax error at line {e.lineno}: {e.msg}"))
                continue
            except (RecursionError, MemoryError, ValueError) as e:
                results.append(Skipped(rel, f"could not be parsed: {type(e).__name__}"))
                continue
            if facts is not None:
                project.merge(facts)
            found.ui = ctx.ui_extension
            _settle(found, rel)
            results.append(found)
        # Between the passes: a file that used a name the project learnt after reading it is
        # read again with it, and what it now passes on (a factory's client handed to a class)
        # is learnt in turn, until nothing new is learnt (at most _ROUNDS rounds: bounded work).
        learnt = dict.fromkeys(_names(project), 0)  # name -> version of knowledge it came in
        learnt[_UNREAD] = 0
        read_v = [-1] * len(paths)  # the version each file was last read with (pass 1: none)
        common_names: set[str] = set()  # PHP/Ruby/Go names too common to follow (bounded work)
        for version in range(_ROUNDS):
            # files the quick filter skipped that call a project name (`syncCharges(token)`
            # never says "stripe") are read too: what they pass is learnt like the rest
            names_re = _names_regex(project)
            counts: dict[str, int] = {}
            by_name: dict[int, set[str]] = {}
            for i, (path, res) in enumerate(zip(paths, results, strict=True)):
                if res is None and names_re is not None and language_of(path) in FLOW_LANGUAGES:
                    data = read_source(path)
                    if not isinstance(data, bytes) or not names_re.search(data):
                        continue
                    if language_of(path) in _BY_NAME:  # counted first (bounded: 16 names)
                        seen = {m.group().decode() for m in itertools.islice(
                            names_re.finditer(data), 64)}
                        by_name[i] = set(sorted(seen)[:16])
                        for n in by_name[i]:
                            counts[n] = counts.get(n, 0) + 1
                    else:
                        results[i] = FileFindings(imports={_UNREAD})  # read below
            # only names that are nothing but a followed parameter: a factory's or client's
            # callers make calls of their own and are always read
            kept = {_BARE.split(n)[-1] for n in (*project.factories, *project.clients,
                                                 *project.wrappers)}
            common_names |= {n for n, c in counts.items() if c > _COMMON_NAME} - kept
            for i, found_names in by_name.items():
                if found_names - common_names:
                    results[i] = FileFindings(imports={_UNREAD})  # read below
            _too_common(project, common_names)
            todo = [i for i, (path, res) in enumerate(zip(paths, results, strict=True))
                    if isinstance(res, FileFindings) and language_of(path) in FLOW_LANGUAGES
                    and _uses_newer(res, learnt, read_v[i])]
            if not todo:
                break
            for i in todo:
                read_v[i] = version
                res = results[i]
                assert isinstance(res, FileFindings)
                again = _reindex(root, paths[i], res, event_types or frozenset(), project,
                                 modules)
                if again is not None:
                    results[i] = again
            before = len(learnt)
            for name in _names(project):
                learnt.setdefault(name, version + 1)
            if len(learnt) == before:
                break
        # Pass 2: files that use what the project-wide pass learnt are read again with it (also
        # files that never say "stripe" but call a project factory or client by name).
        _too_common(project, common_names)
        uses_project = _names_regex(project)
        uses_by_name = _names_regex(project, frozenset(common_names))
        types = event_types or frozenset()
        pending: list[EventUse] = []
        bar.phase("following the project's clients", len(paths))
        for _i, (path, res) in enumerate(zip(paths, results, strict=True)):
            bar.advance()
            late = res is None
            if late and uses_project is not None:
                names_here = uses_project if language_of(path) not in _BY_NAME else uses_by_name
                res = None if names_here is None else _late(root, path, names_here, types,
                                                            project, modules)
            if res is None:
                continue
            if isinstance(res, Skipped):
                out.skipped.append(res)
                continue
            rel = _rel(root, path)
            found = res
            if not late and _uses_newer(found, learnt, read_v[_i]):
                data = read_source(path)
                if isinstance(data, bytes):
                    ctx = common.Context(rel, found.ui, types, project, modules)
                    try:
                        found = scan_file(ctx, path, data)
                        found.ui = res.ui
                        _settle(found, rel)
                    except (SyntaxError, RecursionError, MemoryError, ValueError):
                        found = res  # what the first reading found stands
            out.escapes.extend(found.escapes)
            if found.partial:
                out.partial.append(Partial(rel, found.partial))
            out.calls.extend(sorted(found.calls, key=lambda c: (c.line, c.column)))
            out.unresolved.extend(sorted(found.unresolved, key=lambda c: (c.line, c.column)))
            pending.extend(found.events)
    if app is None:
        app = any(isinstance(r, FileFindings) and r.ui for r in results) or _has_manifest(root)
    if app:
        out.calls = [_in_app(c) for c in out.calls]
    billing = handlers.own_billing_site(out.calls)
    out.events.extend(handlers.finish(e, billing, app) for e in pending)
    return out

