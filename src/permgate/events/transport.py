"""Where a delivery leaves permgate: the ONE place a webhook target is connected to.

Async HTTP (aiohttp) with a global limit on open connections and a bounded pool per
destination (host, port, scheme), so one slow or dead endpoint holds at most its own pool
while every other endpoint keeps its connections. Connections are kept alive between
deliveries, as receivers expect from Stripe.

A target says whether it is a local-development endpoint (`permgate listen`): those, and
only those, may be on loopback. The address policy for every other target belongs in
`_check_target` (called before every request) and, for the addresses a name resolves to at
connect time, in the resolver of `_session(local=False)`; both are here and nowhere else.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from permgate.events.subscriptions import is_loopback_host

USER_AGENT = "permgate-webhooks/0.2"
_READ_LIMIT = 64 * 1024  # a receiver's answer is read (to reuse the connection), never kept


@dataclass(frozen=True, slots=True)
class Target:
    endpoint_id: str
    url: str
    local: bool  # a `permgate listen` endpoint: loopback allowed, and only loopback


class TargetRefused(Exception):
    """The target may not be connected to (the delivery fails with this reason)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int


def _check_target(target: Target) -> None:
    """Refuse what may not be connected to. Local endpoints must be on loopback (they were
    checked at registration; checked again here because rows can be edited)."""
    if target.local:
        host = urlsplit(target.url).hostname or ""
        if not is_loopback_host(host):
            raise TargetRefused(f"a local endpoint must target loopback, not {host!r}")


class Transport:
    """Use from one event loop; `close()` on that loop."""

    def __init__(self, *, concurrency: int = 256, per_destination: int = 16,
                 timeout: float = 10.0) -> None:
        self.concurrency = concurrency
        self.per_destination = per_destination
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    def _session(self, local: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(local)
        if session is None:
            connector = aiohttp.TCPConnector(
                limit=self.concurrency, limit_per_host=self.per_destination,
                keepalive_timeout=30.0, ttl_dns_cache=60)
            session = self._sessions[local] = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=False,
                headers={"User-Agent": USER_AGENT}, skip_auto_headers=("Accept-Encoding",))
        return session

    async def post(self, target: Target, body: bytes, headers: dict[str, str]) -> Response:
        """POST once; raises TargetRefused, aiohttp.ClientError or asyncio.TimeoutError."""
        _check_target(target)
        async with self._session(target.local).post(
                target.url, data=body, headers=headers, allow_redirects=False) as resp:
            # Read what the receiver sent (bounded) so the connection can be reused.
            await resp.content.read(_READ_LIMIT)
            return Response(resp.status)

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
        # aiohttp's connections finish closing on the next loop iterations.
        await asyncio.sleep(0)
