"""The fast path: the full path's own checks with their results cached, for the common call.

`FastPath.admit` takes a GET without a body whose caller resolves from the caches alone
(`Calls.resolve_now`: the same resolution as the full path's, unable to wait) and which the
decision (`Calls.rule`, or its remembered yes) allows: the upstream request, built from
dictionary and set operations. Anything else (a miss, a refusal, a body's headers,
report-only's would-deny) is None: the full path then handles the same call from its start,
so this only ever takes a way the full path would take too. The native server sends what
it admits and calls `finish`, `cut` or `failed` once the upstream's answer is in.
"""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter
from typing import Any, Final

from permgate.gateway.body import BodyRefused
from permgate.gateway.calls import Caller, Calls
from permgate.gateway.logs import JsonLog, RequestIds
from permgate.gateway.metrics import Metrics
from permgate.gateway.proxy import FORWARD, MAX_HEADER_BYTES, MAX_HEADERS, FullPath, Reply
from permgate.gateway.upstream import Pool, UpstreamError

# Request headers about a body: the fast path leaves them to the full path (but one
# Content-Type, which `decide_body` drops from a bodiless call: stripe-node sends one).
_BODY_HEADERS: Final = frozenset({b"content-length", b"content-type", b"content-encoding",
                           b"transfer-encoding"})

# Calls the decision allowed, as (caller, target): a GET without a body is decided on its
# target and grant alone, and a caller is one grant, so a repeat is a set lookup. A caller
# is replaced (never changed) when anything it stands for may have: its entries then match
# nothing, and go when the generation moves. Bounded in entries and in bytes (long targets
# are decided each time).
_ALLOWED_MAX: Final = 50_000
_ALLOWED_TARGET: Final = 512
_ALLOWED_BYTES: Final = 4 << 20
_NO_TYPES: Final[list[bytes]] = []
# Final: compiled, an imported name is read from the module's dictionary at every call.
_perf: Final = perf_counter


class Admitted:
    """A call `admit` let through: what to send upstream and what to count and log once its
    answer is in."""

    __slots__ = ("caller", "data", "decided", "path", "rid", "started")

    def __init__(self, rid: str, data: bytes, caller: Caller, path: bytes, started: float,
                 decided: float) -> None:
        self.rid = rid
        self.data = data
        self.caller = caller
        self.path = path
        self.started = started  # also when it left for upstream: admit takes microseconds
        self.decided = decided  # seconds the engine took (0 for a repeat: a set lookup)


class FastPath:
    def __init__(self, calls: Calls, full: FullPath, pool: Pool, metrics: Metrics,
                 log: JsonLog, ids: RequestIds, *, access_log: bool) -> None:
        self.calls = calls
        self.full = full
        self.pool = pool
        self.metrics = metrics
        self.log = log
        self.ids = ids
        self.access_log = access_log
        self.allowed: set[tuple[Caller, bytes]] = set()
        self._allowed_bytes = 0
        self._generation = 0

    def admit(self, method: str, raw_path: bytes, query: bytes,
              headers: Sequence[tuple[bytes, bytes]]) -> Admitted | None:
        """The upstream request for a call the full path would forward unchanged, or None.
        No side effects but filling caches."""
        if method != "GET" or len(headers) > MAX_HEADERS:
            return None
        started = _perf()
        authorization = account_raw = None
        account_name = self.calls.account_name  # the API's account header (Stripe-Account)
        # The upstream request's pieces: its line's (filled in below), then the forwarded
        # headers' lines, joined once.
        forward: list[bytes] = [b"GET ", b"", b"", b""]
        size = 0
        typed = False
        for name, value in headers:
            size += len(name) + len(value)
            # The account header first: its client copy is read, never forwarded.
            if name == account_name:
                if account_raw is not None:
                    return None  # repeated: the full path reads them joined
                account_raw = value
            elif name in FORWARD:
                # Appended one by one: `+=` a tuple builds the tuple and extends through a
                # generic call (about 300 instructions more a header, compiled; callgrind).
                forward.append(name)
                forward.append(b": ")
                forward.append(value)
                forward.append(b"\r\n")
            elif name == b"authorization":
                if authorization is not None:
                    return None  # repeated: the full path reads them joined
                authorization = value
            elif name in _BODY_HEADERS:
                # A comma: maybe two types joined (`body.header_values`), the full path's.
                if name != b"content-type" or typed or b"," in value:
                    return None
                typed = True
        if size > MAX_HEADER_BYTES or authorization is None:
            return None
        calls = self.calls
        caller = calls.cached(authorization, account_raw)
        if caller is None:
            generation = calls.resolver.generation
            if generation != self._generation:
                # Every caller made before is stale: their decisions go (memory, not safety).
                self._forget(generation)
            found = calls.resolve_now(authorization, account_raw)
            if not isinstance(found, Caller):
                return None
            caller = found
        if not caller.block:
            return None  # no upstream key for its mode: the full path's 503
        target = raw_path + b"?" + query if query else raw_path
        decided = 0.0
        seen = (caller, target)
        allowed = self.allowed
        if seen not in allowed:
            # Checked only here: a target in `allowed` passed it (its path is the target up
            # to the first "?"). `find`, not `in`: a bytes `in` first tries its operand as an
            # integer and builds (then drops) a TypeError's message, about 1,900
            # instructions; each `find` costs about 1,000 (a generic call; callgrind).
            if raw_path.find(b"{") >= 0 or raw_path.find(b"}") >= 0:
                return None
            try:
                ruling = calls.rule(caller, "GET", raw_path, query, target, _NO_TYPES,
                                    _NO_TYPES, b"")
            except BodyRefused:
                return None
            if not ruling.decision.allowed:
                return None
            decided = ruling.seconds
            if len(target) <= _ALLOWED_TARGET:
                if len(allowed) >= _ALLOWED_MAX or self._allowed_bytes > _ALLOWED_BYTES:
                    self._forget(self._generation)
                allowed.add(seen)
                self._allowed_bytes += len(target)
        pool = self.pool
        forward[1] = pool.origin.prefix
        forward[2] = target
        forward[3] = pool.host_line
        forward.append(caller.block)
        forward.append(b"\r\n")
        return Admitted(self.ids.new(), b"".join(forward), caller, raw_path, started, decided)

    def _forget(self, generation: int) -> None:
        self.allowed.clear()
        self._allowed_bytes = 0
        self._generation = generation

    def _decided(self, admitted: Admitted, head_at: float) -> None:
        """What the full path counts once it decided and the upstream's head came
        (`head_at`, 0 when none did): every admitted call counts this, however it ends."""
        m = self.metrics
        if head_at:
            m.upstream_seconds.observe(head_at - admitted.started)
        m.decision_seconds.observe(admitted.decided)
        caller = admitted.caller
        tally = caller.tally
        if tally is None or tally.owner is not m:
            tally = caller.tally = m.tally(caller.app, "allowed")
        tally.n += 1

    def finish(self, admitted: Admitted, status: int, head_at: float) -> None:
        """Count and log an admitted call once its answer went out."""
        self._decided(admitted, head_at)
        self.metrics.response(status)
        if self.access_log:
            self.log.allowed(admitted.rid, admitted.path, admitted.caller.logged, status,
                             _perf() - admitted.started)

    def cut(self, admitted: Admitted, e: UpstreamError, head_at: float) -> None:
        """An admitted call whose answer broke off after its head went out (the full path's
        `relay` case: the client sees a cut-off body)."""
        self._decided(admitted, head_at)
        self.metrics.upstream_error("timeout" if e.timeout else "reset")
        self.log.write("request.cut_off", "error", request_id=admitted.rid,
                       path=admitted.path[:256].decode("latin-1"), upstream_error=e.detail)

    async def failed(self, reply: Reply, admitted: Admitted, e: UpstreamError,
                     head_at: float) -> None:
        """An admitted call that got no (whole) answer, none of it sent: the record the full
        path would have written. Its 502 or 504 is sent even when the upstream's head had
        come: the fast path holds an answer back until 256 KiB of it are in, where the full
        path would have sent the head and cut the body off."""
        caller = admitted.caller
        rec: dict[str, Any] = {"request_id": admitted.rid, "method": "GET",
                               "path": admitted.path[:256].decode("latin-1"),
                               "app": caller.app, "mode": caller.mode,
                               "account": caller.account, "outcome": "allowed"}
        self._decided(admitted, head_at)
        await self.full.upstream_failed(reply, rec, admitted.started, e,
                                        kind="reset" if head_at else None)
