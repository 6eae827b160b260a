"""One typed public API: real functions, one Stripe catalog, one error base, a listed surface."""

from __future__ import annotations

import inspect
import subprocess
import sys

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
