"""The proof's closing table: plain text that reads the same in a terminal, a CI log and docs/reliability.md."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.proof import ProofReport
    from bench.runs import Outcome


def grid(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (pipes), aligned so it also reads as plain text."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def mb(kb: int | None) -> str:
    return f"{kb / 1024:.0f}" if kb else "-"


def _memory(memory: dict[str, dict[str, int]]) -> tuple[str, str]:
    web = memory.get("web", {})
    workers = [m for name, m in memory.items() if name.startswith("worker")]
    worker = max((m.get("VmHWM", 0) for m in workers), default=0)
    return f"{mb(web.get('VmRSS'))} (peak {mb(web.get('VmHWM'))})", f"peak {mb(worker)}" if worker else "-"


def load_section(load: dict[str, Any]) -> list[str]:
    web, _ = _memory(load.get("memory_kb", {}))
    headers = ["target/s", "achieved/s", "sent", "seconds", "p50 ms", "p99 ms", "errors", "stored", "web RSS MB"]
    keys = ("target_rate", "achieved_rate", "sent", "seconds", "p50_ms", "p99_ms", "errors", "stored")
    return [
        "Load held: webhook intake (workers stopped, distinct signed notices over 10 shops)",
        grid(headers, [[*(load[k] for k in keys), web]]),
    ]


def e2e_section(e2e: list[dict[str, Any]]) -> list[str]:
    rows = []
    for e in e2e:
        _, worker = _memory(e["memory_kb"])
        keys = ("limits", "orders", "shops", "orders_per_s", "p50_s", "slowest_s", "booked_once", "lost", "duplicated")
        rows.append([*(e[k] for k in keys), e["exact_429"], worker])
    headers = ["Exact limits", "orders", "shops", "orders/s", "p50 s", "slowest s", "booked once", "lost", "dup"]
    return ["\nEnd to end: notice to booked in the sandbox Exact", grid([*headers, "429s", "worker RSS MB"], rows)]


def faults_section(faults: list[Outcome]) -> list[str]:
    headers = ["scenario", "orders", "booked once", "stated terminal", "lost", "duplicated", "settled s", ""]
    rows = [
        [o.name, o.orders, o.booked_once, o.terminal, o.lost, o.duplicated, o.figures.get("recovered_s", "-")]
        + ["pass" if o.passed else "FAIL"]
        for o in faults
    ]
    lines = ["\nFaults survived (each with orders in flight)", grid(headers, rows)]
    for o in faults:
        attempts = ", ".join(f"{k} {v}" for k, v in sorted(o.figures.get("attempts", {}).items()))
        details = [o.figures.get("fault"), f"attempts: {attempts}" if attempts else "", *o.notes, *o.problems[:5]]
        lines += [f"  - {o.name}: {text}" for text in details if text]
    return lines


def render(report: ProofReport) -> str:
    parts = [f"\nPROOF ({report.profile}, {report.database}) in {report.seconds:.0f} s\n"]
    if report.load:
        parts += load_section(report.load)
    if report.e2e:
        parts += e2e_section(report.e2e)
    if report.faults:
        parts += faults_section(report.faults)
    if report.bad_input:
        bad = report.bad_input
        answers = ", ".join(f"{status}: {n}" for status, n in sorted(bad["statuses"].items()))
        parts.append(f"\nBad inputs tried: {bad['tried']} requests ({answers}); server errors: {bad['server_errors']}")
    if report.secrets:
        s = report.secrets
        parts.append(
            f"Secrets: {s['secrets_checked']} checked in {s['redis_keys']} Redis keys and {s['log_lines']} log lines: "
            f"{len(s['leaks'])} found"
        )
    parts.append(f"\nOrders lost: {report.lost}    Duplicate documents: {report.duplicated}")
    parts += [f"  note: {note}" for note in report.notes]
    parts += [f"  PROBLEM: {problem}" for problem in report.problems]
    parts.append("RESULT: " + ("PASS" if report.passed else "FAIL"))
    return "\n".join(parts)
