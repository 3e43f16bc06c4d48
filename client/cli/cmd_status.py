"""``quorumlog status``: every node's role, term, leader and log indexes, the leader's view
of each follower's replication, and the membership.

Text: three tables — nodes (role, term, leader, commit / applied / last index, pid), then
``replication`` as the leader reports it (each follower's match index, lag in entries, state,
time since the leader last heard from it), then ``membership`` (voter or learner, peer and
client address). JSON: a list with one object per address, keys ``id, address, role, term,
leader, commit_index, applied_index, last_index, pid`` (plus ``reachable``, ``error``,
``advertised_address``, ``metrics_address`` (its ``--metrics-addr``, "" when it serves no
metrics), ``first_index``, ``snapshot_index``, ``members`` and — on the leader —
``followers``). ``address`` is the address dialed; an unreachable node has ``role``
"unreachable", null numbers and an ``error``. Exit code 0 when at least one node answered, 1
(with one line on stderr) when none did.

A sharded cluster (``shard_count`` above 1; with one shard nothing here changes, text or
JSON): the node table and ``replication`` describe the meta group, and two tables follow —
``shards`` (one row per data shard: leader, replicas with the preferred leader first, term,
commit index, lag, sessions) and ``leaders per node`` (host tag, shards led, shards it is the
preferred leader of). They are merged from every answering node's own view (each node is
asked once more, for its raw ``ClusterStatus``, since the SDK's ``NodeStatus`` carries no
shard table): a shard's row is its leader's view (the highest term wins when two say so);
with no leader answering, the replicas' (highest commit index; no lag). JSON adds to every
row ``shard_count``, ``host_tag``, ``shards`` (that node's own view, null when it did not
answer) and, identical on every row, ``shard_table`` (the merged rows) and ``shard_leaders``
(node -> shards it leads).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from quorumlog.client.cli import CliError
from quorumlog.client.cli import common as cli_common
from quorumlog.client.sdk import ClusterStatus, FollowerProgress, Member, NodeReport
from quorumlog.client.tls import ClientSecurity, sync_channel
from quorumlog.proto import quorumlog_pb2, quorumlog_pb2_grpc

COLUMNS = (
    "id", "address", "role", "term", "leader", "commit_index", "applied_index", "last_index",
    "pid",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli_common.add_common_arguments(parser)


def node_json(report: NodeReport) -> dict[str, Any]:
    status = report.status
    if status is None:
        error = report.error
        return {
            "id": None, "address": report.address, "role": "unreachable", "term": None,
            "leader": None, "commit_index": None, "applied_index": None, "last_index": None,
            "pid": None, "reachable": False,
            "error": f"{error.code}: {error.message}" if error else "no answer",
        }
    return {
        "id": status.id,
        "address": report.address,
        "role": status.role,
        "term": status.term,
        "leader": status.leader,
        "commit_index": status.commit_index,
        "applied_index": status.applied_index,
        "last_index": status.last_index,
        "pid": status.pid,
        "reachable": True,
        "error": None,
        "advertised_address": status.address,
        "metrics_address": status.metrics_address,
        "first_index": status.first_index,
        "snapshot_index": status.snapshot_index,
        "members": [member_json(member) for member in status.members],
        "followers": [follower_json(follower) for follower in status.followers],
    }


def member_json(member: Member) -> dict[str, Any]:
    return {
        "id": member.id, "role": "voter" if member.voter else "learner",
        "peer_address": member.peer_address, "client_address": member.client_address,
    }


def follower_json(follower: FollowerProgress) -> dict[str, Any]:
    return {
        "id": follower.id, "role": "learner" if follower.learner else "voter",
        "match_index": follower.match_index, "lag": follower.lag, "state": follower.state,
        "last_contact_ms": None if follower.last_contact_ms < 0 else follower.last_contact_ms,
    }


def _grid(header: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    cells = [list(header), *rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in cells]


def _contact(milliseconds: int | None) -> str:
    if milliseconds is None:
        return "never"
    return f"{milliseconds} ms ago" if milliseconds < 10_000 else f"{milliseconds // 1000} s ago"


def replication_table(rows: list[dict[str, Any]]) -> list[str]:
    """The leader's (highest term's) view of its followers; empty when no leader answered."""
    leaders = [row for row in rows if row["reachable"] and row["role"] == "leader"]
    if not leaders:
        return ["", "replication: no leader answered"]
    leader = max(leaders, key=lambda row: row["term"])
    lines = ["", f"replication (leader {leader['id']}, last index {leader['last_index']}):"]
    lines += _grid(
        ("FOLLOWER", "ROLE", "MATCH", "LAG", "STATE", "LAST CONTACT"),
        [
            [f["id"], f["role"], str(f["match_index"]), str(f["lag"]), f["state"],
             _contact(f["last_contact_ms"])]
            for f in leader["followers"]
        ],
    )
    lines += ["", "membership:"]
    lines += _grid(
        ("MEMBER", "ROLE", "PEER ADDRESS", "CLIENT ADDRESS"),
        [[m["id"], m["role"], m["peer_address"], m["client_address"] or "-"]
         for m in leader["members"]],
    )
    return lines


def table(rows: list[dict[str, Any]]) -> str:
    lines = _grid(
        tuple(c.upper() for c in COLUMNS),
        [["-" if row[c] is None or row[c] == "" else str(row[c]) for c in COLUMNS]
         for row in rows],
    )
    for row in rows:
        if not row["reachable"]:
            lines.append(f"{row['address']}: {row['error']}")
    return "\n".join(lines + replication_table(rows))


# -- shards ------------------------------------------------------------------------------------

SHARD_VIEW_TIMEOUT = 2.0  # the second, raw probe of a node that has just answered


def raw_status(address: str, security: ClientSecurity | None,
               timeout: float) -> quorumlog_pb2.NodeStatus | None:
    """Node ``address``'s ``ClusterStatus`` as sent (shard table included); None if no
    answer."""
    try:
        with sync_channel(address, security) as channel:
            stub = quorumlog_pb2_grpc.QuorumLogStub(channel)  # type: ignore[no-untyped-call]
            status: quorumlog_pb2.NodeStatus = stub.ClusterStatus(
                quorumlog_pb2.ClusterStatusRequest(), timeout=timeout)
            return status
    except grpc.RpcError:
        return None


def raw_statuses(addresses: Sequence[str], security: ClientSecurity | None,
                 timeout: float) -> list[quorumlog_pb2.NodeStatus | None]:
    """``raw_status`` of every address at once, in order."""
    if not addresses:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(addresses))) as pool:
        return list(pool.map(lambda address: raw_status(address, security, timeout),
                             addresses))


def shard_view_json(shard: quorumlog_pb2.ShardStatus) -> dict[str, Any]:
    """One shard as one node reports it."""
    return {
        "shard": shard.shard, "group": shard.group, "replicas": list(shard.replicas),
        "leader": shard.leader or None, "leader_address": shard.leader_address or None,
        "role": shard.role or None, "term": shard.term, "commit_index": shard.commit_index,
        "applied_index": shard.applied_index, "last_index": shard.last_index,
        "max_lag": shard.max_lag, "sessions": shard.sessions,
    }


def merge_shards(views: Sequence[quorumlog_pb2.NodeStatus]) -> list[dict[str, Any]]:
    """One row per data shard from every node's view: the leader's (highest term) if one
    answered, else its replicas' (highest commit index) with the leader they know of."""
    count = max((view.shard_count for view in views), default=0)
    rows = []
    for number in range(count):
        seen = [(view.id, shard) for view in views for shard in view.shards
                if shard.shard == number]
        leading = [(node, shard) for node, shard in seen if shard.role == "leader"]
        hosting = [(node, shard) for node, shard in seen if shard.role]
        if leading:
            node, best = max(leading, key=lambda pair: pair[1].term)
            leader: str | None = node
        else:
            known = Counter(shard.leader for _, shard in seen if shard.leader)
            leader = known.most_common(1)[0][0] if known else None
            candidates = hosting or seen
            best = max((shard for _, shard in candidates), key=lambda s: s.commit_index,
                       default=quorumlog_pb2.ShardStatus(shard=number))
        replicas = list(best.replicas)
        rows.append({
            "shard": number, "group": best.group, "leader": leader,
            "leader_address": best.leader_address or None, "replicas": replicas,
            "preferred_leader": replicas[0] if replicas else None,
            "term": best.term if hosting else None,
            "commit_index": best.commit_index if hosting else None,
            "lag": best.max_lag if leading else None,
            "sessions": best.sessions if hosting else None,
        })
    return rows


def shard_leaders(table: Sequence[dict[str, Any]],
                  nodes: Sequence[str]) -> dict[str, int]:
    """Node id -> shards it leads, every node of ``nodes`` and of any placement included."""
    ids = {*nodes, *(replica for row in table for replica in row["replicas"])}
    led = Counter(row["leader"] for row in table if row["leader"])
    return {node: led[node] for node in sorted(ids | set(led))}


def add_shards(rows: list[dict[str, Any]],
               views: Sequence[quorumlog_pb2.NodeStatus | None]) -> bool:
    """Add the shard keys to ``rows`` (one per view, in order) when the cluster has more than
    one shard; whether it does."""
    answered = [view for view in views if view is not None]
    if max((view.shard_count for view in answered), default=0) <= 1:
        return False
    table = merge_shards(answered)
    leaders = shard_leaders(table, [view.id for view in answered])
    for row, view in zip(rows, views, strict=True):
        row["shard_count"] = view.shard_count if view is not None else None
        row["host_tag"] = (view.host_tag or view.id) if view is not None else None
        row["shards"] = ([shard_view_json(shard) for shard in view.shards]
                         if view is not None else None)
        row["shard_table"] = table
        row["shard_leaders"] = leaders
    return True


def shard_tables(rows: list[dict[str, Any]]) -> list[str]:
    """The merged shard table and the leaders per node (rows carry ``add_shards``' keys)."""
    table, leaders = rows[0]["shard_table"], rows[0]["shard_leaders"]

    def cell(value: object) -> str:
        return "-" if value is None else str(value)

    lines = ["", f"shards ({len(table)}; a session's shard is crc32(name) mod {len(table)}):"]
    lines += _grid(
        ("SHARD", "LEADER", "REPLICAS", "TERM", "COMMIT", "LAG", "SESSIONS"),
        [[str(row["shard"]), cell(row["leader"]), ",".join(row["replicas"]) or "-",
          cell(row["term"]), cell(row["commit_index"]), cell(row["lag"]),
          cell(row["sessions"])] for row in table],
    )
    tags = {row["id"]: row["host_tag"] for row in rows if row["reachable"]}
    preferred = Counter(row["preferred_leader"] for row in table if row["preferred_leader"])
    lines += ["", "leaders per node:"]
    lines += _grid(
        ("NODE", "HOST TAG", "LEADS", "PREFERRED"),
        [[node, tags.get(node) or "-", str(count), str(preferred[node])]
         for node, count in leaders.items()],
    )
    return lines


def run(args: argparse.Namespace) -> int:
    with cli_common.connect(args) as client:
        status: ClusterStatus = client.cluster_status()
    if not status.reachable:
        first = status.nodes[0].error if status.nodes else None
        detail = f" (e.g. {first.address}: {first.message})" if first else ""
        raise CliError(
            f"no node of {cli_common.cluster_addresses(args)} answered within "
            f"{cli_common.deadline_of(args):g}s{detail}",
            cli_common.EXIT_FAILURE,
        )
    rows = [node_json(report) for report in status.nodes]
    views = raw_statuses(
        [report.address for report in status.nodes if report.reachable],
        cli_common.security_of(args), min(SHARD_VIEW_TIMEOUT, cli_common.deadline_of(args)))
    answered = iter(views)
    sharded = add_shards(rows, [next(answered) if report.reachable else None
                                for report in status.nodes])
    if args.json:
        cli_common.print_json(rows)
    else:
        cli_common.print_line(table(rows) + ("\n" + "\n".join(shard_tables(rows))
                                             if sharded else ""))
    return 0
