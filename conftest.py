"""Per-notebook timing for `pytest --nbval`: the summary lists each notebook's total execution time and
fails the run when one exceeds its budget (KQV_NOTEBOOK_BUDGET seconds, default 30)."""
import os
from collections import defaultdict

_times: dict[str, float] = defaultdict(float)


def _budget() -> float:
    return float(os.environ.get("KQV_NOTEBOOK_BUDGET", "30"))


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
        flag = "  OVER BUDGET" if secs > _budget() else ""
        tr.write_line(f"{secs:7.1f} s  {path}{flag}")
    tr.write_line(f"{sum(_times.values()):7.1f} s  in all (budget per notebook {_budget():.0f} s)")


def pytest_sessionfinish(session, exitstatus):
    if any(t > _budget() for t in _times.values()) and session.exitstatus == 0:
        session.exitstatus = 1
