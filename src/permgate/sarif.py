"""SARIF 2.1.0 logs for code-scanning tools: the one writer behind `lint`, `validate` and `scan`.

It knows nothing of manifests or app code: a command declares its rules (`Rule`) and hands
over neutral results (`Result`: rule id, message, file, line, column, optional JSON pointer
and properties). What every log shares is decided here once:

- the tool is `permgate` with its version and `informationUri`;
- rules appear in the order the command declares them, and each result's `ruleIndex` is the
  position of its rule in that list (an undeclared rule id is a programming error);
- a file under `base` is a relative `artifactLocation.uri` with `uriBaseId` `SRCROOT`, and
  `originalUriBaseIds.SRCROOT` is `base` as a `file:` URI ending in `/`; a file outside it
  is an absolute `file:` URI.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import quote

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL_NAME = "permgate"
# The package's home on PyPI (the distribution name in pyproject.toml); no other public home
# exists yet (docs/decisions.md).
INFORMATION_URI = "https://pypi.org/project/permgate/"
BASE_ID = "SRCROOT"

Level = Literal["none", "note", "warning", "error"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One kind of finding. `short` is one line; `full` and `help` say more when given."""

    id: str
    short: str
    level: Level
    full: str = ""
    help: str = ""

    @property
    def name(self) -> str:
        """SARIF's `name`: the id in PascalCase (`missing-permission` -> `MissingPermission`)."""
        return "".join(w.capitalize() for w in self.id.split("-"))


@dataclass(frozen=True, slots=True)
class Result:
    """One finding. `file` is relative to the log's base (POSIX separators) or absolute;
    `line`/`column` are 1-based (None or < 1: the start of the file); `level` None is the
    rule's; `pointer` is a JSON pointer into the file when the finding is about a JSON value."""

    rule: str
    message: str
    file: str
    line: int | None = None
    column: int | None = None
    level: Level | None = None
    pointer: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)


def log(
    rules: Sequence[Rule], results: Iterable[Result], *, base: Path, version: str,
    column_kind: Literal["unicodeCodePoints", "utf16CodeUnits"] | None = None,
) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run: `rules` in the order given, `results` in theirs."""
    index: dict[str, int] = {}
    for i, rule in enumerate(rules):
        if rule.id in index:
            raise ValueError(f"rule {rule.id!r} is declared twice")
        index[rule.id] = i
    root = base.resolve()
    by_level = {r.id: r.level for r in rules}
    out: list[dict[str, Any]] = []
    for r in results:
        if r.rule not in index:
            raise ValueError(f"result of undeclared rule {r.rule!r}")
        location: dict[str, Any] = {"physicalLocation": {
            "artifactLocation": _artifact(r.file, root),
            "region": {"startLine": max(r.line or 1, 1), "startColumn": max(r.column or 1, 1)},
        }}
        if r.pointer is not None:
            location["logicalLocations"] = [
                {"fullyQualifiedName": r.pointer or "/", "kind": "member"}]
        result: dict[str, Any] = {
            "ruleId": r.rule,
            "ruleIndex": index[r.rule],
            "level": r.level or by_level[r.rule],
            "message": {"text": r.message},
            "locations": [location],
        }
        if r.properties:
            result["properties"] = dict(r.properties)
        out.append(result)
    run: dict[str, Any] = {
        "tool": tool(rules, version),
        "originalUriBaseIds": {BASE_ID: {"uri": root.as_uri().rstrip("/") + "/"}},
        "results": out,
    }
    if column_kind is not None:
        run["columnKind"] = column_kind
    return {"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}


def dumps(doc: dict[str, Any]) -> str:
    """The log as the commands print it (indented, one trailing newline)."""
    return json.dumps(doc, indent=2) + "\n"


def tool(rules: Sequence[Rule], version: str) -> dict[str, Any]:
    """The `tool` block: the same for every command but for its rules."""
    return {"driver": {
        "name": TOOL_NAME,
        "version": version,
        "semanticVersion": version,
        "informationUri": INFORMATION_URI,
        "rules": [_rule(r) for r in rules],
    }}


def _rule(r: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.id,
        "name": r.name,
        "shortDescription": {"text": r.short},
        "fullDescription": {"text": r.full or r.short},
        "defaultConfiguration": {"level": r.level},
    }
    if r.help:
        out["help"] = {"text": r.help}
    return out


def _artifact(file: str, root: Path) -> dict[str, Any]:
    path = Path(file)
    if path.is_absolute():
        try:
            rel = path.resolve().relative_to(root)
        except ValueError:
            return {"uri": path.resolve().as_uri()}
        return {"uri": _relative_uri(rel.as_posix()), "uriBaseId": BASE_ID}
    return {"uri": _relative_uri(PurePosixPath(file.replace("\\", "/")).as_posix()),
            "uriBaseId": BASE_ID}


def _relative_uri(posix: str) -> str:
    # A relative reference: percent-encode what a URI cannot hold as is (spaces, '%', '#', '?',
    # ':' that would read as a scheme, non-ASCII); keep the '/' separators.
    return quote(posix, safe="/!$&'()*+,;=@-._~")
