"""What each page of the console shows, read from the cluster through the SDK.

Owns: the overview's node and shard rows (from the feed's last poll), the sessions list
(prefix search, paging, sorting by name, size, last append or backlog), and a session's page
(its messages by offset, consumer groups, dead letters, state). Must never: change anything
in the cluster, or format HTML (the templates do).

Sorting by anything but the name needs every matching session in hand; the console reads at
most ``SORT_WINDOW`` of them (by name) and says so when there are more.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from quorumlog.client import errors
from quorumlog.client.async_client import AsyncClient
from quorumlog.client.consumer import ConsumerSessionStatus, DeadLetter, GroupStatus
from quorumlog.client.results import ClusterStatus, Record, SessionInfo

PAGE = 50  # sessions or messages per page
SORT_WINDOW = 2000
DEAD_LETTERS_SHOWN = 200
SORTS = ("name", "size", "last_append", "backlog")


@dataclass(frozen=True, slots=True)
class NodeRow:
    address: str
    reachable: bool
    id: str = ""
    role: str = ""
    term: int = 0
    leader: str = ""
    commit_index: int = 0
    applied_index: int = 0
    last_index: int = 0
    lag: int | None = None  # entries behind the leader, as the leader reports it
    leads: list[str] = field(default_factory=list)  # shards this node leads
    metrics_address: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class ShardRow:
    shard: int
    group: int
    leader: str
    replicas: list[str]
    term: int
    commit_index: int
    max_lag: int
    sessions: int


@dataclass(frozen=True, slots=True)
class Overview:
    nodes: list[NodeRow]
    shards: list[ShardRow]
    shard_count: int
    leader: str  # the meta group's (or the only group's) leader


def overview(status: ClusterStatus | None) -> Overview:
    if status is None:
        return Overview([], [], 0, "")
    lags: dict[str, int] = {}
    shards: dict[int, ShardRow] = {}
    leads: dict[str, list[str]] = {}
    for report in status.reachable:
        node = report.status
        assert node is not None
        if node.role == "leader":
            for follower in node.followers:
                lags[follower.id] = follower.lag
            lags.setdefault(node.id, 0)
        for shard in node.shards:
            if shard.role == "leader":
                leads.setdefault(node.id, []).append(str(shard.shard))
            known = shards.get(shard.shard)
            if known is None or (shard.role == "leader") or shard.term > known.term:
                shards[shard.shard] = ShardRow(
                    shard.shard, shard.group, shard.leader, shard.replicas, shard.term,
                    shard.commit_index, shard.max_lag, shard.sessions,
                )
    rows = []
    for report in status.nodes:
        node = report.status
        if node is None:
            rows.append(NodeRow(report.address, False,
                                error=str(report.error) if report.error else "no answer"))
            continue
        rows.append(NodeRow(
            report.address, True, node.id, node.role, node.term, node.leader,
            node.commit_index, node.applied_index, node.last_index, lags.get(node.id),
            leads.get(node.id, []), node.metrics_address,
        ))
    leader = status.leader
    shard_count = max((r.status.shard_count for r in status.reachable if r.status), default=0)
    return Overview(rows, [shards[key] for key in sorted(shards)], shard_count,
                    leader.status.id if leader and leader.status else "")


@dataclass(frozen=True, slots=True)
class SessionRow:
    info: SessionInfo
    consumer: ConsumerSessionStatus | None

    @property
    def backlog(self) -> int:
        return max((group.backlog for group in self.consumer.groups), default=0) \
            if self.consumer else 0

    @property
    def dead_letters(self) -> int:
        return self.consumer.dead_letters if self.consumer else 0

    @property
    def owners(self) -> list[GroupStatus]:
        return [group for group in self.consumer.groups if group.owner] \
            if self.consumer else []


@dataclass(frozen=True, slots=True)
class SessionsPage:
    rows: list[SessionRow]
    prefix: str
    sort: str
    page: int  # 0-based, for the sorted-by-value listings
    after: str  # the name listing's position
    next_after: str | None  # the name listing's next page; None: no more
    has_next: bool
    window_cut: bool  # more than SORT_WINDOW sessions matched: sorted among the first ones


async def _consumer_status(client: AsyncClient, session: str,
                           deadline: float) -> ConsumerSessionStatus | None:
    try:
        found = await client.consumer.sessions(session=session, deadline=deadline)
    except (errors.NotFound, errors.PermissionDenied):
        return None
    return found[0] if found else None


async def sessions_page(client: AsyncClient, *, prefix: str, sort: str, after: str,
                        page: int, deadline: float) -> SessionsPage:
    if sort not in SORTS:
        raise errors.InvalidArgument(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    if sort == "name":
        infos = await client.list_sessions(prefix, limit=PAGE + 1, start_after=after,
                                           deadline=deadline)
        has_next = len(infos) > PAGE
        infos = infos[:PAGE]
        statuses = await asyncio.gather(
            *(_consumer_status(client, info.session, deadline) for info in infos))
        rows = [SessionRow(info, status) for info, status in zip(infos, statuses, strict=True)]
        return SessionsPage(rows, prefix, sort, 0, after,
                            infos[-1].session if has_next and infos else None, has_next, False)
    infos = await client.list_sessions(prefix, limit=SORT_WINDOW + 1, deadline=deadline)
    cut = len(infos) > SORT_WINDOW
    infos = infos[:SORT_WINDOW]
    by_name: dict[str, ConsumerSessionStatus] = {}
    if sort == "backlog":
        for status in await client.consumer.sessions(prefix, deadline=deadline):
            by_name[status.session] = status
    rows = [SessionRow(info, by_name.get(info.session)) for info in infos]
    if sort == "size":
        rows.sort(key=lambda row: (-row.info.bytes, row.info.session))
    elif sort == "last_append":
        rows.sort(key=lambda row: (-row.info.last_append_ms, row.info.session))
    else:
        rows.sort(key=lambda row: (-row.backlog, -row.dead_letters, row.info.session))
    shown = rows[page * PAGE:(page + 1) * PAGE]
    if sort != "backlog":
        statuses = await asyncio.gather(
            *(_consumer_status(client, row.info.session, deadline) for row in shown))
        shown = [SessionRow(row.info, status) for row, status in zip(shown, statuses,
                                                                      strict=True)]
    return SessionsPage(shown, prefix, sort, page, "", None,
                        len(rows) > (page + 1) * PAGE, cut)


@dataclass(frozen=True, slots=True)
class SessionPage:
    info: SessionInfo
    records: list[Record]
    from_offset: int
    consumer: ConsumerSessionStatus | None
    dead_letters: list[DeadLetter]
    dead_letters_cut: bool
    state_version: int
    state: bytes
    now_ms: int
    #: the cluster refused the consumer side (groups, dead letters, state) to this user
    consumer_denied: bool = False

    @property
    def previous_from(self) -> int | None:
        if self.from_offset <= self.info.first_offset:
            return None
        return max(self.info.first_offset, self.from_offset - PAGE)

    @property
    def next_from(self) -> int | None:
        end = self.from_offset + len(self.records)
        return end if end < self.info.next_offset else None

    @property
    def last_from(self) -> int:
        return max(self.info.first_offset, self.info.next_offset - PAGE)


async def session_page(client: AsyncClient, session: str, *, from_offset: int | None,
                       deadline: float) -> SessionPage:
    """NotFound for an unknown session; a ``from_offset`` outside the retained range is
    moved to its nearest end."""
    info = await client.describe_session(session, deadline=deadline)
    last_page = max(info.first_offset, info.next_offset - PAGE)
    start = last_page if from_offset is None else min(max(from_offset, info.first_offset),
                                                      max(info.first_offset, info.next_offset))
    records: list[Record] = []
    if start < info.next_offset:
        try:
            result = await client.read(session, start, PAGE, deadline=deadline)
            records = result.records
        except errors.OutOfRange:  # trimmed meanwhile: show what is left
            info = await client.describe_session(session, deadline=deadline)
            start = info.first_offset
            records = (await client.read(session, start, PAGE, deadline=deadline)).records
    consumer, letters, state = await asyncio.gather(
        client.consumer.sessions(session=session, deadline=deadline),
        client.consumer.dead_letters(session, limit=DEAD_LETTERS_SHOWN + 1, deadline=deadline),
        client.consumer.get_state(session, deadline=deadline),
        return_exceptions=True,
    )
    denied = False
    for part in (consumer, letters, state):
        if isinstance(part, errors.PermissionDenied):
            denied = True  # the user may read the session but not its consumer side
        elif isinstance(part, BaseException):
            raise part
    statuses = [] if isinstance(consumer, BaseException) else consumer
    held = [] if isinstance(letters, BaseException) else letters
    version, data = (0, b"") if isinstance(state, BaseException) else (state.version,
                                                                        state.data)
    return SessionPage(info, records, start, statuses[0] if statuses else None,
                       held[:DEAD_LETTERS_SHOWN], len(held) > DEAD_LETTERS_SHOWN, version, data,
                       int(time.time() * 1000), denied)
