"""bench/gateway/under_load.py reads system call counts from the two counters' own output
formats (`perf stat -x,` and `strace -c`); a count it misreads would be a wrong figure
per request, so the parsing is checked on their real text."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

UNDER_LOAD = Path(__file__).resolve().parents[2] / "bench" / "gateway" / "under_load.py"

PERF = """# started on Tue Dec  8 03:52:56 2026

4,,syscalls:sys_enter_read,1873434,100.00,,
0,,syscalls:sys_enter_write,1873434,100.00,,
33,,syscalls:sys_enter_openat,1873434,100.00,,
<not counted>,,syscalls:sys_enter_close,0,0.00,,
1,,syscalls:sys_enter_getpid,1873434,100.00,,
"""

STRACE = """% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 53.23    0.000716         179         4         2 wait4
  9.14    0.000123           1        63        16 newfstatat
  4.68    0.000063           1        60           mmap
------ ----------- ----------- --------- --------- ----------------
100.00    0.001345           6       127        18 total
"""


def _under_load() -> Any:
    """The bench's module, by its path (`bench` is no package the tests import)."""
    spec = importlib.util.spec_from_file_location("bench_under_load", UNDER_LOAD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_perf_counts_name_each_call_and_skip_zero_and_uncounted() -> None:
    assert _under_load().parse_counts(PERF, strace=False) == {
        "read": 4, "openat": 33, "getpid": 1}


def test_strace_counts_take_the_calls_column_not_errors_nor_the_total() -> None:
    assert _under_load().parse_counts(STRACE, strace=True) == {
        "wait4": 4, "newfstatat": 63, "mmap": 60}
