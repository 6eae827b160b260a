"""Acme Orders: a small API of our own, to put permgate in front of (see README.md).

    python examples/own-api/acme.py --port 8000 --key-file acme-key.txt

Customers, products and orders per account (the `Acme-Account` header names it), an order
search (a POST that reads), `expand=customer` on orders, and JSON bodies. Every call needs
`Authorization: Bearer KEY`, KEY the first line of --key-file: the credential permgate's
gateway presents (apps never see it). It keeps its data in memory; openapi.yaml describes it.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PRODUCTS = [{"id": "prod_1", "object": "product", "name": "Anvil", "price": 4200},
            {"id": "prod_2", "object": "product", "name": "Rocket skates", "price": 9900}]


class Store:
    """Each account's customers and orders (products are the same for everyone)."""

    def __init__(self) -> None:
        self.accounts: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self.ids = itertools.count(2)

    def of(self, account: str) -> dict[str, dict[str, dict[str, Any]]]:
        data = self.accounts.get(account)
        if data is None:  # every account starts with one customer, cus_1
            data = self.accounts[account] = {"customers": {"cus_1": {
                "id": "cus_1", "object": "customer", "name": "Wile E. Coyote",
                "email": "wile@example.com"}}, "orders": {}}
        return data

    def add(self, account: str, kind: str, obj: dict[str, Any], prefix: str
            ) -> dict[str, Any]:
        data = self.of(account)
        obj = {"id": f"{prefix}_{next(self.ids)}", **obj}
        data[kind][obj["id"]] = obj
        return obj


def problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "status": status, "detail": detail},
                        status_code=status, media_type="application/problem+json")


def create_app(key: str) -> Starlette:
    store = Store()

    def account_of(request: Request) -> str | Response:
        if request.headers.get("authorization") != f"Bearer {key}":
            return problem(401, "unknown credential")
        account = request.headers.get("acme-account")
        if not account:
            return problem(400, "name the account with the Acme-Account header")
        return account

    def expanded(request: Request, order: dict[str, Any], account: str) -> dict[str, Any]:
        wanted = {w.strip() for w in request.query_params.get("expand", "").split(",")}
        wanted |= {w.removeprefix("data.") for w in wanted}
        if "customer" in wanted:
            customer = store.of(account)["customers"].get(order["customer"])
            return {**order, "customer": customer or order["customer"]}
        return order

    def listing(items: list[dict[str, Any]]) -> JSONResponse:
        return JSONResponse({"object": "list", "data": items})

    async def customers(request: Request) -> Response:
        account = account_of(request)
        if isinstance(account, Response):
            return account
        if request.method == "POST":
            body = await request.json()
            return JSONResponse(store.add(account, "customers", {
                "object": "customer", "name": str(body.get("name", "")),
                "email": str(body.get("email", ""))}, "cus"))
        return listing(list(store.of(account)["customers"].values()))

    async def customer(request: Request) -> Response:
        account = account_of(request)
        if isinstance(account, Response):
            return account
        found = store.of(account)["customers"].get(request.path_params["customer"])
        return JSONResponse(found) if found else problem(404, "no such customer")

    async def products(request: Request) -> Response:
        account = account_of(request)
        return account if isinstance(account, Response) else listing(PRODUCTS)

    async def product(request: Request) -> Response:
        account = account_of(request)
        if isinstance(account, Response):
            return account
        found = [p for p in PRODUCTS if p["id"] == request.path_params["product"]]
        return JSONResponse(found[0]) if found else problem(404, "no such product")

    async def orders(request: Request) -> Response:
        account = account_of(request)
        if isinstance(account, Response):
            return account
        if request.method == "POST":
            body = await request.json()
            order = store.add(account, "orders", {
                "object": "order", "customer": str(body.get("customer", "")),
                "product": str(body.get("product", "")),
                "quantity": int(body.get("quantity", 1))}, "ord")
            return JSONResponse(order)
        return listing([expanded(request, o, account)
                        for o in store.of(account)["orders"].values()])

    async def search(request: Request) -> Response:
        account = account_of(request)
        if isinstance(account, Response):
            return account
        body = await request.json()
        return listing([o for o in store.of(account)["orders"].values()
                        if o["customer"] == body.get("customer")])

    async def order(request: Request) -> Response:
        account = account_of(request)
        if isinstance(account, Response):
            return account
        found = store.of(account)["orders"].get(request.path_params["order"])
        if found is None:
            return problem(404, "no such order")
        return JSONResponse(expanded(request, found, account))

    return Starlette(routes=[
        Route("/v1/customers", customers, methods=["GET", "POST"]),
        Route("/v1/customers/{customer}", customer, methods=["GET"]),
        Route("/v1/products", products, methods=["GET"]),
        Route("/v1/products/{product}", product, methods=["GET"]),
        Route("/v1/orders", orders, methods=["GET", "POST"]),
        Route("/v1/orders/search", search, methods=["POST"]),
        Route("/v1/orders/{order}", order, methods=["GET"]),
    ])


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Acme Orders, a small API of our own.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--key-file", required=True, help="the credential callers present")
    args = parser.parse_args()
    key = Path(args.key_file).read_text("utf-8").strip().splitlines()[0]
    print(json.dumps({"acme": f"http://{args.host}:{args.port}"}), flush=True)
    uvicorn.run(create_app(key), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
