"""Walk a tree, hand each source file to its language's extractor, collect what they find."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from permgate.scan import common, golang, js, python, ruby
from permgate.scan.files import language_of, read_source, source_files
from permgate.scan.model import Call, EventUse, FileFindings, Skipped, Unresolved

# A file that mentions neither Stripe nor a quoted dotted name cannot hold a finding:
# skipping its parse keeps large trees fast.
_MAYBE = re.compile(rb"(?i)stripe|[\"'`][a-z_]+\.[a-z_.]+[\"'`]")


@dataclass(slots=True)
class Findings:
    root: Path
    files: int = 0
    calls: list[Call] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    events: list[EventUse] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _rel(root: Path, path: Path) -> str:
    try:
        rel = path.relative_to(root) if root.is_dir() else Path(path.name)
    except ValueError:
        rel = path
    return rel.as_posix()


def scan_file(ctx: common.Context, path: Path, data: bytes) -> FileFindings:
    lang = language_of(path)
    if lang == "js":
        return js.extract(ctx, data, path.suffix)
    if lang == "python":
        return python.extract(ctx, data)
    if lang == "ruby":
        return ruby.extract(ctx, data)
    if lang == "go":
        return golang.extract(ctx, data)
    return FileFindings()


def scan_tree(root: Path, event_types: frozenset[str]) -> Findings:
    out = Findings(root)
    for item in source_files(root):
        if isinstance(item, Skipped):
            out.skipped.append(Skipped(_rel(root, Path(item.file)), item.reason))
            continue
        rel = _rel(root, item)
        data = read_source(item)
        if isinstance(data, Skipped):
            out.skipped.append(Skipped(rel, data.reason))
            continue
        out.files += 1
        if not _MAYBE.search(data):
            continue
        text = data.decode("utf-8", "replace")
        ctx = common.Context(rel, common.is_ui_extension(rel, text), event_types)
        try:
            found = scan_file(ctx, item, data)
        except SyntaxError as e:
            out.skipped.append(Skipped(rel, f"syntax error at line {e.lineno}: {e.msg}"))
            continue
        except (RecursionError, MemoryError, ValueError) as e:
            out.skipped.append(Skipped(rel, f"could not be parsed: {type(e).__name__}"))
            continue
        out.calls.extend(sorted(found.calls, key=lambda c: (c.line, c.column)))
        out.unresolved.extend(sorted(found.unresolved, key=lambda c: (c.line, c.column)))
        out.events.extend(found.events)
    return out
