"""The admin HTTP API over a store: `create_admin_app(store, admin_token)`; docs/store.md."""

from permgate.admin.app import TOKEN_ENV, create_admin_app, token_from_env
from permgate.admin.openapi import document as openapi_document

__all__ = ["TOKEN_ENV", "create_admin_app", "openapi_document", "token_from_env"]
