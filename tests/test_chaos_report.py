"""The chaos run's HTML report on hand-made histories: self-contained, correct figures."""

from __future__ import annotations

import re
from pathlib import Path

from quorumlog.chaos.run.checker import CheckConfig, check
from quorumlog.chaos.run.history import History, HistoryWriter, read_history
from quorumlog.chaos.run.report import render_report, timeline, timeline_svg


def _history(path: Path, fault: str = "isolate_leader") -> History:
    """Producer 1 appends every 0.1 s for 10 s; one fault from 4 s to 6 s with no ok inside;
    one read, one failed append."""
    with HistoryWriter(path) as writer:
        offset = 0
        written: list[tuple[int, str]] = []
        for step in range(100):
            start = step * 0.1
            if 4.0 <= start < 6.0:
                continue
            writer.invoke(1, "append", start, session="s", values=[f"v{step}"],
                          producer="p1", sequence=step)
            writer.complete("ok", 1, "append", start + 0.02, offsets=[offset])
            written.append((offset, f"v{step}"))
            offset += 1
        writer.fault(fault, "start", 4.0, target="n1")
        writer.invoke(2, "append", 4.5, session="s", values=["x"], producer="p2",
                      sequence=0)
        writer.complete("fail", 2, "append", 4.6, error="refused")
        writer.fault(fault, "end", 6.0, target="n1")
        writer.invoke(3, "read", 9.95, session="s", from_offset=0)
        writer.complete("ok", 3, "read", 9.99, records=[[0, "v0"]], end_offset=offset)
        for node in ("n1", "n2"):
            writer.final(node, "s", 10.0, records=written, leader=node == "n1")
    return read_history(path)


def test_timeline_buckets_count_completions_and_latency(tmp_path: Path) -> None:
    history = _history(tmp_path / "h.jsonl")
    buckets = timeline(history, bucket_seconds=1.0)
    assert len(buckets) == 10
    assert [bucket.ok for bucket in buckets[:4]] == [10, 10, 10, 10]
    assert buckets[4].ok == 0 and buckets[5].ok == 0
    assert buckets[4].failed == 1
    assert buckets[0].latency_p50_ms is not None
    assert abs(buckets[0].latency_p50_ms - 20.0) < 0.5
    assert buckets[4].latency_p50_ms is None


def test_svg_shades_each_fault_window(tmp_path: Path) -> None:
    history = _history(tmp_path / "h.jsonl")
    svg = timeline_svg(history, history.faults)
    shaded = re.findall(r'<rect x="([\d.]+)" y="\d+" width="([\d.]+)"[^>]*opacity', svg)
    assert len(shaded) == 1
    x, width = (float(value) for value in shaded[0])
    # 4 s .. 6 s of a 0 .. 10 s history over a 920 px plot starting at x=60
    assert abs(x - (60 + 4 / 10 * 920)) < 1.0
    assert abs(width - 2 / 10 * 920) < 1.0
    assert "isolate_leader n1" in svg


def test_report_is_self_contained_and_shows_the_verdict(tmp_path: Path) -> None:
    history = _history(tmp_path / "h.jsonl")
    result = check(history, CheckConfig(min_throughput=0.0, min_acked=0)).to_json()
    result["elections"] = 2
    page = render_report(history, result, "chaos <run>")
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page and "</svg>" in page
    assert "verdict: pass" in page
    assert "chaos &lt;run&gt;" in page
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    urls = set(re.findall(r"https?://[^\"' <]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls
    # per-fault availability: the fault's 2 s without an ok completion
    assert re.search(r"<td>isolate_leader</td><td>n1</td><td>4.00</td><td>6.00</td>"
                     r"<td>2.0\d</td>", page), page


def test_report_escapes_names_and_lists_anomalies(tmp_path: Path) -> None:
    history = _history(tmp_path / "h.jsonl", fault="<b>x</b>")
    result = check(history, CheckConfig(min_throughput=0.0, min_acked=0)).to_json()
    result["verdict"] = "fail"
    result["sessions"] = {"s": {"anomalies": {"lost": [{"value": "v<1>", "offset": 3}]}}}
    page = render_report(history, result, "t")
    assert "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "v&lt;1&gt;" in page
    assert "verdict: fail" in page


def test_report_of_an_empty_history(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    history = read_history(path)
    result = check(history).to_json()
    page = render_report(history, result, "empty")
    assert "verdict: inconclusive" in page
    assert "<svg" in page
