"""The chaos run's HTML report: one self-contained page with an inline SVG timeline.

Owns: turning a history (``quorumlog.chaos.run.history``) and the run's result JSON into HTML:
the verdict and totals, throughput and latency over time with fault windows shaded, the
per-fault availability table and the anomalies found. Must never: fetch or reference anything
outside the page (no external JS, CSS, fonts or images), read a clock, judge the history (the
result comes from ``quorumlog.chaos.run.checker``), or write files (the caller does).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from quorumlog.chaos.run.history import DRAIN_PROCESS, FaultWindow, History

WIDTH = 1000
LEFT = 60
RIGHT = 20
PANEL = 170
GAP = 40
TOP = 30
MAX_BUCKETS = 400
FAULT_COLOURS = ("#f4a3a3", "#f6c48e", "#c7b3e6", "#9fd3c7", "#f2e394", "#a9c8ee")


@dataclass(frozen=True)
class Bucket:
    start: float
    ok: int
    failed: int  # fail + info
    latency_p50_ms: float | None
    latency_max_ms: float | None
    deliveries: int = 0  # messages delivered to the workload's consumers (not the drain)


def timeline(history: History, bucket_seconds: float | None = None) -> list[Bucket]:
    """Completions per bucket (by completion time) and ok latencies, from the first event."""
    start, end = history.start_time, history.end_time
    span = max(end - start, 1e-9)
    width = bucket_seconds or max(1.0, math.ceil(span / MAX_BUCKETS))
    count = max(1, math.ceil(span / width))
    oks = [0] * count
    failed = [0] * count
    delivered = [0] * count
    latencies: list[list[float]] = [[] for _ in range(count)]
    for op in history.operations:
        if op.complete_time is None:
            continue
        index = min(count - 1, int((op.complete_time - start) / width))
        if op.outcome == "ok":
            oks[index] += 1
            if op.op == "receive" and op.process != DRAIN_PROCESS:
                delivered[index] += len(op.records)
            latencies[index].append((op.complete_time - op.invoke_time) * 1000.0)
        else:
            failed[index] += 1
    buckets = []
    for index in range(count):
        values = sorted(latencies[index])
        buckets.append(Bucket(
            start=start + index * width, ok=oks[index], failed=failed[index],
            latency_p50_ms=values[len(values) // 2] if values else None,
            latency_max_ms=values[-1] if values else None, deliveries=delivered[index]))
    return buckets


def _polyline(points: Sequence[tuple[float, float]], colour: str) -> str:
    if not points:
        return ""
    text = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{text}"/>'


def timeline_svg(history: History, faults: Sequence[FaultWindow]) -> str:
    buckets = timeline(history)
    start, end = history.start_time, max(history.end_time, history.start_time + 1e-9)
    width_seconds = (buckets[1].start - buckets[0].start) if len(buckets) > 1 else 1.0
    plot_width = WIDTH - LEFT - RIGHT
    height = TOP + 2 * PANEL + GAP + 40

    def x_of(time: float) -> float:
        return LEFT + (time - start) / (end - start) * plot_width

    top_throughput = TOP
    top_latency = TOP + PANEL + GAP
    max_rate = max((max(b.ok, b.failed, b.deliveries) / width_seconds for b in buckets),
                   default=1.0) or 1.0
    consuming = any(b.deliveries for b in buckets)
    max_latency = max((b.latency_max_ms or 0.0 for b in buckets), default=1.0) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">']
    for index, fault in enumerate(faults):
        x0 = x_of(fault.start)
        x1 = x_of(fault.end if fault.end is not None else end)
        colour = FAULT_COLOURS[index % len(FAULT_COLOURS)]
        label = html.escape(fault.fault + (f" {fault.target}" if fault.target else ""))
        parts.append(f'<rect x="{x0:.1f}" y="{TOP}" width="{max(x1 - x0, 1.0):.1f}" '
                     f'height="{2 * PANEL + GAP}" fill="{colour}" opacity="0.45">'
                     f"<title>{label}: {fault.start:.1f}s to "
                     f"{(fault.end if fault.end is not None else end):.1f}s</title></rect>")
        parts.append(f'<text x="{x0 + 2:.1f}" y="{TOP - 4 - (index % 2) * 11}" '
                     f'font-size="9">{html.escape(fault.fault)}</text>')
    for top, title, maximum, unit in ((top_throughput, "throughput (ops/s)", max_rate, ""),
                                      (top_latency, "ok latency (ms)", max_latency, " ms")):
        parts.append(f'<rect x="{LEFT}" y="{top}" width="{plot_width}" height="{PANEL}" '
                     'fill="none" stroke="#888"/>')
        parts.append(f'<text x="{LEFT}" y="{top + PANEL + 14}">{title}</text>')
        parts.append(f'<text x="{LEFT - 4}" y="{top + 10}" text-anchor="end">'
                     f"{maximum:.0f}{unit}</text>")
        parts.append(f'<text x="{LEFT - 4}" y="{top + PANEL}" text-anchor="end">0</text>')
    for tick in _ticks(start, end):
        x = x_of(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{top_latency + PANEL}" x2="{x:.1f}" '
                     f'y2="{top_latency + PANEL + 4}" stroke="#888"/>')
        parts.append(f'<text x="{x:.1f}" y="{top_latency + PANEL + 28}" '
                     f'text-anchor="middle">{tick:.0f}s</text>')

    def rate_y(count: int) -> float:
        return top_throughput + PANEL - (count / width_seconds) / max_rate * PANEL

    def latency_y(value: float) -> float:
        return top_latency + PANEL - value / max_latency * PANEL

    middle = width_seconds / 2
    parts.append(_polyline([(x_of(b.start + middle), rate_y(b.ok)) for b in buckets], "#1f6fb2"))
    parts.append(_polyline([(x_of(b.start + middle), rate_y(b.failed)) for b in buckets],
                           "#c0392b"))
    if consuming:
        parts.append(_polyline([(x_of(b.start + middle), rate_y(b.deliveries))
                                for b in buckets], "#2e7d32"))
    parts.append(_polyline([(x_of(b.start + middle), latency_y(b.latency_p50_ms))
                            for b in buckets if b.latency_p50_ms is not None], "#1f6fb2"))
    parts.append(_polyline([(x_of(b.start + middle), latency_y(b.latency_max_ms))
                            for b in buckets if b.latency_max_ms is not None], "#e67e22"))
    legend_y = height - 6
    legend = [("#1f6fb2", "ok ops/s, p50 latency"), ("#c0392b", "fail + unknown ops/s"),
              ("#e67e22", "max latency")]
    if consuming:
        legend.append(("#2e7d32", "consumer deliveries/s"))
    for offset, (colour, text) in enumerate(legend):
        x = LEFT + offset * 220
        parts.append(f'<rect x="{x}" y="{legend_y - 9}" width="10" height="10" '
                     f'fill="{colour}"/><text x="{x + 14}" y="{legend_y}">{text}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _ticks(start: float, end: float) -> list[float]:
    span = end - start
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800) if span / s <= 12),
                3600)
    first = math.ceil(start / step) * step
    return [first + i * step for i in range(int((end - first) // step) + 1)]


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def render_report(history: History, result: Mapping[str, object], title: str) -> str:
    """The whole page. ``result`` is the run's result.json content."""
    verdict = str(result.get("verdict", "?"))
    colour = {"pass": "#2e7d32", "fail": "#c62828"}.get(verdict, "#b26a00")
    totals = [(key, result.get(key)) for key in (
        "ops", "ok_ops", "acked", "lost", "lost_on_node", "duplicates", "inconsistent_offsets",
        "gaps", "producer_reordering", "stale_reads", "aborted_reads", "unexpected",
        "envelope_mismatch",
        "recovered_unknowns", "divergent_sessions", "faults_injected", "elections",
        "deliveries", "lost_deliveries", "redelivered_after_complete", "delivery_order",
        "delivered_early",
        "zombie_settles_accepted", "concurrent_owners")]
    availability = result.get("availability")
    fault_rows: list[list[object]] = []
    success_rate = None
    if isinstance(availability, Mapping):
        success_rate = availability.get("success_rate")
        faults = availability.get("faults")
        for fault in faults if isinstance(faults, list) else []:
            if isinstance(fault, Mapping):
                fault_rows.append([fault.get("fault"), fault.get("target"), fault.get("start"),
                                   fault.get("end"), fault.get("unavailable_s"),
                                   fault.get("time_to_recover_s")])
    notes: list[list[object]] = []
    run = result.get("run")
    if isinstance(run, Mapping):
        for fault in run.get("faults", []) if isinstance(run.get("faults"), list) else []:
            if isinstance(fault, Mapping) and fault.get("notes"):
                notes.append([fault.get("fault"), fault.get("target"),
                              "; ".join(str(n) for n in fault.get("notes") or [])])
    reasons = result.get("reasons")
    reason_text = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else ""
    anomaly_rows = _anomaly_rows(result.get("sessions"))
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="verdict" style="color:{colour}">verdict: {html.escape(verdict)}'
        + (f" ({html.escape(reason_text)})" if reason_text else "") + "</p>",
        "<p>success rate: " + (f"{success_rate:.1%}" if isinstance(success_rate, float)
                               else "-") + "</p>",
        _table(["figure", "value"], totals),
        "<h2>Timeline</h2>",
        timeline_svg(history, history.faults),
        "<h2>Faults</h2>",
        _table(["fault", "target", "start (s)", "end (s)", "unavailable (s)",
                "recovered after heal (s)"], fault_rows),
    ]
    if notes:
        sections += ["<h3>Fault notes</h3>", _table(["fault", "target", "notes"], notes)]
    sections += _shard_sections(result.get("shards"))
    sections += ["<h2>Anomalies</h2>",
                 _table(["session", "kind", "example"], anomaly_rows) if anomaly_rows
                 else "<p>none</p>"]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}"
             "table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}"
             ".verdict{font-size:1.4em;font-weight:bold}")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{style}</style></head><body>\n"
            + "\n".join(sections) + "\n</body></html>\n")


def _anomaly_rows(sessions: object) -> list[list[object]]:
    rows: list[list[object]] = []
    if not isinstance(sessions, Mapping):
        return rows
    for name, report in sorted(sessions.items()):
        anomalies = report.get("anomalies") if isinstance(report, Mapping) else None
        if not isinstance(anomalies, Mapping):
            continue
        for kind, entries in sorted(anomalies.items()):
            for entry in (entries if isinstance(entries, list) else [])[:5]:
                rows.append([name, kind, entry])
    return rows


def _shard_sections(shards: object) -> list[str]:
    """A sharded run's table: per shard its sessions, acknowledged appends, anomalies and
    leader moves (nothing for a one-shard run)."""
    if not isinstance(shards, Mapping):
        return []
    checked = shards.get("checked")
    moves = shards.get("leader_moves")
    elections = shards.get("elections")
    rows: list[list[object]] = []
    for shard in range(int(shards.get("count") or 0)):
        key = str(shard)
        figures = checked.get(key) if isinstance(checked, Mapping) else None
        figures = figures if isinstance(figures, Mapping) else {}
        anomalies = figures.get("anomalies")
        total = (sum(count for kind, count in anomalies.items()
                     if kind != "recovered_unknowns" and isinstance(count, int))
                 if isinstance(anomalies, Mapping) else None)
        sessions = figures.get("sessions")
        rows.append([shard, ", ".join(str(name) for name in sessions)
                     if isinstance(sessions, list) else "-",
                     figures.get("acked"), total,
                     moves.get(key) if isinstance(moves, Mapping) else None,
                     elections.get(key) if isinstance(elections, Mapping) else None])
    return [f"<h2>Shards ({_cell(shards.get('count'))}; leader moves "
            f"{_cell(shards.get('leader_moves_total'))}; leaders at the end "
            f"{html.escape(str(shards.get('leaders_at_end')))})</h2>",
            _table(["shard", "sessions", "acked appends", "anomalies", "leader moves",
                    "elections"], rows)]
