"""Reading an OpenAPI 3.0/3.1 document from a hostile source: bounded, local `$ref`s only.

Every refusal is one line (`SpecError`). The document is read whole (at most MAX_BYTES),
parsed as JSON (depth checked before parsing, by `boundedjson`) or YAML (PyYAML's safe
loader; its recursion is caught), then walked once without recursion: keys become strings
(YAML reads `200:` as an int), scalars JSON values, and nodes, depth and `$ref`s are counted
and bounded. Every `$ref` is checked up front: remote ones are refused, dangling ones and
pure reference cycles (`A -> B -> A`) too. Recursive schemas (a property that refers back
to its own schema) are legal OpenAPI and stay accepted.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from permgate import boundedjson
from permgate.errors import PermgateError

MAX_BYTES = 20 * 1024 * 1024
MAX_DEPTH = 64  # Stripe's spec nests 25 deep; real documents stay far below this
MAX_NODES = 3_000_000  # Stripe's full spec has about 0.6 million
MAX_REF_CHAIN = 32
# YAML: PyYAML's composer builds a node object (with marks) per scalar before anything can be
# counted, about 200-350 bytes each; the event stream is counted first, in constant memory,
# so at most this many nodes are ever built (Stripe's 5.9 MB document would be about 0.25
# million events; at the limit, composing takes about 400 bytes and 12 us per node).
MAX_YAML_EVENTS = 1_500_000


class SpecError(PermgateError, ValueError):
    """An OpenAPI document `permgate init` refuses: the message is one line naming why."""


def read_spec(path: str | Path, where: str | None = None) -> tuple[dict[str, Any], bytes]:
    """(the document, its bytes). Raises SpecError for anything it will not read; messages
    name the document as `where` (default: the path as given)."""
    p = Path(path)
    w = str(path) if where is None else where
    try:
        size = os.stat(p).st_size
        if size > MAX_BYTES:
            raise SpecError(f"{w}: the document is {size:,} bytes; the limit is {MAX_BYTES:,}")
        with open(p, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise SpecError(f"{w}: cannot read it: {e.strerror}") from None
    if len(raw) > MAX_BYTES:  # it grew while we looked
        raise SpecError(f"{w}: the document is larger than {MAX_BYTES:,} bytes")
    doc = parse(raw, w)
    return doc, raw


def parse(raw: bytes, where: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SpecError(f"{where}: not UTF-8 text (byte {e.start})") from None
    head = text.lstrip()[:1]
    data: Any
    if head in ("{", "["):
        try:
            data = boundedjson.loads(text.encode("utf-8"), max_depth=MAX_DEPTH,
                                     unique_keys=True)
        except boundedjson.JsonRefused as e:
            raise SpecError(f"{where}: invalid JSON: {_one_line(str(e))}") from None
    else:
        data = _yaml(text, where)
    if not isinstance(data, dict):
        raise SpecError(f"{where}: not an OpenAPI document (the top level is not a mapping)")
    doc = _normalise(data, where)
    if "swagger" in doc:
        raise SpecError(f"{where}: Swagger/OpenAPI 2.0 is not supported; convert it to "
                        "OpenAPI 3 first")
    version = doc.get("openapi")
    if not isinstance(version, str) or not version.startswith(("3.0", "3.1")):
        raise SpecError(f"{where}: not an OpenAPI 3.0 or 3.1 document (openapi: {version!r})")
    if not isinstance(doc.get("paths", {}), dict):
        raise SpecError(f"{where}: 'paths' must be a mapping")
    check_refs(doc, where)
    return doc


def _one_line(s: str) -> str:
    return " ".join(s.split())


_LOADER: Any = None


def _loader() -> Any:
    """PyYAML's safe loader (libyaml's when present) refusing a key given twice in one
    mapping: YAML says that is an error, PyYAML silently keeps the last."""
    global _LOADER
    if _LOADER is None:
        import yaml  # only for YAML documents: not worth its import on every CLI start

        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

        class Loader(base):  # type: ignore[misc,valid-type]
            def construct_mapping(self, node: Any, deep: bool = False) -> Any:
                seen: set[Any] = set()
                for knode, _ in node.value:
                    if knode.tag == "tag:yaml.org,2002:merge" or not isinstance(
                            knode, yaml.ScalarNode):
                        continue  # merge keys may repeat; other keys are refused below
                    key = self.construct_object(knode)
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r} in one mapping",
                            knode.start_mark)
                    seen.add(key)
                return super().construct_mapping(node, deep)

        _LOADER = Loader
    return _LOADER


def _yaml(text: str, where: str) -> Any:
    import yaml

    loader = _loader()
    try:
        # Bounded before anything is built: the event stream, in constant memory.
        depth = 0
        for events, ev in enumerate(yaml.parse(text, Loader=loader), 1):
            if events > MAX_YAML_EVENTS:
                raise SpecError(f"{where}: the document has more than {MAX_YAML_EVENTS:,} YAML "
                                "nodes")
            if isinstance(ev, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise SpecError(f"{where}: the document is nested deeper than {MAX_DEPTH} "
                                    "levels")
            elif isinstance(ev, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=loader)  # a safe loader: plain data only
    except RecursionError:
        raise SpecError(f"{where}: the YAML is nested too deep") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError(f"{where}: invalid YAML{at}: {_one_line(str(problem))}") from None
    except SpecError:
        raise
    except (ValueError, TypeError, OverflowError) as e:
        # a scalar the safe constructor cannot make: `2020-13-45`, a 5,000-digit integer
        raise SpecError(f"{where}: invalid YAML: {_one_line(str(e))[:200]}") from None


def _normalise(data: dict[str, Any], where: str) -> dict[str, Any]:
    """A copy with string keys and JSON scalars; bounded in nodes and depth (no recursion).
    YAML aliases are copied where they are used, so an alias bomb hits MAX_NODES."""
    root: dict[str, Any] = {}
    stack: list[tuple[Any, Any, int]] = [(data, root, 1)]
    nodes = 0
    while stack:
        src, dst, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SpecError(f"{where}: the document is nested deeper than {MAX_DEPTH} levels")
        items = src.items() if isinstance(src, dict) else enumerate(src)
        for k, v in items:
            nodes += 1
            if nodes > MAX_NODES:
                raise SpecError(f"{where}: the document has more than {MAX_NODES:,} nodes")
            if isinstance(v, dict):
                new: Any = {}
                stack.append((v, new, depth + 1))
            elif isinstance(v, list):
                new = [None] * len(v)
                stack.append((v, new, depth + 1))
            elif isinstance(v, str):
                new = _text(v, where)
            elif v is None or isinstance(v, (bool, int, float)):
                new = v
            elif isinstance(v, (datetime.date, datetime.datetime)):
                new = v.isoformat()  # YAML reads dates; OpenAPI means strings
            else:
                new = str(v)
            if isinstance(dst, dict):
                key = _text(k, where) if isinstance(k, str) else (
                    str(k).lower() if isinstance(k, bool) else str(k))
                if key in dst:  # `200:` and `"200":`, both read as "200"
                    raise SpecError(f"{where}: duplicate key {key!r} in one mapping")
                dst[key] = new
            else:
                dst[k] = new
    return root


def _text(s: str, where: str) -> str:
    """A string that can be written as UTF-8 (a lone surrogate from JSON's `\\ud800` cannot)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise SpecError(f"{where}: a string holds a lone surrogate ({s[:40]!r}): not "
                        "text") from None
    return s


def _refs(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """(JSON pointer of the holder, the $ref value) for every `$ref` in the document."""
    out: list[tuple[str, Any]] = []
    stack: list[tuple[str, Any]] = [("#", doc)]
    while stack:
        at, node = stack.pop()
        if isinstance(node, dict):
            if "$ref" in node:
                out.append((at, node["$ref"]))
            for k, v in node.items():
                if isinstance(v, (dict, list)):
                    stack.append((f"{at}/{k.replace('~', '~0').replace('/', '~1')}", v))
        else:
            for i, v in enumerate(node):
                if isinstance(v, (dict, list)):
                    stack.append((f"{at}/{i}", v))
    return out


def pointer(doc: dict[str, Any], ref: Any, where: str = "") -> Any:
    """The node a local `$ref` names. Raises SpecError for remote or dangling ones."""
    if not isinstance(ref, str):
        raise SpecError(f"{where}: a $ref must be a string, not {type(ref).__name__}")
    if not ref.startswith("#"):
        raise SpecError(f"{where}: remote $ref {ref!r} is not supported: only local references "
                        "('#/...') are resolved; bundle the document into one file first")
    frag = ref[1:]
    if frag == "":
        return doc
    if not frag.startswith("/"):
        raise SpecError(f"{where}: $ref {ref!r} is not a JSON pointer ('#/...')")
    node: Any = doc
    for raw_tok in frag[1:].split("/"):
        tok = unquote(raw_tok).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and tok in node:
            node = node[tok]
        elif isinstance(node, list) and tok.isdigit() and int(tok) < len(node):
            node = node[int(tok)]
        else:
            raise SpecError(f"{where}: $ref {ref!r} cannot be resolved (no {tok!r})")
    return node


def check_refs(doc: dict[str, Any], where: str) -> None:
    """Every $ref is local and resolves; no chain of references loops back on itself."""
    checked: set[str] = set()
    for at, ref in _refs(doc):
        if isinstance(ref, str) and ref in checked:
            continue
        seen = [ref]
        target = pointer(doc, ref, f"{where}: {at}")
        while isinstance(target, dict) and "$ref" in target:
            nxt = target["$ref"]
            if nxt in seen:
                chain = " -> ".join(map(str, [*seen, nxt]))
                raise SpecError(f"{where}: cyclic $ref: {chain}")
            if len(seen) > MAX_REF_CHAIN:
                raise SpecError(f"{where}: a chain of more than {MAX_REF_CHAIN} $refs at {at}")
            seen.append(nxt)
            if isinstance(nxt, str) and nxt in checked:
                break  # the rest of this chain was followed already
            target = pointer(doc, nxt, f"{where}: {at}")
        checked.update(r for r in seen if isinstance(r, str))


def deref(doc: dict[str, Any], node: Any) -> tuple[Any, str | None]:
    """(the node with its `$ref` chain followed, the last reference's name or None).
    The refs were checked by `check_refs`, so this always ends."""
    name = None
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        name = ref.rsplit("/", 1)[-1]
        node = pointer(doc, ref)
    return node, name
