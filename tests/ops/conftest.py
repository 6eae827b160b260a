from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from permgate.store import Store


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/db/permgate.db"


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    with Store.open(sqlite_url, upgrade=True) as s:
        yield s
