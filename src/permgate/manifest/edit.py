"""`grant` / `revoke` / `save`: edits made on the text, so nothing else moves."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from permgate.catalog import Catalog
from permgate.errors import BadUrl as BadUrl
from permgate.errors import EmptyPurpose as EmptyPurpose
from permgate.errors import GrantError as GrantError
from permgate.errors import NotGranted as NotGranted
from permgate.errors import NotRequestable as NotRequestable
from permgate.manifest import jsontext
from permgate.manifest._catalog import default_catalog
from permgate.manifest.jsontext import Node
from permgate.manifest.model import Change, Manifest, ManifestError, describe, pointer


def _dump(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _line_indent(text: str, offset: int) -> str:
    start = text.rfind("\n", 0, offset) + 1
    end = start
    while end < len(text) and text[end] in " \t":
        end += 1
    return text[start:end]


def _starts_line(text: str, offset: int) -> bool:
    start = text.rfind("\n", 0, offset) + 1
    return not text[start:offset].strip()


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _indent_unit(m: Manifest) -> str:
    """The document's indentation step, from its first indented member; 2 spaces if flat."""
    root = m.root
    for member in root.members:
        if _starts_line(m.text, member.key_start):
            unit = _line_indent(m.text, member.key_start)
            if unit:
                return unit
    return "  "


def _colon(m: Manifest) -> str:
    """How the document writes `key: value` (': ' or ':' or ' : ')."""
    for member in m.root.members:
        return m.text[member.key_end : member.value.start]
    return ": "


def _check_permissions_array(m: Manifest) -> Node | None:
    """The `permissions` array node (None when absent or null); errors if it is misshapen."""
    member = m.root.member("permissions")
    if member is None or member.value.value is None:
        return None
    node = member.value
    if node.kind != "array":
        line, col = jsontext.line_column(m.text, node.start)
        raise ManifestError(
            f"'permissions' is {describe(node.value)}; it must be an array of "
            '{"permission": ..., "purpose": ...} objects', m.name, line, col,
        )
    for i, item in enumerate(node.items):
        if item.kind != "object":
            line, col = jsontext.line_column(m.text, item.start)
            raise ManifestError(
                f"permissions entry {i} ({pointer('permissions', i)}) is {describe(item.value)}; "
                'each entry must be an object {"permission": ..., "purpose": ...}',
                m.name, line, col,
            )
    return node


def _entries_named(node: Node, name: str) -> list[int]:
    out = []
    for i, item in enumerate(node.items):
        perm = item.member("permission")
        if perm is not None and perm.value.value == name:
            out.append(i)
    return out


def _entry_text(m: Manifest, arr: Node | None, name: str, purpose: str, indent: str) -> str:
    """A new entry in the style of the existing ones (copied from one when possible)."""
    if arr is not None:
        for item in reversed(arr.items):
            keys = [mem.key for mem in item.members]
            if sorted(keys) == ["permission", "purpose"] and all(
                mem.value.kind == "string" for mem in item.members
            ):
                out = m.text[item.start : item.end]
                for mem in sorted(item.members, key=lambda x: x.value.start, reverse=True):
                    new = _dump(name if mem.key == "permission" else purpose)
                    a, b = mem.value.start - item.start, mem.value.end - item.start
                    out = out[:a] + new + out[b:]
                return out
    colon = _colon(m)
    if "\n" not in m.text.strip():
        return f'{{"permission"{colon}{_dump(name)}, "purpose"{colon}{_dump(purpose)}}}'
    nl, inner = _newline(m.text), indent + _indent_unit(m)
    return (
        f'{{{nl}{inner}"permission"{colon}{_dump(name)},{nl}'
        f'{inner}"purpose"{colon}{_dump(purpose)}{nl}{indent}}}'
    )


def _splice(m: Manifest, start: int, end: int, new: str) -> None:
    m.replace_text(m.text[:start] + new + m.text[end:])


def _validate_grant(name: str, purpose: str, catalog: Catalog) -> str:
    if name not in catalog.permissions:
        catalog[name]  # raises UnknownPermission with the suggestion
    perm = catalog.permissions[name]
    if perm.refused:
        raise NotRequestable(name, perm.refused)
    if not perm.requestable:
        holders = [h for h in catalog.satisfiers(name) if h != name and catalog[h].requestable]
        hint = f"; request {' or '.join(holders[:3])}, which grants it" if holders else ""
        raise NotRequestable(
            name, f"Stripe documents it only as implied by other permissions{hint}"
        )
    cleaned = purpose.strip()
    if not cleaned:
        raise EmptyPurpose()
    return cleaned


def grant(m: Manifest, name: str, purpose: str, catalog: Catalog | None = None) -> Change:
    """Request `name` with `purpose` (added, or its purpose updated). Edits `m` in place;
    nothing is changed when it raises."""
    cat = catalog or default_catalog()
    purpose = _validate_grant(name, purpose, cat)
    arr = _check_permissions_array(m)
    if m.strip_junk():
        arr = _check_permissions_array(m)
    text = m.text
    if arr is not None:
        existing = _entries_named(arr, name)
        if existing:
            return _update_purpose(m, arr, existing, name, purpose)
    if arr is not None and arr.items:
        last = arr.items[-1]
        if len(arr.items) >= 2:
            sep = text[arr.items[-2].end : last.start]
        elif _starts_line(text, last.start):
            sep = "," + _newline(text) + _line_indent(text, last.start)
        else:
            sep = ", "
        entry = _entry_text(m, arr, name, purpose, _line_indent(text, last.start))
        _splice(m, last.end, last.end, sep + entry)
        index = len(arr.items)
    elif arr is not None:
        outer = _line_indent(text, arr.start)
        _splice(m, arr.start, arr.end, _array_text(m, outer, name, purpose))
        index = 0
    else:
        _add_permissions_member(m, name, purpose)
        index = 0
    return Change("added", name, (pointer("permissions", index),), f"granted {name}")


def _array_text(m: Manifest, outer: str, name: str, purpose: str) -> str:
    """A one-entry `permissions` array whose closing bracket sits at indentation `outer`."""
    if "\n" not in m.text.strip():
        return "[" + _entry_text(m, None, name, purpose, "") + "]"
    nl = _newline(m.text)
    inner = outer + _indent_unit(m)
    return f"[{nl}{inner}{_entry_text(m, None, name, purpose, inner)}{nl}{outer}]"


def _add_permissions_member(m: Manifest, name: str, purpose: str) -> None:
    """`permissions` absent or null: set it to a one-entry array (at the end of the object)."""
    root, text = m.root, m.text
    member = root.member("permissions")
    if member is not None:  # null
        v = member.value
        outer = _line_indent(text, member.key_start)
        _splice(m, v.start, v.end, _array_text(m, outer, name, purpose))
        return
    colon = _colon(m)
    if root.members:
        last = root.members[-1]
        sep = _member_separator(text, root)
        outer = _line_indent(text, last.key_start) if "\n" in sep else ""
        new = sep + '"permissions"' + colon + _array_text(m, outer, name, purpose)
        _splice(m, last.value.end, last.value.end, new)
    elif "\n" in text.strip():
        nl, unit = _newline(text), _indent_unit(m)
        array = _array_text(m, unit, name, purpose)
        _splice(m, root.start, root.end, f'{{{nl}{unit}"permissions": {array}{nl}}}')
    else:
        entry = _entry_text(m, None, name, purpose, "")
        _splice(m, root.start, root.end, '{"permissions": [' + entry + "]}")


def _update_purpose(
    m: Manifest, arr: Node, indexes: list[int], name: str, purpose: str
) -> Change:
    first = arr.items[indexes[0]]
    ptr = pointer("permissions", indexes[0])
    dup = ""
    if len(indexes) > 1:
        others = ", ".join(pointer("permissions", i) for i in indexes[1:])
        dup = f" (it is also listed at {others}; only the first entry was changed)"
    member = first.member("purpose")
    previous = member.value.value if member is not None else None
    if member is not None and previous == purpose:
        return Change(
            "unchanged", name, (ptr,), f"{name} is already granted with this purpose{dup}"
        )
    if member is not None:
        _splice(m, member.value.start, member.value.end, _dump(purpose))
    else:
        perm = first.member("permission")
        assert perm is not None  # found by its permission member
        text = m.text
        if _starts_line(text, perm.key_start):
            sep = "," + _newline(text) + _line_indent(text, perm.key_start)
        else:
            sep = ", "
        new = sep + '"purpose"' + text[perm.key_end : perm.value.start] + _dump(purpose)
        _splice(m, perm.value.end, perm.value.end, new)
    return Change(
        "updated", name, (ptr,), f"{name} was already granted; its purpose was updated{dup}"
    )


def revoke(m: Manifest, name: str) -> Change:
    """Remove every entry requesting `name`; raises NotGranted (nothing changed) if none."""
    arr = _check_permissions_array(m)
    if arr is None or not _entries_named(arr, name):
        raise NotGranted(name, m.name)
    if m.strip_junk():
        arr = _check_permissions_array(m)
        assert arr is not None
    indexes = _entries_named(arr, name)
    for i in reversed(indexes):
        arr = _check_permissions_array(m)
        assert arr is not None
        items = arr.items
        if len(items) == 1:
            start, end = arr.start + 1, arr.end - 1
        elif i < len(items) - 1:
            start, end = items[i].start, items[i + 1].start
        else:
            start, end = items[i - 1].end, items[i].end
        _splice(m, start, end, "")
    ptrs = tuple(pointer("permissions", i) for i in indexes)
    extra = f" ({len(indexes)} entries)" if len(indexes) > 1 else ""
    return Change("removed", name, ptrs, f"revoked {name}{extra}")


def save(m: Manifest, path: str | Path | None = None) -> Path:
    """Write atomically: a temp file in the same folder, fsync, then rename over the target.

    A crash at any point leaves either the old file or the new one, never a mix. The output
    is always valid JSON: comments and trailing commas accepted on reading are dropped.
    """
    target = Path(path) if path is not None else m.path
    if target is None:
        raise ManifestError("no path to save to", m.name)
    if m.strip_junk():
        m.warnings.append(f"{target}: comments and trailing commas were removed (JSON has none)")
    # write through a symlink rather than replacing the link itself
    real = Path(os.path.realpath(target))
    data = m.encoded()
    try:
        mode = real.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(real.parent)
    if m.path is None:
        m.path = target
    return target


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); best effort where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- connect-src URLs (`grant url` / `revoke url`, as the Stripe CLI spells them) ----------

CSP_PATH = ("ui_extension", "content_security_policy")
CONNECT_SRC = "connect-src"


def check_connect_url(url: str) -> str:
    """Stripe's rules: https, a path, not a Stripe API, a wildcard only as the left-most label."""
    from urllib.parse import urlsplit

    url = url.strip()
    if len(url) > 2048 or any(c.isspace() or not c.isprintable() for c in url):
        raise BadUrl(f"not a URL: {url[:80]!r}")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise BadUrl(f"{url}: connect-src URLs must use https://")
    if parts.path in ("", "/"):
        raise BadUrl(f"{url}: a connect-src URL must contain a path, e.g. {url.rstrip('/')}"
                     "/api/ (a trailing slash allows everything under it)")
    host = parts.hostname
    labels = host.split(".")
    if "*" in host and (labels[0] != "*" or "*" in ".".join(labels[1:]) or len(labels) < 3):
        raise BadUrl(f"{url}: a wildcard (*) may only be the left-most label, as in "
                     "https://*.example.com/api/")
    if host == "stripe.com" or host.endswith(".stripe.com"):
        raise BadUrl(f"{url}: connect-src cannot name a Stripe API; call Stripe through the "
                     "UI extension SDK")
    return url


def _render(m: Manifest, value: object, indent: str | None) -> str:
    """A new JSON value in the document's style; `indent` is the line's indentation (None:
    the document is on one line)."""
    colon = _colon(m)
    if indent is None:
        return json.dumps(value, ensure_ascii=False, separators=(", ", colon))
    nl = _newline(m.text)
    out = json.dumps(value, ensure_ascii=False, indent=_indent_unit(m), separators=(",", colon))
    return out.replace("\n", nl + indent)


def _member_separator(text: str, obj: Node) -> str:
    """What goes before a member added after the last one of `obj` (which has members): the
    separator the file already uses between members, else a comma and a line like the last."""
    last = obj.members[-1]
    if len(obj.members) >= 2:
        return text[obj.members[-2].value.end : last.key_start]
    if _starts_line(text, last.key_start):
        return "," + _newline(text) + _line_indent(text, last.key_start)
    return ", "


def _add_member(m: Manifest, obj: Node, key: str, value: object) -> None:
    """Add `key: value` at the end of the object `obj` (which must be in `m.text`)."""
    text, colon = m.text, _colon(m)
    if obj.members:
        last = obj.members[-1]
        sep = _member_separator(text, obj)
        indent = _line_indent(text, last.key_start) if "\n" in sep else None
        new = sep + _dump(key) + colon + _render(m, value, indent)
        _splice(m, last.value.end, last.value.end, new)
    elif "\n" in text.strip():
        nl, outer = _newline(text), _line_indent(text, obj.start)
        inner = outer + _indent_unit(m)
        _splice(m, obj.start, obj.end,
                f"{{{nl}{inner}{_dump(key)}{colon}{_render(m, value, inner)}{nl}{outer}}}")
    else:
        _splice(m, obj.start, obj.end, "{" + _dump(key) + colon + _render(m, value, None) + "}")


def _csp(m: Manifest, create: dict[str, object] | None) -> Node | None:
    """The content_security_policy object; with `create`, missing levels are added holding
    `create` (and None is returned: the edit is done)."""
    node = m.root
    for depth, key in enumerate(CSP_PATH):
        member = node.member(key)
        if member is None or member.value.value is None:
            if create is None:
                return None
            value: object = create
            for inner in reversed(CSP_PATH[depth + 1:]):
                value = {inner: value}
            if member is None:
                _add_member(m, node, key, value)
            else:
                indent = _line_indent(m.text, member.key_start) if "\n" in m.text.strip() else None
                _splice(m, member.value.start, member.value.end, _render(m, value, indent))
            return None
        if member.value.kind != "object":
            line, col = jsontext.line_column(m.text, member.value.start)
            where = pointer(*CSP_PATH[: depth + 1])
            raise ManifestError(f"{where} is {describe(member.value.value)}; it must be an "
                                "object", m.name, line, col)
        node = member.value
    return node


def _connect_src(m: Manifest, csp: Node) -> Node | None:
    member = csp.member(CONNECT_SRC)
    if member is None or member.value.value is None:
        return None
    if member.value.kind != "array":
        line, col = jsontext.line_column(m.text, member.value.start)
        raise ManifestError(f"{pointer(*CSP_PATH, CONNECT_SRC)} is "
                            f"{describe(member.value.value)}; it must be an array of URLs",
                            m.name, line, col)
    return member.value


def grant_url(m: Manifest, url: str, purpose: str) -> Change:
    """Allow the UI extension to call `url` (connect-src) and set the policy's purpose, which
    Stripe shows once for all the URLs. Edits `m` in place; nothing changes when it raises."""
    url = check_connect_url(url)
    purpose = purpose.strip()
    if not purpose:
        raise GrantError("the purpose is empty; say why the app calls this URL (it is shown "
                         "to the people who install the app)")
    m.strip_junk()
    csp = _csp(m, {CONNECT_SRC: [url], "purpose": purpose})
    ptr = pointer(*CSP_PATH, CONNECT_SRC)
    if csp is None:
        return Change("added", url, (pointer(*CSP_PATH, CONNECT_SRC, 0),),
                      f"granted {url} (connect-src)")
    arr = _connect_src(m, csp)
    added = False
    if arr is None:
        member = csp.member(CONNECT_SRC)
        if member is None:
            _add_member(m, csp, CONNECT_SRC, [url])
        else:
            _splice(m, member.value.start, member.value.end, _render(m, [url], _line_indent(
                m.text, member.key_start) if "\n" in m.text.strip() else None))
        added, index = True, 0
    elif url in arr.value:
        index = arr.value.index(url)
    else:
        index = len(arr.items)
        if arr.items:
            last, text = arr.items[-1], m.text
            if len(arr.items) >= 2:
                sep = text[arr.items[-2].end : last.start]
            elif _starts_line(text, last.start):
                sep = "," + _newline(text) + _line_indent(text, last.start)
            else:
                sep = ", "
            _splice(m, last.end, last.end, sep + _dump(url))
        else:
            _splice(m, arr.start, arr.end, "[" + _dump(url) + "]")
        added = True
    csp = _csp(m, None)
    assert csp is not None  # it existed above
    current = csp.member("purpose")
    changed = current is None or current.value.value != purpose
    if current is None:
        _add_member(m, csp, "purpose", purpose)
    elif changed:
        _splice(m, current.value.start, current.value.end, _dump(purpose))
    ptrs = (f"{ptr}/{index}",)
    if added:
        return Change("added", url, ptrs, f"granted {url} (connect-src)")
    if changed:
        return Change("updated", url, ptrs, f"{url} was already granted; the connect-src "
                      "purpose was updated")
    return Change("unchanged", url, ptrs, f"{url} is already granted with this purpose")


def revoke_url(m: Manifest, url: str) -> Change:
    """Remove `url` from connect-src; raises NotGranted (nothing changed) if it is not there."""
    csp = _csp(m, None)
    arr = _connect_src(m, csp) if csp is not None else None
    if arr is None or url not in arr.value:
        raise NotGranted(url, m.name)
    m.strip_junk()
    csp = _csp(m, None)
    assert csp is not None
    arr = _connect_src(m, csp)
    assert arr is not None
    i = arr.value.index(url)
    items = arr.items
    if len(items) == 1:
        start, end = arr.start + 1, arr.end - 1
    elif i < len(items) - 1:
        start, end = items[i].start, items[i + 1].start
    else:
        start, end = items[i - 1].end, items[i].end
    _splice(m, start, end, "")
    return Change("removed", url, (pointer(*CSP_PATH, CONNECT_SRC, i),),
                  f"revoked {url} (connect-src)")
