"""Prometheus metrics, in the text exposition format (0.0.4), kept in plain dicts.

Each worker process keeps its own numbers; a scrape sees the worker that answered it.
"""

from __future__ import annotations

from bisect import bisect_left

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
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.count += 1
        self.total += seconds

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


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    def __init__(self) -> None:
        self.decisions: dict[tuple[str, str], int] = {}
        self.responses: dict[int, int] = {}
        self.upstream_errors: dict[str, int] = {}
        self.decision_seconds = Histogram(
            "permgate_decision_seconds", "Time to decide one request (engine only).",
            DECISION_BUCKETS)
        self.upstream_seconds = Histogram(
            "permgate_upstream_seconds",
            "Time from sending a request upstream to its response headers.", UPSTREAM_BUCKETS)

    def decision(self, app: str, outcome: str) -> None:
        key = (app, outcome)
        self.decisions[key] = self.decisions.get(key, 0) + 1

    def response(self, status: int) -> None:
        self.responses[status] = self.responses.get(status, 0) + 1

    def upstream_error(self, kind: str) -> None:
        self.upstream_errors[kind] = self.upstream_errors.get(kind, 0) + 1

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
        self.decision_seconds.render(out)
        self.upstream_seconds.render(out)
        return ("\n".join(out) + "\n").encode("utf-8")
