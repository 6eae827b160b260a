from __future__ import annotations

import json

import pytest

from permgate.manifest import jsontext


def test_spans_cover_the_source_text() -> None:
    text = '{\n  "a": [1, "x\\"y", {"b": null}],\n  "c": true\n}'
    doc = jsontext.read(text)
    assert doc.root.value == json.loads(text)
    a = doc.root.member("a")
    assert a is not None
    assert text[a.key_start : a.key_end] == '"a"'
    assert [text[i.start : i.end] for i in a.value.items] == ["1", '"x\\"y"', '{"b": null}']
    assert doc.junk == []


def test_comments_and_trailing_commas_are_accepted_and_recorded() -> None:
    text = '{\n  // note\n  "a": [1, 2,], /* x */\n  "b": 3,\n}\n'
    doc = jsontext.read(text)
    assert doc.root.value == {"a": [1, 2], "b": 3}
    assert sorted(j.kind for j in doc.junk) == [
        "comment", "comment", "trailing comma", "trailing comma"]
    clean = jsontext.without_junk(text, doc.junk)
    assert json.loads(clean) == {"a": [1, 2], "b": 3}
    assert clean == '{\n  "a": [1, 2],\n  "b": 3\n}\n'


@pytest.mark.parametrize(("text", "line", "column"), [
    ('{\n  "a": 1\n  "b": 2\n}', 3, 3),
    ('{"a": [1, 2}', 1, 12),
    ("", 1, 1),
    ('{"a": "x', 1, 7),
    ('{"a": 1} x', 1, 10),
    ("{/* open", 1, 2),
])
def test_syntax_errors_carry_line_and_column(text: str, line: int, column: int) -> None:
    with pytest.raises(jsontext.JsonSyntaxError) as e:
        jsontext.read(text)
    assert (e.value.line, e.value.column) == (line, column)


def test_duplicate_keys_keep_the_last_like_json() -> None:
    doc = jsontext.read('{"a": 1, "a": 2}')
    assert doc.root.value == {"a": 2}
    assert [k for k, _ in doc.duplicate_keys] == ["a"]
