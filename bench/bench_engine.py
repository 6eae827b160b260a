"""Decision benchmark: permgate vs pycasbin vs oso on one operations table and one stream.

    scripts/bench engine            # or: .venv/bin/python bench/bench_engine.py [--n 100000]

Every engine gets the same requests (concrete ids, about half denied, ~10% with expand, apps
holding 5-20 permissions) and must reach the same verdicts: the benchmark checks that it does.
The peers are set up idiomatically:
- pycasbin: an RBAC model, one policy per operation matched with keyMatch2, roles for
  write-implies-read and the reference's implications, one role per app.
- oso: Polar rules over the same facts; routes matched by the application (a list of
  compiled patterns, as a web app would), the permission check and implications in Polar.
Both use permgate's expansion graph to learn which object types an expansion reaches (neither
has a notion of it), then check each type's read permission.

Beside Stripe's stream: the same stream with UUID ids instead of short ones, and an own API
(`--api DIR` from `permgate init`; default: one made from the vendored Petstore document),
each also timed in alternation with Stripe's (ABBA) for a ratio that a loaded machine
does not skew.

Per-decision times are measured call by call (perf_counter_ns, minus the timer's own median
cost), on a first (cold) and a second (steady-state) pass; throughput comes from a third,
untimed pass over the whole stream.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import permgate
from permgate.api.operations import Operation
from permgate.decision import Engine

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Request:
    app: int
    method: str
    path: str  # concrete, with the query string when it expands
    op: Operation
    expand: tuple[str, ...]


def make_stream(engine: Engine, n: int, apps: int, seed: int) -> tuple[list[frozenset[str]],
                                                                      list[Request]]:
    rnd = random.Random(seed)
    cat = engine.catalog
    requestable = sorted(p.name for p in cat.permissions.values() if p.requestable)
    # (a small own API may have fewer than 20 permissions)
    grants = [frozenset(rnd.sample(requestable, min(len(requestable), rnd.randint(5, 20))))
              for _ in range(apps)]
    ops = [op for op in engine.operations if op.permission is not None]
    fields: dict[Operation, list[str]] = {}
    for op in ops:
        names: list[str] = []
        for root in op.objects:
            # id expansions only: the stream stays the one earlier runs measured
            names.extend(f for f, kind in engine.graph.kinds(root).items() if kind == "id")
        fields[op] = sorted(set(names))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

    def concrete(template: str) -> str:
        out = []
        for seg in template.split("/"):
            if seg.startswith("{"):
                prefix = seg.strip("{}")[:3].rstrip("_")
                seg = prefix + "_" + "".join(rnd.choices(alphabet, k=14))
            out.append(seg)
        return "/".join(out)

    stream: list[Request] = []
    while len(stream) < n:
        app = rnd.randrange(apps)
        closure = cat.closure(grants[app])
        want_allowed = rnd.random() < 0.5
        pool = [op for op in ops if (op.permission in closure) == want_allowed]
        if not pool:
            continue
        op = rnd.choice(pool)
        path = concrete(op.path)
        expand: tuple[str, ...] = ()
        if rnd.random() < 0.10 and fields[op]:
            f = rnd.choice(fields[op])
            exp = ("data." if op.is_list else "") + f
            if engine.expansion(op, exp).error is None:
                expand = (exp,)
                path += "?expand[]=" + exp
        stream.append(Request(app, op.method, path, op, expand))
    return grants, stream


def with_uuids(stream: list[Request], seed: int) -> list[Request]:
    """The same requests, every id a UUID (36 characters with dashes) instead of a short
    Stripe-style id: what many APIs of one's own use."""
    import uuid

    rnd = random.Random(seed)
    out = []
    for r in stream:
        path, sep, query = r.path.partition("?")
        segs = path.split("/")
        for i, t in enumerate(r.op.path.split("/")):
            if t.startswith("{"):
                segs[i] = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        out.append(Request(r.app, r.method, "/".join(segs) + sep + query, r.op, r.expand))
    return out


def own_api_engine(api_dir: str | None) -> tuple[Engine, str]:
    """An own API's engine: from DIR (`permgate init` output), or made now from the
    vendored Swagger Petstore document."""
    if api_dir is None:
        from permgate.ownapi import init_api

        tmp = Path(tempfile.mkdtemp(prefix="permgate-bench-api-"))
        init_api(ROOT / "tests" / "data" / "openapi" / "petstore3.yaml", tmp / "api")
        api_dir = str(tmp / "api")
    import tomllib

    d = Path(api_dir)
    name = tomllib.loads((d / "api.toml").read_text())["api"]["name"]
    engine = permgate.load(d / "permissions.json", d / "events.json", d / "operations.json",
                           d / "objects.json", d / "expansions.json", name=name)
    return engine, name


# -- peers -----------------------------------------------------------------------------------

def casbin_template(path: str) -> str:
    return re.sub(r"\{([^}]+)\}", r":\1", path)


def make_casbin(engine: Engine, grants: list[frozenset[str]]) -> Callable[[Request], bool]:
    import casbin

    cat = engine.catalog
    tmp = Path(tempfile.mkdtemp(prefix="permgate-bench-"))
    (tmp / "model.conf").write_text(
        "[request_definition]\nr = sub, obj, act\n\n"
        "[policy_definition]\np = sub, obj, act\n\n"
        "[role_definition]\ng = _, _\n\n"
        "[policy_effect]\ne = some(where (p.eft == allow))\n\n"
        "[matchers]\nm = g(r.sub, p.sub) && keyMatch2(r.obj, p.obj) && r.act == p.act\n"
    )
    lines = []
    for op in engine.operations:
        if op.permission is not None:
            lines.append(f"p, {op.permission}, {casbin_template(op.path)}, {op.method}")
    for name in cat.permissions:
        lines.append(f"p, {name}, need.{name}, read")
    for p in cat.permissions.values():
        twin = f"{p.resource}_read"
        if p.level == "write" and twin in cat.permissions:
            lines.append(f"g, {p.name}, {twin}")
        for target in p.implies:
            lines.append(f"g, {p.name}, {target}")
    for i, g in enumerate(grants):
        for name in sorted(g):
            lines.append(f"g, app{i}, {name}")
    (tmp / "policy.csv").write_text("\n".join(lines) + "\n")
    enforcer = casbin.Enforcer(str(tmp / "model.conf"), str(tmp / "policy.csv"))
    enforcer.enable_log(False) if hasattr(enforcer, "enable_log") else None
    subjects = [f"app{i}" for i in range(len(grants))]

    def decide(r: Request) -> bool:
        sub = subjects[r.app]
        if not enforcer.enforce(sub, r.path.partition("?")[0], r.method):
            return False
        for e in r.expand:
            for need in engine.expansion(r.op, e).needs:
                if not enforcer.enforce(sub, f"need.{need}", "read"):
                    return False
        return True

    return decide


POLAR = """
allow(app: App, "call", op: Op) if holds(app, op.permission);
allow(app: App, "read", need: String) if holds(app, need);
holds(app: App, need: String) if need in app.closure_of_grants;
"""


def make_oso(engine: Engine, grants: list[frozenset[str]]) -> Callable[[Request], bool]:
    from oso import Oso

    cat = engine.catalog

    class App:
        def __init__(self, names: frozenset[str]) -> None:
            # Implications (transitive; the reference's have a cycle, which Polar recursion
            # would not end on) are expanded once per app, as an app would cache them.
            self.closure_of_grants = sorted(cat.closure(names))

    class Op:
        def __init__(self, permission: str) -> None:
            self.permission = permission

    oso = Oso()
    oso.register_class(App)
    oso.register_class(Op)
    oso.load_str(POLAR)
    apps = [App(g) for g in grants]
    routes: dict[str, list[tuple[re.Pattern[str], Op]]] = {}
    for op in engine.operations:
        if op.permission is None:
            continue
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(op.path)) + "$")
        routes.setdefault(op.method, []).append((pattern, Op(op.permission)))
    # literal routes first, so /v1/customers/search is not taken for an id
    for lst in routes.values():
        lst.sort(key=lambda po: po[0].pattern.count("[^/]+"))

    def decide(r: Request) -> bool:
        path = r.path.partition("?")[0]
        target = next((o for p, o in routes.get(r.method, ()) if p.match(path)), None)
        if target is None:
            return False
        app = apps[r.app]
        if not oso.is_allowed(app, "call", target):
            return False
        for e in r.expand:
            for need in engine.expansion(r.op, e).needs:
                if not oso.is_allowed(app, "read", need):
                    return False
        return True

    return decide


def make_permgate(engine: Engine, grants: list[frozenset[str]]) -> Adapter:
    """Called as an application calls it: decide(method, target, body, grant) with the
    install's Grant built once; the arguments are prepared outside the timed call."""
    held = [engine.grant(g) for g in grants]
    return Adapter(
        call=engine.decide,
        prepare=lambda r: (r.method, r.path, None, held[r.app]),
        verdict=lambda d: bool(d.allowed),  # type: ignore[attr-defined]
    )


def plain_adapter(decide: Callable[[Request], bool]) -> Adapter:
    return Adapter(call=decide, prepare=lambda r: (r,), verdict=bool)


# -- measurement -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Adapter:
    call: Callable[..., object]
    prepare: Callable[[Request], tuple[object, ...]]
    verdict: Callable[[object], bool]


def empty_call_us() -> float:
    """What an empty Python call costs on this machine now: the yardstick for the others
    (shared machines vary by 2x from one minute to the next)."""
    def nothing(a: object, b: object, c: object, d: object) -> None:
        return None

    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(200_000):
            nothing(1, 2, 3, 4)
        best = min(best, (time.perf_counter() - t) / 200_000)
    return best * 1e6


def timer_overhead() -> float:
    ns = time.perf_counter_ns
    samples = []
    for _ in range(20000):
        t = ns()
        samples.append(ns() - t)
    return statistics.median(samples)


def measure(name: str, adapter: Adapter, stream: list[Request],
            expected: list[bool] | None, overhead: float) -> dict[str, object]:
    ns = time.perf_counter_ns
    call = adapter.call
    argv = [adapter.prepare(r) for r in stream]
    answers: list[object] = []
    runs: list[tuple[list[int], list[int]]] = []
    gc.disable()
    try:
        # Pass 1 meets every (operation, expansion) for the first time (cold caches); pass 2
        # is the steady state a long-running service sees. Both are timed call by call.
        for first in (True, False):
            plain: list[int] = []
            expanded: list[int] = []
            for r, args in zip(stream, argv, strict=True):
                t = ns()
                v = call(*args)
                dt = ns() - t
                if first:
                    answers.append(v)
                (expanded if r.expand else plain).append(dt)
            runs.append((plain, expanded))
        t0 = time.perf_counter()
        for args in argv:
            call(*args)
        total = time.perf_counter() - t0
    finally:
        gc.enable()
    verdicts = [adapter.verdict(a) for a in answers]
    (cold_plain, cold_expanded), (plain, expanded) = runs
    disagree = 0
    if expected is not None:
        disagree = sum(1 for a, b in zip(verdicts, expected, strict=True) if a != b)
    all_times = plain + expanded

    def med(xs: list[int]) -> float:
        return max(statistics.median(xs) - overhead, 0.0) / 1000 if xs else float("nan")

    return {
        "engine": name, "requests": len(stream),
        "median_us": med(all_times), "median_us_plain": med(plain),
        "median_us_expand": med(expanded), "cold_median_us": med(cold_plain + cold_expanded),
        "cold_median_us_expand": med(cold_expanded),
        "p99_us": max(sorted(all_times)[int(len(all_times) * 0.99)] - overhead, 0) / 1000,
        "decisions_per_s": len(stream) / total, "denied": verdicts.count(False),
        "disagreements": disagree, "verdicts": verdicts,
    }


def paired(a: Adapter, a_stream: list[Request], b: Adapter, b_stream: list[Request],
           overhead: float) -> tuple[float, float]:
    """Median us per decision of two streams timed call by call in alternation (a[i] and
    b[i] in turn, ABBA), steady state (second pass): a shared, loaded machine slows both
    alike, so their ratio holds where figures measured one after the other do not."""
    ns = time.perf_counter_ns
    n = min(len(a_stream), len(b_stream))
    a_args = [a.prepare(r) for r in a_stream[:n]]
    b_args = [b.prepare(r) for r in b_stream[:n]]
    fa, fb = a.call, b.call
    ta: list[int] = []
    tb: list[int] = []
    gc.disable()
    try:
        for _ in range(2):
            ta.clear()
            tb.clear()
            # ABBA: the call that comes second in a pair runs on warmer caches, so each
            # goes first half of the time
            for i, (x, y) in enumerate(zip(a_args, b_args, strict=True)):
                if i & 1:
                    t = ns()
                    fb(*y)
                    t2 = ns()
                    fa(*x)
                    t3 = ns()
                    tb.append(t2 - t)
                    ta.append(t3 - t2)
                else:
                    t = ns()
                    fa(*x)
                    t2 = ns()
                    fb(*y)
                    t3 = ns()
                    ta.append(t2 - t)
                    tb.append(t3 - t2)
    finally:
        gc.enable()
    return ((statistics.median(ta) - overhead) / 1000, (statistics.median(tb) - overhead) / 1000)


def load_figures() -> dict[str, float]:
    """Import time, load time and RSS of the loaded catalog, in a fresh interpreter."""
    code = (
        "import time,resource,json\n"
        "def rss():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmRSS'): return int(line.split()[1])\n"
        "r0=rss(); t0=time.perf_counter()\n"
        "import permgate\n"
        "t1=time.perf_counter(); r1=rss()\n"
        "e=permgate.load()\n"
        "t2=time.perf_counter(); r2=rss()\n"
        "print(json.dumps({'import_ms':(t1-t0)*1e3,'load_ms':(t2-t1)*1e3,"
        "'rss_import_kib':r1-r0,'rss_catalog_kib':r2-r1}))\n"
    )
    runs = []
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, cwd=ROOT)
        runs.append(json.loads(out.stdout))
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


FLOOD = r"""
import gc, json, sys
import permgate

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])

engine = permgate.load()
grant = engine.grant(["charge_read", "charge_write", "customer_read"])
template = "&".join(f"expand[]=r@f{j}.customer" for j in range(20_000))
for i in range(20):  # warm up: first allocations of the interpreter and the engine
    engine.decide("GET", "/v1/charges/ch_1?expand[]=customer&expand[]=invoice", None, grant)
gc.collect()
before = rss()
kinds = set()
for i in range(int(sys.argv[1])):
    query = template.replace("@", str(i))
    kinds.add(engine.decide("GET", "/v1/charges/ch_1?" + query, None, grant).kind)
    kinds.add(engine.decide("POST", "/v1/charges/ch_1", query.encode(), grant).kind)
    # the most an app may send and still be parsed: 64 unique paths of ~400 bytes
    paths = "&".join(f"expand[]=customer.x{i}_{j}_" + "a" * 380 for j in range(64))
    kinds.add(engine.decide("GET", "/v1/charges/ch_1?" + paths, None, grant).kind)
gc.collect()
print(json.dumps({"requests": int(sys.argv[1]) * 3, "rss_before_kib": before,
                  "rss_after_kib": rss(), "kinds": sorted(kinds),
                  "caches": engine.cache_sizes()}))
"""


def memory_flood(n: int) -> dict[str, object]:
    """RSS of a fresh engine before and after `n` rounds of hostile expand lists (each round:
    20k unique entries in a query, the same in a form body, 64 unique 400-byte paths)."""
    out = subprocess.run([sys.executable, "-c", FLOOD, str(n)], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return dict(json.loads(out.stdout))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=100_000, help="requests in the stream")
    ap.add_argument("--apps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--casbin-sample", type=int, default=3000,
                    help="requests of the stream given to pycasbin (every k-th; it takes ms "
                    "per decision). 0 = the whole stream")
    ap.add_argument("--oso-sample", type=int, default=20000, help="likewise for oso; 0 = all")
    ap.add_argument("--json", metavar="FILE", help="also write the figures here")
    ap.add_argument("--flood", type=int, default=120, metavar="N",
                    help="rounds of hostile expand lists for the memory figure (0: skip)")
    ap.add_argument("--flood-only", action="store_true", help="only the memory figure")
    ap.add_argument("--api", metavar="DIR", help="the own API measured beside Stripe's (an "
                    "API DIR written by `permgate init`; default: one made from the vendored "
                    "Petstore document)")
    args = ap.parse_args(argv)
    if args.flood_only:
        print(json.dumps(memory_flood(args.flood or 120)))
        return 0

    engine = permgate.default_engine()
    grants, stream = make_stream(engine, args.n, args.apps, args.seed)
    overhead = timer_overhead()
    print(f"stream: {len(stream)} requests, {args.apps} apps, "
          f"{sum(1 for r in stream if r.expand)} with expand; timer overhead {overhead:.0f} ns",
          flush=True)

    results = [measure("permgate", make_permgate(engine, grants), stream, None, overhead)]
    truth: list[bool] = results[0]["verdicts"]  # type: ignore[assignment]
    print(f"  permgate done: {results[0]['median_us']:.2f} us median", flush=True)
    # The same stream with UUID ids, and an own API's stream, on the same run: ratios to
    # Stripe's short-id figure hold on a loaded machine where absolute figures do not.
    results.append(measure("uuid-ids", make_permgate(engine, grants),
                           with_uuids(stream, args.seed), truth, overhead))
    own, own_name = own_api_engine(args.api)
    own_grants, own_stream = make_stream(own, args.n, args.apps, args.seed)
    results.append(measure(f"own:{own_name}"[:10], make_permgate(own, own_grants), own_stream,
                           None, overhead))
    extra = {r["engine"]: r for r in results[1:]}
    print(f"  UUID ids: {results[1]['median_us']:.2f} us median; own API {own_name} "
          f"({len(own.operations)} operations): {results[2]['median_us']:.2f} us median",
          flush=True)
    stripe_adapter = make_permgate(engine, grants)
    pairs = {
        "UUID ids / short ids": paired(stripe_adapter, stream, make_permgate(engine, grants),
                                       with_uuids(stream, args.seed), overhead),
        f"own API {own_name} / Stripe": paired(stripe_adapter, stream,
                                               make_permgate(own, own_grants), own_stream,
                                               overhead),
    }

    def sample(k: int) -> tuple[list[Request], list[bool]]:
        if k <= 0 or k >= len(stream):
            return stream, truth
        step = len(stream) // k
        idx = range(0, step * k, step)
        return [stream[i] for i in idx], [truth[i] for i in idx]

    for name, make, k in (("oso", make_oso, args.oso_sample),
                          ("pycasbin", make_casbin, args.casbin_sample)):
        sub, expected = sample(k)
        results.append(measure(name, plain_adapter(make(engine, grants)), sub, expected,
                               overhead))
        print(f"  {name} done: {results[-1]['median_us']:.1f} us median", flush=True)

    base = results[0]
    print()
    print("median/p99: per decision, steady state (second pass); cold: first pass, every "
          "(operation, expansion) new")
    print(f"{'engine':<10}{'requests':>9}{'median us':>11}{'plain':>9}{'expand':>9}"
          f"{'p99 us':>10}{'cold':>9}{'cold exp':>9}{'decisions/s':>13}{'x permgate':>12}"
          f"{'disagree':>9}")
    for r in results:
        ratio = r["median_us"] / base["median_us"]  # type: ignore[operator]
        print(f"{r['engine']:<10}{r['requests']:>9}{r['median_us']:>11.2f}"
              f"{r['median_us_plain']:>9.2f}{r['median_us_expand']:>9.2f}{r['p99_us']:>10.2f}"
              f"{r['cold_median_us']:>9.2f}{r['cold_median_us_expand']:>9.2f}"
              f"{r['decisions_per_s']:>13,.0f}{ratio:>11,.1f}x{r['disagreements']:>9}")
    for label, (x, y) in pairs.items():
        print(f"{label}, paired (timed in alternation): {y:.2f} / {x:.2f} us = {y / x:.2f}x")
    for label, r in extra.items():
        ratio_plain = r["median_us_plain"] / base["median_us_plain"]  # type: ignore[operator]
        ratio_all = r["median_us"] / base["median_us"]  # type: ignore[operator]
        print(f"{label} / Stripe short ids, same run: {ratio_all:.2f}x median "
              f"({ratio_plain:.2f}x without expand)")
    denied = base["denied"] / base["requests"]  # type: ignore[operator]
    yardstick = empty_call_us()
    print(f"\npermgate denied {denied:.0%} of the stream. An empty Python call took "
          f"{yardstick:.3f} us in this run: permgate's median decision is "
          f"{base['median_us'] / yardstick:.0f} empty calls.")
    figures = load_figures()
    print(f"import permgate: {figures['import_ms']:.1f} ms; load catalog+table: "
          f"{figures['load_ms']:.1f} ms; RSS of the loaded engine: "
          f"{figures['rss_catalog_kib'] / 1024:.1f} MiB (import: "
          f"{figures['rss_import_kib'] / 1024:.1f} MiB)")
    flood: dict[str, object] = {}
    if args.flood:
        flood = memory_flood(args.flood)
        before, after = int(flood["rss_before_kib"]), int(flood["rss_after_kib"])  # type: ignore[call-overload]
        print(f"memory under hostile expand lists ({flood['requests']} requests: 20k unique "
              f"entries in queries and bodies, 64 unique 400-byte paths): RSS "
              f"{before / 1024:.1f} -> {after / 1024:.1f} MiB ({(after - before) / 1024:+.1f} "
              f"MiB); answers {flood['kinds']}")
    bad = [r["engine"] for r in results if r["disagreements"]]
    if bad:
        print(f"DISAGREEMENT with permgate's verdicts: {', '.join(map(str, bad))}")
    if args.json:
        for r in results:
            r.pop("verdicts")
        Path(args.json).write_text(json.dumps({"results": results, "load": figures,
                                               "flood": flood,
                                               "python": sys.version, "pid": os.getpid()},
                                              indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
