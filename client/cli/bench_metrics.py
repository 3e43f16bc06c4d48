"""``quorumlog bench``'s figures from the nodes' metrics: scraped before and after the
measured interval, turned into the write path's ratios.

Owns: scraping every node (``quorumlog.client.node_metrics``) and :func:`node_figures`:
entries per fsync and per AppendEntries message on the leader, entries per fsync on the
followers, the fraction of empty AppendEntries, commands per entry. Must never: fail a
benchmark because a node's metrics did not answer (its figures are then None).
"""

from __future__ import annotations

from quorumlog.client import node_metrics


def scrape(address: str, timeout: float = 2.0) -> dict[str, float] | None:
    """``/metrics`` of one node as {metric name: value summed over labels}, None if down.

    A counter's ``_total`` suffix is dropped: ``quorumlog_raft_fsyncs_total`` is read as
    ``quorumlog_raft_fsyncs``.
    """
    try:
        return node_metrics.totals(node_metrics.fetch(address, timeout))
    except (OSError, ValueError):  # URLError is an OSError
        return None


def scrape_all(addresses: list[str]) -> list[dict[str, float] | None]:
    return [scrape(address) for address in addresses]


def _delta(before: dict[str, float], after: dict[str, float], name: str) -> float | None:
    if name not in before or name not in after:
        return None
    return after[name] - before[name]


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return round(numerator / denominator, 3)


def node_figures(
    before: list[dict[str, float] | None], after: list[dict[str, float] | None]
) -> dict[str, float | None]:
    """Write-path figures over the run; the leader is the node reporting is_leader after it."""
    figures: dict[str, float | None] = {
        "entries_per_fsync": None,
        "entries_per_append_entries": None,
        "follower_entries_per_fsync": None,
        "empty_append_entries_fraction": None,
        "commands_per_entry": None,
    }
    pairs = [(b, a) for b, a in zip(before, after, strict=True) if b is not None and a is not None]
    leaders = [pair for pair in pairs if pair[1].get("quorumlog_raft_is_leader", 0.0) >= 1.0]
    if not leaders:
        return figures
    leader_before, leader_after = leaders[0]
    figures["entries_per_fsync"] = _ratio(
        _delta(leader_before, leader_after, "quorumlog_raft_entries_persisted"),
        _delta(leader_before, leader_after, "quorumlog_raft_fsyncs"),
    )
    app_messages = _delta(leader_before, leader_after, "quorumlog_raft_append_messages_sent")
    app_empty = _delta(leader_before, leader_after, "quorumlog_raft_append_empty_messages_sent")
    carrying = None if app_messages is None or app_empty is None else app_messages - app_empty
    figures["entries_per_append_entries"] = _ratio(
        _delta(leader_before, leader_after, "quorumlog_raft_append_entries_sent"), carrying
    )
    if app_messages is not None and app_empty is not None and app_messages > 0:
        figures["empty_append_entries_fraction"] = round(app_empty / app_messages, 3)
    figures["commands_per_entry"] = _ratio(
        _delta(leader_before, leader_after, "quorumlog_commands_proposed"),
        _delta(leader_before, leader_after, "quorumlog_raft_proposals"),
    )
    followers = [pair for pair in pairs if pair is not leaders[0]]
    entries = [_delta(b, a, "quorumlog_raft_entries_persisted") for b, a in followers]
    fsyncs = [_delta(b, a, "quorumlog_raft_fsyncs") for b, a in followers]
    if followers and None not in entries and None not in fsyncs:
        figures["follower_entries_per_fsync"] = _ratio(
            sum(e for e in entries if e is not None), sum(f for f in fsyncs if f is not None)
        )
    return figures
