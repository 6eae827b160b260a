"""Prometheus metrics, in the text exposition format (0.0.4), kept in plain dicts.

Each worker counts in its own dicts (a request costs a few dict updates, no lock, no system
call). With several workers, each also writes a snapshot of its counts to a shared folder
(`PERMGATE_METRICS_DIR`, made by the server's supervisor) every `SharedMetrics.INTERVAL`
seconds, and a scrape answered by any worker adds up every worker's latest snapshot and
its own live counts: the totals are right across workers, at most one interval behind for
the others. A stopped worker's last snapshot stays counted (counters never go down).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

from permgate import envvars

METRICS_DIR_ENV = envvars.METRICS_DIR.name

# Seconds. Decisions take microseconds; upstream calls milliseconds to seconds.
DECISION_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.025)
UPSTREAM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 80.0)


class Histogram:
    __slots__ = ("bounds", "count", "counts", "help", "name", "total")

    def __init__(self, name: str, help_text: str, bounds: tuple[float, ...]) -> None:
        self.name = name
        self.help = help_text
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        # The first bound >= seconds (bisect_left's bucket), found from the low end: most
        # observations fall in the first buckets, and compiled these are float comparisons,
        # where a call to bisect compares through generic calls (about 700 instructions per
        # observation, two per call; callgrind).
        i = 0
        for bound in self.bounds:
            if seconds <= bound:
                break
            i += 1
        self.counts[i] += 1
        self.count += 1
        self.total += seconds

    def snapshot(self) -> list[Any]:
        return [list(self.counts), self.count, self.total]

    def add(self, snap: list[Any]) -> None:
        counts, count, total = snap
        if len(counts) == len(self.counts):
            self.counts = [a + b for a, b in zip(self.counts, counts, strict=True)]
            self.count += count
            self.total += total

    def render(self, out: list[str]) -> None:
        out.append(f"# HELP {self.name} {self.help}")
        out.append(f"# TYPE {self.name} histogram")
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append(f'{self.name}_bucket{{le="{bound:g}"}} {running}')
        out.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        out.append(f"{self.name}_sum {self.total:.9g}")
        out.append(f"{self.name}_count {self.count}")


class Tally:
    """One counter, kept in a `Metrics`' table: the call path holds on to it and adds to it
    (an attribute add, compiled), where a dictionary's get and set of a tuple key cost about
    900 instructions a call (callgrind)."""

    __slots__ = ("n", "owner")

    def __init__(self, owner: Metrics) -> None:
        self.n = 0
        self.owner = owner  # the Metrics counting it: a holder checks it still counts there


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    def __init__(self) -> None:
        # (app, outcome) and status -> its counter (`tally`; `decisions` and `responses` are
        # the counts read from them).
        self._decisions: dict[tuple[str, str], Tally] = {}
        self._responses: dict[int, Tally] = {}
        self.upstream_errors: dict[str, int] = {}
        # The native server's client connections: open now (a gauge, summed over workers),
        # refused at the cap, and closed by a limit (idle, head_timeout, request_timeout,
        # drain_timeout).
        self.connections_open = 0
        self.connections_refused = 0
        self.connections_closed: dict[str, int] = {}
        self.decision_seconds = Histogram(
            "permgate_decision_seconds", "Time to decide one request (engine only).",
            DECISION_BUCKETS)
        self.upstream_seconds = Histogram(
            "permgate_upstream_seconds",
            "Time from sending a request upstream to its response headers.", UPSTREAM_BUCKETS)

    @property
    def decisions(self) -> dict[tuple[str, str], int]:
        """Requests decided so far, by (app, outcome)."""
        return {key: t.n for key, t in self._decisions.items()}

    @property
    def responses(self) -> dict[int, int]:
        """Responses sent so far, by status."""
        return {status: t.n for status, t in self._responses.items()}

    def tally(self, app: str, outcome: str) -> Tally:
        """The decisions counter of (app, outcome), to add to directly."""
        key = (app, outcome)
        found = self._decisions.get(key)
        if found is None:
            found = self._decisions[key] = Tally(self)
        return found

    def decision(self, app: str, outcome: str) -> None:
        self.tally(app, outcome).n += 1

    def status_tally(self, status: int) -> Tally:
        """The responses counter of `status`."""
        found = self._responses.get(status)
        if found is None:
            found = self._responses[status] = Tally(self)
        return found

    def response(self, status: int) -> None:
        self.status_tally(status).n += 1

    def upstream_error(self, kind: str) -> None:
        self.upstream_errors[kind] = self.upstream_errors.get(kind, 0) + 1

    def connection_closed(self, reason: str) -> None:
        self.connections_closed[reason] = self.connections_closed.get(reason, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "decisions": [[a, o, n] for (a, o), n in self.decisions.items()],
            "responses": [[s, n] for s, n in self.responses.items()],
            "upstream_errors": [[k, n] for k, n in self.upstream_errors.items()],
            "connections": [self.connections_open, self.connections_refused],
            "connections_closed": [[k, n] for k, n in self.connections_closed.items()],
            "decision_seconds": self.decision_seconds.snapshot(),
            "upstream_seconds": self.upstream_seconds.snapshot(),
        }

    def add(self, snap: dict[str, Any]) -> None:
        for app, outcome, n in snap.get("decisions", ()):
            self.tally(str(app), str(outcome)).n += int(n)
        for status, n in snap.get("responses", ()):
            self.status_tally(int(status)).n += int(n)
        for kind, n in snap.get("upstream_errors", ()):
            self.upstream_errors[str(kind)] = self.upstream_errors.get(str(kind), 0) + int(n)
        if "connections" in snap:
            open_now, refused = snap["connections"]
            self.connections_open += int(open_now)
            self.connections_refused += int(refused)
        for reason, n in snap.get("connections_closed", ()):
            self.connections_closed[str(reason)] = (
                self.connections_closed.get(str(reason), 0) + int(n))
        if "decision_seconds" in snap:
            self.decision_seconds.add(snap["decision_seconds"])
        if "upstream_seconds" in snap:
            self.upstream_seconds.add(snap["upstream_seconds"])

    def render(self) -> bytes:
        out = [
            "# HELP permgate_decisions_total Requests decided, by app and outcome "
            "(allowed, missing, unavailable, unknown, bad_request, not_installed, "
            "unauthenticated, report_only_allowed).",
            "# TYPE permgate_decisions_total counter",
        ]
        for (app, outcome), n in sorted(self.decisions.items()):
            out.append(f'permgate_decisions_total{{app="{_label(app)}",outcome="{outcome}"}} {n}')
        out.append("# HELP permgate_responses_total Responses sent, by HTTP status.")
        out.append("# TYPE permgate_responses_total counter")
        for status, n in sorted(self.responses.items()):
            out.append(f'permgate_responses_total{{status="{status}"}} {n}')
        out.append("# HELP permgate_upstream_errors_total Upstream failures, by kind.")
        out.append("# TYPE permgate_upstream_errors_total counter")
        for kind, n in sorted(self.upstream_errors.items()):
            out.append(f'permgate_upstream_errors_total{{kind="{kind}"}} {n}')
        out.append("# HELP permgate_connections_open Client connections open (native server).")
        out.append("# TYPE permgate_connections_open gauge")
        out.append(f"permgate_connections_open {self.connections_open}")
        out.append("# HELP permgate_connections_refused_total Client connections refused at "
                   "the per-worker cap (native server).")
        out.append("# TYPE permgate_connections_refused_total counter")
        out.append(f"permgate_connections_refused_total {self.connections_refused}")
        out.append("# HELP permgate_connections_closed_total Client connections closed by a "
                   "limit, by reason (native server).")
        out.append("# TYPE permgate_connections_closed_total counter")
        for reason, n in sorted(self.connections_closed.items()):
            out.append(f'permgate_connections_closed_total{{reason="{reason}"}} {n}')
        self.decision_seconds.render(out)
        self.upstream_seconds.render(out)
        return ("\n".join(out) + "\n").encode("utf-8")


class SharedMetrics:
    """This worker's snapshots in the shared folder, and the sum of all workers'."""

    INTERVAL = 1.0

    def __init__(self, metrics: Metrics, folder: Path) -> None:
        self.metrics = metrics
        self.folder = folder
        self.path = folder / f"worker-{os.getpid()}.json"
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_env(cls, metrics: Metrics) -> SharedMetrics | None:
        folder = envvars.METRICS_DIR.get()
        return cls(metrics, Path(folder)) if folder else None

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        # Written whole, then renamed: a reader never sees half a snapshot.
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(self.metrics.snapshot()))
            os.replace(tmp, self.path)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._write_forever())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.write()

    async def _write_forever(self) -> None:
        while True:
            await asyncio.sleep(self.INTERVAL)
            self.write()

    def total(self) -> Metrics:
        out = Metrics()
        out.add(self.metrics.snapshot())  # this worker: live
        for path in sorted(self.folder.glob("worker-*.json")):
            if path == self.path:
                continue
            try:
                out.add(json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # a worker's file being replaced: counted at the next scrape
        return out

    def render(self) -> bytes:
        return self.total().render()
