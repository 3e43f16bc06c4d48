"""A node's configuration: identity, addresses, peers, data directory, timing and limits.

Owns: the ``NodeConfig`` value, its validation, loading from a TOML file, and the mapping of
node names ("n1") to the integer ids the Raft core uses. Must never: open sockets or files
other than the TOML file it is asked to read.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from quorumlog.proto.sharding import MAX_SHARDS

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_SHORT = re.compile(r"^n([1-9][0-9]{0,17})$")


class ConfigError(ValueError):
    """The configuration is invalid; the message says which setting and why."""


def raft_id(name: str) -> int:
    """The Raft core's integer id for node ``name``: ``n7`` is 7, anything else a stable hash."""
    short = _SHORT.match(name)
    if short:
        return int(short.group(1))
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") & ((1 << 62) - 1)) | (1 << 62)


def valid_name(name: str) -> bool:
    """A node name: letters, digits, ``.``, ``_``, ``-``; at most 63 characters."""
    return bool(_NAME.match(name))


def parse_address(text: str, what: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what}: expected HOST:PORT, got {text!r}")
    return text


def parse_peers(text: str, flag: str = "--peers") -> dict[str, str]:
    """``n1=127.0.0.1:7101,n2=...`` -> {name: peer address}."""
    peers: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, address = item.partition("=")
        if not sep:
            raise ConfigError(f"{flag}: expected NAME=HOST:PORT, got {item!r}")
        if not _NAME.match(name):
            raise ConfigError(f"{flag}: invalid node name {name!r}")
        if name in peers:
            raise ConfigError(f"{flag}: node {name!r} listed twice")
        peers[name] = parse_address(address, f"{flag} {name}")
    return peers


@dataclass
class NodeConfig:
    name: str
    client_addr: str
    peer_addr: str
    peers: dict[str, str]
    data_dir: Path
    cluster_id: int = 1
    tick_ms: int = 50
    election_tick: int = 10
    heartbeat_tick: int = 1
    snapshot_every: int = 50_000
    snapshot_keep: int = 10_000
    snapshot_bytes: int = 64 << 20  # also snapshot after this many bytes of entries
    max_entry_bytes: int = 4 << 20
    metrics_addr: str | None = None
    log_level: str = "info"
    unsafe_ack_before_fsync: bool = False  # chaos canary only: never in production
    unsafe_no_fsync: bool = False  # power-loss canary only: WAL written, never fsynced
    # the incarnation rule's own test only: a wiped replica's votes count (FAST '18 loss)
    unsafe_no_incarnation_check: bool = False
    # Free space the node keeps on its data directory's disk: below it, writes are refused
    # with RESOURCE_EXHAUSTED (reads go on) until space returns (docs/durability.md).
    min_free_disk_mb: int = 64
    # Seconds between two scrubs (every stored key read back, checksums checked); one runs
    # at start whatever this says; 0: only that one.
    scrub_every_s: float = 6 * 3600
    seed: int | None = None
    # Start empty and wait to be added (``quorumlog cluster add-node``) instead of founding
    # a cluster; ``peers`` then lists members to contact first (may be empty).
    join: bool = False
    # Sharding (docs/architecture.md#sharding): data shards a founding member creates with
    # the cluster (ignored once the data directory holds a cluster: the count is fixed at
    # founding), and this node's host tag (no two replicas of a shard share one; "": the
    # node's name).
    init_shards: int = 1
    host_tag: str = ""
    # How THIS node dials the named members, whatever address the member records say (a
    # proxy, a NAT address). Local only: never replicated. The chaos run uses it to put a
    # proxy on every directed peer link.
    peer_routes: dict[str, str] = field(default_factory=dict)
    # Security (README "Security"): mutual TLS on both ports from this directory's CA and
    # node certificate; without it, plaintext, allowed on loopback addresses only unless
    # ``plaintext`` asks for it explicitly.
    tls_dir: Path | None = None
    plaintext: bool = False
    peer_allow: list[str] = field(default_factory=list)  # more node names the peer port takes
    token_key: Path | None = None  # verifies bearer tokens (HMAC secret or Ed25519 public key)
    rate_limit: float = 0.0  # requests/s per principal on this node; 0: unlimited
    audit_log: Path | None = None  # manage operations, one JSON line each (also on the log)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def id(self) -> int:
        return raft_id(self.name)

    def validate(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"--id: invalid node name {self.name!r}")
        parse_address(self.client_addr, "--client-addr")
        parse_address(self.peer_addr, "--peer-addr")
        if self.name not in self.peers and not self.join:
            raise ConfigError(f"--peers must include this node ({self.name})")
        if self.name in self.peers and self.peers[self.name] != self.peer_addr:
            raise ConfigError(
                f"--peers says {self.name} is at {self.peers[self.name]}, "
                f"but --peer-addr is {self.peer_addr}"
            )
        ids = [raft_id(name) for name in self.peers]
        if len(set(ids)) != len(ids):
            raise ConfigError("--peers: two node names map to the same id")
        if self.tick_ms <= 0 or self.election_tick <= self.heartbeat_tick:
            raise ConfigError("timing: need tick_ms > 0 and election_tick > heartbeat_tick")
        if self.snapshot_every <= 0 or not 0 <= self.snapshot_keep < self.snapshot_every:
            raise ConfigError("snapshots: need snapshot_every > snapshot_keep >= 0")
        if self.scrub_every_s < 0:
            raise ConfigError("--scrub-every-s must be 0 or more")
        if self.min_free_disk_mb < 0:
            raise ConfigError("--min-free-disk-mb must be 0 or more")
        if self.snapshot_bytes <= 0:
            raise ConfigError("snapshots: need snapshot_bytes > 0")
        if not 1 <= self.init_shards <= MAX_SHARDS:
            raise ConfigError(f"--init-shards must be 1 to {MAX_SHARDS}, not {self.init_shards}")
        if self.host_tag and not _NAME.match(self.host_tag):
            raise ConfigError(f"--host-tag: invalid tag {self.host_tag!r} (letters, digits, "
                              "'-', '_', '.')")
        self._validate_security()

    def _validate_security(self) -> None:
        from quorumlog.node.common.tls import is_loopback  # noqa: PLC0415 -- grpc only when needed

        if self.rate_limit < 0:
            raise ConfigError("--rate-limit must be >= 0 requests/s")
        if self.tls_dir is not None or self.plaintext:
            return
        for flag, address in (("--client-addr", self.client_addr), ("--peer-addr", self.peer_addr)):
            if not is_loopback(address):
                raise ConfigError(
                    f"{flag} {address} is not a loopback address: give --tls-dir DIR for "
                    "mutual TLS, or --plaintext to serve it unencrypted on purpose"
                )


_TOML_KEYS = {
    "id": "name",
    "client_addr": "client_addr",
    "peer_addr": "peer_addr",
    "data_dir": "data_dir",
    "cluster_id": "cluster_id",
    "tick_ms": "tick_ms",
    "election_tick": "election_tick",
    "heartbeat_tick": "heartbeat_tick",
    "snapshot_every": "snapshot_every",
    "snapshot_keep": "snapshot_keep",
    "snapshot_bytes": "snapshot_bytes",
    "metrics_addr": "metrics_addr",
    "log_level": "log_level",
    "join": "join",
    "init_shards": "init_shards",
    "host_tag": "host_tag",
    "tls_dir": "tls_dir",
    "plaintext": "plaintext",
    "token_key": "token_key",
    "rate_limit": "rate_limit",
    "audit_log": "audit_log",
}
_TOML_PATHS = {"data_dir", "tls_dir", "token_key", "audit_log"}


def load_toml(path: Path) -> dict[str, object]:
    """Read a node TOML file into keyword arguments for ``NodeConfig``."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"--config: cannot read {path}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"--config: {path} is not valid TOML: {error}") from error
    values: dict[str, object] = {}
    for key, value in raw.items():
        if key == "peer_allow" and isinstance(value, list | str):
            names = value.split(",") if isinstance(value, str) else value
            values["peer_allow"] = [str(name).strip() for name in names if str(name).strip()]
        elif key == "peer_routes" and isinstance(value, str):
            values["peer_routes"] = parse_peers(value, "peer_routes")
        elif key == "peers":
            if isinstance(value, str):
                values["peers"] = parse_peers(value)
            elif isinstance(value, dict):
                values["peers"] = {str(k): parse_address(str(v), f"peers.{k}") for k, v in
                                   value.items()}
            else:
                raise ConfigError("--config: peers must be a table or a NAME=ADDR,... string")
        elif key in _TOML_KEYS:
            values[_TOML_KEYS[key]] = Path(str(value)) if key in _TOML_PATHS else value
        else:
            raise ConfigError(f"--config: unknown setting {key!r}")
    return values
