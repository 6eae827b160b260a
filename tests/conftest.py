"""Every test runs with a user data folder of its own: the default database's fallback
place (store/engine.py `default_database`: no `.permgate/` up the tree -> $XDG_DATA_HOME/
permgate/) is never the real ~/.local/share/permgate, nor shared between tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_SESSION: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    # For what starts before any test's fixture (session fixtures' processes).
    _SESSION.append(tempfile.mkdtemp(prefix="permgate-xdg-"))
    os.environ["XDG_DATA_HOME"] = _SESSION[-1]


def pytest_unconfigure(config: pytest.Config) -> None:
    for folder in _SESSION:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _own_user_data_folder(tmp_path_factory: pytest.TempPathFactory,
                          monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path_factory.mktemp("xdg-data")
    monkeypatch.setenv("XDG_DATA_HOME", str(folder))
    return folder
