"""One typed public API: real functions, one Stripe catalog, one error base, a listed surface."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import permgate
import permgate.catalog
import permgate.errors
from permgate import manifest, store
from permgate.api import params, router
from permgate.manifest import jsontext


def test_decide_and_decide_event_are_typed_functions() -> None:
    assert not hasattr(permgate, "__getattr__")
    for fn in (permgate.decide, permgate.decide_event):
        assert inspect.isfunction(fn)
        sig = inspect.signature(fn)
        assert sig.return_annotation == "Decision"
        assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values())
    d = permgate.decide("GET", "/v1/customers/cus_1", grants={"customer_read"})
    assert d.allowed and d == permgate.engine.decide("GET", "/v1/customers/cus_1", None,
                                                     {"customer_read"})
    assert not permgate.decide_event("invoice.paid", {"invoice_read"}).allowed


def test_one_copy_of_stripes_catalog() -> None:
    from permgate.manifest._catalog import default_catalog

    assert not hasattr(permgate.catalog, "__getattr__")
    assert permgate.engine.catalog is permgate.catalog.stripe_catalog() is default_catalog()
    assert permgate.default_engine() is permgate.engine


def test_every_listed_name_exists() -> None:
    for module in (permgate, permgate.errors, permgate.catalog, manifest, store):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)


def test_errors_share_one_base_and_stay_where_they_were() -> None:
    base = permgate.PermgateError
    pairs = [
        (permgate.UnknownPermission, permgate.catalog.UnknownPermission),
        (router.BadPath, permgate.BadPath), (params.BadParam, permgate.errors.BadParam),
        (manifest.ManifestError, permgate.errors.ManifestError),
        (jsontext.JsonSyntaxError, permgate.errors.JsonSyntaxError),
        (manifest.GrantError, permgate.errors.GrantError),
        (manifest.NotGranted, permgate.errors.NotGranted),
        (store.StoreError, permgate.errors.StoreError), (store.NotFound, permgate.errors.NotFound),
    ]
    for here, there in pairs:
        assert here is there and issubclass(here, base)
    from permgate.cli import CliError
    from permgate.events import SubscriptionRefused

    assert issubclass(CliError, base) and issubclass(SubscriptionRefused, base)
    # the old ValueError bases are kept: callers catching ValueError still work
    assert issubclass(permgate.UnknownPermission, ValueError)


@pytest.mark.slow
def test_errors_module_imports_nothing_of_permgate() -> None:
    path = permgate.errors.__file__
    code = ("import runpy, sys; runpy.run_path(sys.argv[1]); "
            "print(sorted(k for k in sys.modules if k.startswith('permgate')))")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_docs_api_examples_run() -> None:
    """The ```python blocks of docs/api.md run, and each value a comment promises holds."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    scope: dict[str, object] = {}
    for block in blocks:
        exec(block, scope)
    checked = 0
    for block in blocks:
        for line in block.splitlines():
            code, _, comment = line.partition("#")
            want = comment.strip()
            if line.startswith(" ") or not re.fullmatch(r"True|False|'\w+'|\('\w+',\)", want):
                continue
            assert repr(eval(code.strip(), scope)) == want, (code, want)
            checked += 1
    assert checked >= 4


# Modules not imported by the walk below: running them does something (the CLI's entry,
# Alembic's scripts, which need a migration context); they must define no class at all.
_NOT_IMPORTED = ("permgate.__main__", "permgate.store.migrations")
# Exception classes allowed outside PermgateError, each with its reason. None today.
_NOT_PERMGATE_ERRORS: dict[str, str] = {}


def test_every_exception_class_of_the_package_derives_from_permgate_error() -> None:
    import ast
    import importlib
    from pathlib import Path

    root = Path(permgate.__file__).parent
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        classes = [n.name for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                   if isinstance(n, ast.ClassDef)]
        if module.startswith(_NOT_IMPORTED):
            assert classes == [], module
            continue
        mod = importlib.import_module(module)
        for name in classes:
            cls = getattr(mod, name, None)
            if not (isinstance(cls, type) and issubclass(cls, BaseException)):
                continue  # not an exception, or a class nested in a function
            qualified = f"{module}.{name}"
            found.append(qualified)
            if qualified not in _NOT_PERMGATE_ERRORS:
                assert issubclass(cls, permgate.PermgateError), qualified
    # the walk saw the package's errors, those defined in errors.py and elsewhere
    assert {"permgate.errors.StoreError", "permgate.gateway.config.ConfigError",
            "permgate.admin.app.BadRequest", "permgate.events.signing.SignatureError",
            "permgate.store.oauth.OAuthError"} <= set(found)
    assert len(found) >= 35
    assert set(_NOT_PERMGATE_ERRORS) <= set(found)


def test_errors_outside_errors_py_stay_importable_where_they_were() -> None:
    from permgate.admin import app as admin_app
    from permgate.boundedjson import JsonRefused
    from permgate.console.settings import ConsoleConfigError
    from permgate.events.poller import PollError
    from permgate.events.sealing import SealError
    from permgate.events.signing import SignatureError
    from permgate.events.targets import TargetRefused
    from permgate.gateway import ConfigError
    from permgate.gateway.upstream import UpstreamError
    from permgate.oauth import AuthorizeError
    from permgate.store.oauth import OAuthError

    for cls in (admin_app.BadRequest, JsonRefused, ConsoleConfigError, PollError, SealError,
                SignatureError, TargetRefused, ConfigError, UpstreamError, AuthorizeError,
                OAuthError):
        assert issubclass(cls, permgate.PermgateError), cls
    # the old bases are kept: callers catching ValueError still catch these
    assert issubclass(ConfigError, ValueError) and issubclass(ConsoleConfigError, ValueError)
