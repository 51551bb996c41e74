"""Per-notebook timing for `pytest --nbval`: the summary lists each notebook's total execution time and
fails the run when one exceeds its budget.

A notebook's budget is its metadata entry ``kqv.budget_seconds`` (the time its issue allows on a 2-core
CPU), else ``KQV_NOTEBOOK_BUDGET`` seconds, default 30. ``KQV_BUDGET_FACTOR`` scales every budget
(e.g. 3 on a CPU three times slower).
"""
import json
import os
from collections import defaultdict
from pathlib import Path

_times: dict[str, float] = defaultdict(float)


def _default_budget() -> float:
    return float(os.environ.get("KQV_NOTEBOOK_BUDGET", "30"))


def _budget(path: str) -> float:
    try:
        meta = json.loads(Path(path).read_text())["metadata"].get("kqv", {})
    except (OSError, ValueError, KeyError):
        meta = {}
    return float(meta.get("budget_seconds", _default_budget())) * float(os.environ.get("KQV_BUDGET_FACTOR", "1"))


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _times[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _times:
        return
    tr = terminalreporter
    tr.section("notebook execution times")
    for path, secs in sorted(_times.items(), key=lambda kv: -kv[1]):
        budget = _budget(path)
        flag = "  OVER BUDGET" if secs > budget else ""
        tr.write_line(f"{secs:7.1f} s  {path}  (budget {budget:.0f} s){flag}")
    tr.write_line(f"{sum(_times.values()):7.1f} s  in all")


def pytest_sessionfinish(session, exitstatus):
    if any(t > _budget(p) for p, t in _times.items()) and session.exitstatus == 0:
        session.exitstatus = 1
