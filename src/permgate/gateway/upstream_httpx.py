"""httpx as the upstream client: kept only as the benchmark's comparison point for the pool
(`upstream_client = "httpx"`); same interface as `upstream.Pool`.

httpx re-parses the target into a URL object (and normalises it), so the pool, which sends
the decided bytes unchanged, stays the default.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import httpx

from permgate.gateway.upstream import Origin, UpstreamError


class HttpxResponse:
    __slots__ = ("_response", "complete", "headers", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers = [(k.lower(), v) for k, v in response.headers.raw]
        self.complete = False

    def take_all(self) -> bytes:
        # The gateway calls this only when `complete` is true, which it never is here.
        raise RuntimeError("httpx answers are always streamed: read them with body()")

    async def body(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.TimeoutException as e:
            raise UpstreamError(str(e) or "read timeout", timeout=True) from None
        except httpx.HTTPError as e:
            raise UpstreamError(str(e) or type(e).__name__) from None
        finally:
            await self._response.aclose()

    def abort(self) -> None:
        pass  # closed by body()'s finally


class HttpxPool:
    def __init__(
        self, origin: Origin, max_idle: int, connect_timeout: float, timeout: float
    ) -> None:
        self.origin = origin
        scheme = "https" if origin.tls else "http"
        self._base = f"{scheme}://{origin.host_header.decode()}{origin.prefix.decode()}"
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_keepalive_connections=max_idle, max_connections=None),
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
        )

    async def request(
        self, method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> HttpxResponse:
        request = self._client.build_request(
            method.decode("ascii"), self._base + target.decode("latin-1"),
            headers=list(headers), content=body or None)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as e:
            raise UpstreamError(str(e) or "timeout", timeout=True) from None
        except httpx.HTTPError as e:
            raise UpstreamError(str(e) or type(e).__name__) from None
        return HttpxResponse(response)

    def close(self) -> None:
        pass  # the client's connections end with the process
