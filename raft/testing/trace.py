"""Golden-trace interpreter: small scripts driving an in-memory cluster of Raft cores.

Owns: the trace script format (datadriven style, as in etcd raft's "interaction" tests), the
commands that drive a ``MemCluster`` step by step, and the deterministic text every command
prints (Ready batches, messages delivered or dropped, the core's log lines, logs and status).
Must never: read a clock, sleep, use threads, draw unseeded randomness, touch files or change
how the core behaves; every choice (who ticks, which message is delivered or dropped) is in
the script, so the same script always prints the same text.

Script format: each block is optional ``#`` comment lines, one command line, a ``----`` line
and the expected output (no blank lines inside; a command with no output prints ``ok``).
Blocks are separated by blank lines. ``run_script`` re-runs every command and returns the
script with the outputs it actually produced, so a test compares it with the checked-in text
and a regenerate flag simply writes it back.

Notation: ``T/I`` is term/index (an entry, the log position an append starts after, a
snapshot); ``1->2`` is message ``frm`` -> ``to`` as the message carries them (a forwarded
TRANSFER_LEADER keeps the transferee in ``frm``, as in etcd).

Commands (node ids are positive integers):

- ``add-nodes N [voters=1,2,3] [learners=4] [snapshot-threshold=K] [seed=S] [election-tick=E]
  [heartbeat-tick=H] [pre-vote=true|false] [check-quorum=true|false]
  [snapshot-chunk-bytes=B] [max-entries-per-msg=M] [max-inflight-msgs=W]
  [max-size-per-msg=S] [promote-max-lag=L]``: N new nodes bootstrapped from the snapshot at
  index 1 holding ``voters``/``learners`` (default: the new nodes are the voters). Options
  also become the defaults for ``add-empty-node``.
- ``add-empty-node ID [options]``: a machine with an empty disk that knows nothing.
- ``campaign ID``; ``propose ID DATA``; ``propose-conf-change ID add-learner|add-node|
  remove-node NID``; ``transfer-leader FROM TO``; ``read-index ID CTX``.
- ``tick ID [N]``; ``tick-election ID`` (ticks until the node's randomized election timer
  fires; on a leader, one election timeout, so CheckQuorum runs); ``tick-heartbeat ID``.
- ``process-ready ID...``: one Ready per node, handled in the contract's order (persist, send,
  apply, advance), printed.
- ``deliver-msgs [ID...] [drop=ID,...] [from=ID,...] [type=APP,...]``: deliver in-flight
  messages addressed to ``ID...`` (all when none given and no ``drop``), drop those addressed
  to a ``drop`` node; ``from``/``type`` narrow the selection. Others stay in flight.
- ``stabilize [ID...]``: process Readies and deliver messages among the given nodes (default:
  all) until nothing happens.
- ``partition A B | C`` (one group: it is cut from everyone else); ``cut FROM TO`` (one
  direction); ``heal``. Links are checked when a message is delivered.
- ``crash ID`` (everything not persisted is lost, messages to it vanish); ``restart ID``.
- ``compact ID INDEX``: snapshot the state machine at its applied index and discard the log
  through ``INDEX``.
- ``log ID``; ``status ID``; ``raft-state``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from quorumlog.raft import (
    NONE,
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    NodeId,
    RaftError,
    Ready,
    Snapshot,
    StateRole,
    bootstrap_snapshot,
)
from quorumlog.raft.errors import Compacted, SnapshotTemporarilyUnavailable, Unavailable
from quorumlog.raft.raft import CAMPAIGN_TRANSFER
from quorumlog.raft.testing.memcluster import MemCluster, MemNode, default_config

SEPARATOR = "----"
MAX_STABILIZE_ROUNDS = 1000

MT = MessageType


class TraceError(Exception):
    """The script itself is wrong (unknown command, bad argument, unknown node)."""


# -- formatting ------------------------------------------------------------------------------
def format_data(data: bytes) -> str:
    if all(32 <= byte < 127 and byte not in (34, 92) for byte in data):
        return f'"{data.decode("ascii")}"'
    return "0x" + data.hex()


def format_entry(entry: Entry) -> str:
    position = f"{entry.term}/{entry.index}"
    if entry.type == EntryType.CONF_CHANGE:
        change = ConfChange.decode(entry.data)
        kind = change.type.name.lower().replace("_", "-")
        return f"{position} conf:{kind} n{change.node_id}"
    return f"{position} {format_data(entry.data)}"


def format_entries(entries: list[Entry]) -> str:
    return ", ".join(format_entry(entry) for entry in entries)


def format_conf(conf: ConfState) -> str:
    voters = ",".join(str(node_id) for node_id in conf.voters)
    text = f"voters=[{voters}]"
    if conf.learners:
        text += " learners=[" + ",".join(str(node_id) for node_id in conf.learners) + "]"
    return text


def format_snapshot(snapshot: Snapshot) -> str:
    meta = snapshot.metadata
    return f"{meta.term}/{meta.index} {format_conf(meta.conf_state)} bytes={len(snapshot.data)}"


def format_message(m: Message) -> str:
    text = f"{m.frm}->{m.to} {m.type.name} term={m.term}"
    t = m.type
    if t == MT.APP:
        text += f" log={m.log_term}/{m.index} commit={m.commit}"
        if m.entries:
            text += f" entries=[{format_entries(m.entries)}]"
    elif t == MT.APP_RESP:
        if m.reject:
            text += f" reject index={m.index} hint={m.log_term}/{m.reject_hint}"
        else:
            text += f" index={m.index}"
    elif t in (MT.VOTE, MT.PRE_VOTE):
        text += f" log={m.log_term}/{m.index}"
        if m.context == CAMPAIGN_TRANSFER:
            text += " transfer"
    elif t in (MT.VOTE_RESP, MT.PRE_VOTE_RESP):
        if m.reject:
            text += " reject"
    elif t == MT.HEARTBEAT:
        text += f" commit={m.commit}"
    elif t == MT.SNAP:
        if m.snapshot is not None:
            meta = m.snapshot.metadata
            text += (
                f" snap={meta.term}/{meta.index} {format_conf(meta.conf_state)}"
                f" offset={m.snap_offset} bytes={len(m.snapshot.data)}"
            )
        if m.snap_done:
            text += " done"
    elif t == MT.SNAP_RESP:
        text += f" snap-index={m.index} offset={m.snap_offset}"
        if m.reject:
            text += " reject"
    elif t == MT.READ_INDEX_RESP:
        text += f" index={m.index}"
    if m.context and m.context != CAMPAIGN_TRANSFER:
        text += f" ctx={format_data(m.context)}"
    return text


def _role_name(role: StateRole) -> str:
    return str(role).replace("_", "-")


# -- the script format -------------------------------------------------------------------------
@dataclass
class Block:
    """One command of a script: the comment lines before it, the command, its output."""

    preamble: list[str]
    command: str
    expected: list[str]
    line_number: int


def parse_script(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    position = 0
    preamble: list[str] = []
    while position < len(lines):
        line = lines[position]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            preamble.append(line)
            position += 1
            continue
        command_line = position + 1
        if position + 1 >= len(lines) or lines[position + 1].strip() != SEPARATOR:
            raise TraceError(f"line {command_line}: command {stripped!r} lacks a {SEPARATOR} line")
        position += 2
        expected: list[str] = []
        while position < len(lines) and lines[position].strip():
            expected.append(lines[position])
            position += 1
        blocks.append(Block(preamble, stripped, expected, command_line))
        preamble = []
    if preamble:
        blocks.append(Block(preamble, "", [], len(lines)))
    return blocks


def render_script(blocks: list[Block], outputs: list[list[str]]) -> str:
    parts: list[str] = []
    for block, output in zip(blocks, outputs, strict=True):
        parts.extend(block.preamble)
        if block.command:
            parts.append(block.command)
            parts.append(SEPARATOR)
            parts.extend(output)
    while parts and not parts[-1].strip():
        parts.pop()
    return "\n".join(parts) + "\n"


def run_script(text: str) -> str:
    """Run every command of ``text``; return the script with the outputs actually produced."""
    blocks = parse_script(text)
    interpreter = Interpreter()
    outputs: list[list[str]] = []
    for block in blocks:
        if not block.command:
            outputs.append([])
            continue
        try:
            output = interpreter.run(block.command)
        except TraceError as error:
            raise TraceError(f"line {block.line_number}: {block.command}: {error}") from error
        outputs.append(output.splitlines())
    return render_script(blocks, outputs)


# -- arguments ---------------------------------------------------------------------------------
_INT_OPTIONS = {
    "election-tick": "election_tick",
    "heartbeat-tick": "heartbeat_tick",
    "snapshot-chunk-bytes": "snapshot_chunk_bytes",
    "max-entries-per-msg": "max_entries_per_msg",
    "max-inflight-msgs": "max_inflight_msgs",
    "max-size-per-msg": "max_size_per_msg",
    "promote-max-lag": "promote_max_lag",
}
_BOOL_OPTIONS = {"pre-vote": "pre_vote", "check-quorum": "check_quorum"}

_CONF_CHANGE_TYPES = {
    "add-learner": ConfChangeType.ADD_LEARNER,
    "add-node": ConfChangeType.ADD_NODE,
    "remove-node": ConfChangeType.REMOVE_NODE,
}


@dataclass
class Args:
    positional: list[str] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def parse(tokens: list[str]) -> Args:
        args = Args()
        for token in tokens:
            key, equals, value = token.partition("=")
            if equals:
                args.options[key] = value
            else:
                args.positional.append(token)
        return args

    def node(self, position: int) -> NodeId:
        if position >= len(self.positional):
            raise TraceError(f"missing node id (argument {position + 1})")
        return parse_int(self.positional[position])

    def ids(self, start: int = 0) -> list[NodeId]:
        return [parse_int(token) for token in self.positional[start:]]

    def id_list(self, key: str) -> list[NodeId]:
        value = self.options.get(key, "").strip("()[]")
        return [parse_int(part) for part in value.split(",") if part.strip()]

    def check_known(self, known: set[str]) -> None:
        unknown = set(self.options) - known
        if unknown:
            raise TraceError(f"unknown options {sorted(unknown)}")


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise TraceError(f"expected an integer, got {text!r}") from None


def parse_bool(text: str) -> bool:
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise TraceError(f"expected true or false, got {text!r}")


# -- the interpreter ---------------------------------------------------------------------------
class Interpreter:
    """Runs trace commands against one ``MemCluster``; ``run`` returns what a command printed."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._indent = 0
        self.seed = 0
        self.cluster = MemCluster((), seed=0, record=True, logger=self._log)
        self._defaults: dict[str, object] = {}
        self._overrides: dict[NodeId, dict[str, object]] = {}
        self._commands: dict[str, Callable[[Args], None]] = {
            "add-nodes": self._add_nodes,
            "add-empty-node": self._add_empty_node,
            "campaign": self._campaign,
            "propose": self._propose,
            "propose-conf-change": self._propose_conf_change,
            "transfer-leader": self._transfer_leader,
            "read-index": self._read_index,
            "tick": self._tick,
            "tick-election": self._tick_election,
            "tick-heartbeat": self._tick_heartbeat,
            "process-ready": self._process_ready_cmd,
            "deliver-msgs": self._deliver_msgs,
            "stabilize": self._stabilize,
            "partition": self._partition,
            "cut": self._cut,
            "heal": self._heal,
            "crash": self._crash,
            "restart": self._restart,
            "compact": self._compact,
            "log": self._print_log,
            "status": self._status,
            "raft-state": self._raft_state,
        }

    # -- output --------------------------------------------------------------------------------
    def _log(self, text: str) -> None:
        self._lines.append(" " * self._indent + text)

    def _print(self, text: str, indent: int = 0) -> None:
        self._lines.append(" " * (self._indent + indent) + text)

    def run(self, command_line: str) -> str:
        tokens = shlex.split(command_line)
        if not tokens:
            raise TraceError("empty command")
        handler = self._commands.get(tokens[0])
        if handler is None:
            raise TraceError(f"unknown command {tokens[0]!r}")
        self._lines = []
        self._indent = 0
        handler(Args.parse(tokens[1:]))
        lines = [line if line.strip() else "." for line in self._lines]
        return "\n".join(lines) if lines else "ok"

    # -- nodes ---------------------------------------------------------------------------------
    def _member(self, node_id: NodeId) -> MemNode:
        node = self.cluster.nodes.get(node_id)
        if node is None:
            raise TraceError(f"no node {node_id}")
        return node

    def _config(self, node_id: NodeId, applied: int) -> Config:
        generation = self.cluster.restarts.get(node_id, 0)
        overrides = dict(self._overrides.get(node_id, {}))
        overrides["logger"] = self._log
        return default_config(node_id, applied, self.seed * 7919 + generation, **overrides)

    def _parse_config_options(self, args: Args) -> dict[str, object]:
        overrides: dict[str, object] = dict(self._defaults)
        for key, value in args.options.items():
            if key in _INT_OPTIONS:
                overrides[_INT_OPTIONS[key]] = parse_int(value)
            elif key in _BOOL_OPTIONS:
                overrides[_BOOL_OPTIONS[key]] = parse_bool(value)
        return overrides

    def _start_node(
        self, node_id: NodeId, disk: MemoryStorage, overrides: dict[str, object]
    ) -> None:
        if node_id in self.cluster.nodes:
            raise TraceError(f"node {node_id} already exists")
        self._overrides[node_id] = overrides
        node = MemNode(node_id, disk, self._config, record=True)
        self.cluster.nodes[node_id] = node
        try:
            node.start()
        except (RaftError, ValueError) as error:
            del self.cluster.nodes[node_id]
            raise TraceError(f"cannot start n{node_id}: {error}") from error

    def _add_nodes(self, args: Args) -> None:
        args.check_known(
            {"voters", "learners", "snapshot-threshold", "seed"}
            | set(_INT_OPTIONS)
            | set(_BOOL_OPTIONS)
        )
        count = parse_int(args.positional[0]) if args.positional else 0
        if count <= 0:
            raise TraceError("add-nodes needs a positive count")
        first = max(self.cluster.nodes, default=0) + 1
        new_ids = list(range(first, first + count))
        voters = args.id_list("voters") or [i for i in new_ids if i not in args.id_list("learners")]
        learners = args.id_list("learners")
        if "seed" in args.options:
            self.seed = parse_int(args.options["seed"])
        if "snapshot-threshold" in args.options:
            self.cluster.snapshot_threshold = parse_int(args.options["snapshot-threshold"])
        overrides = self._parse_config_options(args)
        self._defaults = overrides
        snapshot = bootstrap_snapshot(tuple(sorted(voters)), tuple(sorted(learners)))
        for node_id in new_ids:
            disk = MemoryStorage()
            disk.apply_snapshot(snapshot)
            disk.set_hard_state(HardState(term=1, vote=NONE, commit=1))
            self._start_node(node_id, disk, dict(overrides))

    def _add_empty_node(self, args: Args) -> None:
        args.check_known(set(_INT_OPTIONS) | set(_BOOL_OPTIONS))
        node_id = args.node(0)
        self._start_node(node_id, MemoryStorage(ConfState()), self._parse_config_options(args))

    # -- inputs --------------------------------------------------------------------------------
    def _attempt(self, action: Callable[[], object]) -> None:
        try:
            action()
        except RaftError as error:
            self._print(f"error: {type(error).__name__}: {error}")

    def _raw_alive(self, node_id: NodeId) -> bool:
        if not self._member(node_id).alive:
            self._print(f"error: n{node_id} is down")
            return False
        return True

    def _campaign(self, args: Args) -> None:
        node_id = args.node(0)
        if self._raw_alive(node_id):
            self._attempt(self.cluster.node(node_id).campaign)

    def _propose(self, args: Args) -> None:
        node_id = args.node(0)
        if len(args.positional) < 2:
            raise TraceError("propose needs ID DATA")
        data = args.positional[1].encode()
        if self._raw_alive(node_id):
            self._attempt(lambda: self.cluster.node(node_id).propose(data))

    def _propose_conf_change(self, args: Args) -> None:
        node_id = args.node(0)
        if len(args.positional) < 3 or args.positional[1] not in _CONF_CHANGE_TYPES:
            raise TraceError("usage: propose-conf-change ID add-learner|add-node|remove-node NID")
        change = ConfChange(_CONF_CHANGE_TYPES[args.positional[1]], args.node(2))
        if self._raw_alive(node_id):
            self._attempt(lambda: self.cluster.node(node_id).propose_conf_change(change))

    def _transfer_leader(self, args: Args) -> None:
        node_id, transferee = args.node(0), args.node(1)
        if self._raw_alive(node_id):
            self._attempt(lambda: self.cluster.node(node_id).transfer_leader(transferee))

    def _read_index(self, args: Args) -> None:
        node_id = args.node(0)
        if len(args.positional) < 2:
            raise TraceError("read-index needs ID CTX")
        context = args.positional[1].encode()
        if self._raw_alive(node_id):
            self._attempt(lambda: self.cluster.node(node_id).read_index(context))

    def _tick_times(self, node_id: NodeId, times: int) -> None:
        raw = self.cluster.node(node_id)
        for _ in range(times):
            self._attempt(raw.tick)

    def _tick(self, args: Args) -> None:
        node_id = args.node(0)
        times = parse_int(args.positional[1]) if len(args.positional) > 1 else 1
        if self._raw_alive(node_id):
            self._tick_times(node_id, times)

    def _tick_election(self, args: Args) -> None:
        node_id = args.node(0)
        if not self._raw_alive(node_id):
            return
        raft = self.cluster.node(node_id).raft
        if raft.role == StateRole.LEADER:
            times = raft.election_timeout - raft.election_elapsed
        else:
            times = raft.randomized_election_timeout - raft.election_elapsed
        self._tick_times(node_id, max(times, 1))

    def _tick_heartbeat(self, args: Args) -> None:
        node_id = args.node(0)
        if not self._raw_alive(node_id):
            return
        raft = self.cluster.node(node_id).raft
        times = raft.heartbeat_timeout
        if raft.role == StateRole.LEADER:
            times -= raft.heartbeat_elapsed
        self._tick_times(node_id, max(times, 1))

    # -- Ready handling ------------------------------------------------------------------------
    def _process_ready_cmd(self, args: Args) -> None:
        ids = args.ids() or sorted(self.cluster.nodes)
        for node_id in ids:
            self._member(node_id)
            self._process_ready(node_id)

    def _process_ready(self, node_id: NodeId) -> bool:
        """Handle one Ready of ``node_id`` in the contract's order, printing it."""
        node = self.cluster.nodes[node_id]
        if not node.alive:
            return False
        raw = node.node()
        if not raw.has_ready():
            return False
        rd = raw.ready()
        self._print(f"> n{node_id} handling Ready" + (" [must-sync]" if rd.must_sync else ""))
        self._indent += 2
        self._print_ready(rd)
        node.persist(rd)
        self.cluster.network.in_flight.extend(rd.messages)
        self.cluster.network.in_flight.extend(rd.persisted_messages)
        node.apply(rd)
        raw.advance(rd)
        if node.maybe_compact(self.cluster.snapshot_threshold):
            self._print(f"compacted log: {format_snapshot(node.disk.snapshot())}")
        self._indent -= 2
        return True

    def _print_ready(self, rd: Ready) -> None:
        if rd.soft_state is not None:
            soft = rd.soft_state
            self._print(f"soft: {_role_name(soft.role)} leader={soft.leader_id}")
        if rd.hard_state is not None:
            hard = rd.hard_state
            self._print(f"hard: term={hard.term} vote={hard.vote} commit={hard.commit}")
        if rd.entries:
            self._print(f"entries: {format_entries(rd.entries)}")
        if rd.snapshot is not None:
            self._print(f"snapshot: {format_snapshot(rd.snapshot)}")
        if rd.committed_entries:
            self._print(f"committed: {format_entries(rd.committed_entries)}")
        for message in rd.messages:
            self._print(f"send: {format_message(message)}")
        for message in rd.persisted_messages:
            self._print(f"send after persist: {format_message(message)}")
        for read in rd.read_states:
            self._print(f"read-state: index={read.index} ctx={format_data(read.request_ctx)}")

    # -- the network ---------------------------------------------------------------------------
    def _deliver(self, message: Message) -> None:
        network = self.cluster.network
        target = self.cluster.nodes.get(message.to)
        if target is None or not target.alive:
            network.dropped += 1
            self._print(f"dropped: {format_message(message)} (n{message.to} is down)")
            return
        if not network.allows(message.frm, message.to):
            network.dropped += 1
            self._print(f"dropped: {format_message(message)} (link cut)")
            return
        network.delivered += 1
        self._print(format_message(message))
        self._indent += 2
        self._attempt(lambda: target.node().step(message))
        self._indent -= 2

    def _deliver_msgs(self, args: Args) -> None:
        args.check_known({"drop", "from", "type"})
        deliver_to = set(args.ids())
        drop_to = set(args.id_list("drop"))
        senders = set(args.id_list("from"))
        types: set[MessageType] = set()
        for name in args.options.get("type", "").strip("()[]").split(","):
            if name.strip():
                try:
                    types.add(MessageType[name.strip().upper()])
                except KeyError:
                    raise TraceError(f"unknown message type {name!r}") from None
        deliver_all = not deliver_to and not drop_to
        network = self.cluster.network
        kept: list[Message] = []
        chosen: list[tuple[Message, bool]] = []
        for message in network.in_flight:
            selected = (deliver_all or message.to in deliver_to or message.to in drop_to) and (
                (not senders or message.frm in senders) and (not types or message.type in types)
            )
            if selected:
                chosen.append((message, message.to in drop_to))
            else:
                kept.append(message)
        network.in_flight = kept
        for message, drop in chosen:
            if drop:
                network.dropped += 1
                self._print(f"dropped: {format_message(message)}")
            else:
                self._deliver(message)

    def _stabilize(self, args: Args) -> None:
        ids = args.ids() or sorted(self.cluster.nodes)
        for node_id in ids:
            self._member(node_id)
        for _ in range(MAX_STABILIZE_ROUNDS):
            busy = False
            for node_id in ids:
                while self._process_ready(node_id):
                    busy = True
            for node_id in ids:
                network = self.cluster.network
                mine = [m for m in network.in_flight if m.to == node_id]
                if not mine:
                    continue
                busy = True
                network.in_flight = [m for m in network.in_flight if m.to != node_id]
                self._print(f"> n{node_id} receiving messages")
                self._indent += 2
                for message in mine:
                    self._deliver(message)
                self._indent -= 2
            if not busy:
                return
        raise TraceError(f"did not stabilize within {MAX_STABILIZE_ROUNDS} rounds")

    def _partition(self, args: Args) -> None:
        groups: list[set[NodeId]] = [set()]
        for token in args.positional:
            for piece in token.replace("|", " | ").split():
                if piece == "|":
                    groups.append(set())
                else:
                    groups[-1].add(parse_int(piece))
        groups = [group for group in groups if group]
        if len(groups) == 1:
            groups.append(set(self.cluster.nodes) - groups[0])
        self.cluster.network.partition(groups)
        self._print("cut: " + " | ".join(" ".join(str(i) for i in sorted(g)) for g in groups))

    def _cut(self, args: Args) -> None:
        self.cluster.network.cut(args.node(0), args.node(1))

    def _heal(self, args: Args) -> None:
        self.cluster.network.heal()

    def _crash(self, args: Args) -> None:
        node_id = args.node(0)
        self._member(node_id)
        for message in self.cluster.network.in_flight:
            if message.to == node_id:
                self._print(f"dropped: {format_message(message)} (n{node_id} crashed)")
        self.cluster.crash(node_id)

    def _restart(self, args: Args) -> None:
        node_id = args.node(0)
        if self._member(node_id).alive:
            raise TraceError(f"n{node_id} is running; crash it first")
        self.cluster.restart(node_id)

    def _compact(self, args: Args) -> None:
        node_id, index = args.node(0), args.node(1)
        node = self._member(node_id)
        if not node.alive:
            raise TraceError(f"n{node_id} is down")
        raw = node.node()
        applied = node.sm.applied_index
        if index > applied:
            raise TraceError(f"n{node_id} applied only through {applied}")
        if applied > node.disk.snapshot().metadata.index:
            try:
                node.disk.create_snapshot(applied, raw.raft.conf_state(), node.sm.snapshot_data())
            except (SnapshotTemporarilyUnavailable, Unavailable) as error:
                raise TraceError(str(error)) from error
        try:
            node.disk.compact(index)
        except (Compacted, Unavailable) as error:
            raise TraceError(str(error)) from error
        snapshot = node.disk.snapshot()
        self._print(
            f"n{node_id} snapshot {format_snapshot(snapshot)}; "
            f"log starts at {node.disk.first_index()}"
        )

    # -- inspection ----------------------------------------------------------------------------
    def _print_log(self, args: Args) -> None:
        node_id = args.node(0)
        node = self._member(node_id)
        if not node.alive:
            disk = node.disk
            snapshot = disk.snapshot()
            hard = disk.hard_state
            self._print(
                f"n{node_id} (down) disk: snapshot={format_snapshot(snapshot)} "
                f"term={hard.term} vote={hard.vote} commit={hard.commit}"
            )
            last = disk.last_index()
            first = disk.first_index()
            entries = disk.entries(first, last + 1) if last >= first else []
            for entry in entries:
                self._print(format_entry(entry), 2)
            return
        log = node.node().raft.log
        snapshot = log.snapshot()
        machine = node.sm
        self._print(
            f"n{node_id} log: snapshot={snapshot.metadata.term}/{snapshot.metadata.index} "
            f"committed={log.committed} applied={log.applied} "
            f"state-machine={machine.count} entries digest {machine.digest.hex()[:8]}"
        )
        entries = log.all_entries()
        if not entries:
            self._print("(no entries)", 2)
        for entry in entries:
            unstable = " (unpersisted)" if entry.index >= log.unstable_offset else ""
            self._print(format_entry(entry) + unstable, 2)

    def _status(self, args: Args) -> None:
        node_id = args.node(0)
        node = self._member(node_id)
        if not node.alive:
            self._print(f"n{node_id}: down")
            return
        raw = node.node()
        status = raw.status()
        raft = raw.raft
        timeout = (
            raft.election_timeout
            if raft.role == StateRole.LEADER
            else raft.randomized_election_timeout
        )
        self._print(
            f"n{node_id}: {_role_name(status.role)} term={status.term} vote={status.vote} "
            f"leader={status.leader_id} commit={status.commit} applied={status.applied} "
            f"log={status.first_index}..{status.last_index} {format_conf(status.conf_state)} "
            f"timer={raft.election_elapsed}/{timeout}"
        )
        if status.lead_transferee != NONE:
            self._print(f"transferring to n{status.lead_transferee}", 2)
        for peer, progress in sorted(status.progress.items()):
            learner = " learner" if progress.is_learner else ""
            active = " active" if progress.recent_active else ""
            self._print(
                f"n{peer}: {progress.state} match={progress.match} next={progress.next}"
                f"{learner}{active}",
                2,
            )

    def _raft_state(self, args: Args) -> None:
        for node_id in sorted(self.cluster.nodes):
            node = self.cluster.nodes[node_id]
            if not node.alive:
                self._print(f"n{node_id}: down")
                continue
            raft = node.node().raft
            self._print(
                f"n{node_id}: {_role_name(raft.role)} term={raft.term} leader={raft.leader_id} "
                f"commit={raft.log.committed} applied={raft.log.applied}"
            )
