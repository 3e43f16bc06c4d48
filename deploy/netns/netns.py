#!/usr/bin/env python3
"""Hosts as Linux network namespaces, each running one quorumlog node as systemd would.

A test bed for a multi-host deployment on one machine (root and ``ip netns`` required):

* a switch namespace ``<prefix>-sw`` holding a bridge; every host namespace ``<prefix>-hN`` is
  joined to it by a veth pair (``eth0`` inside the host) and has its own address
  ``<subnet>.<10+N>/24``; a client namespace ``<prefix>-c`` (``<subnet>.2``) is where
  operators' commands run. Nothing is added to the root namespace's network.
* host names: ``/etc/netns/<ns>/hosts`` (which ``ip netns exec`` mounts over ``/etc/hosts``)
  names every host ``nN.quorumlog.internal``, so nodes find each other by name, as in
  ``deploy/systemd/n1.toml``.
* a node is started exactly as ``deploy/systemd/quorumlog@.service`` starts it: the unit's
  ``ExecStart`` with ``%i`` = the node name, its ``EnvironmentFile`` read with systemd's
  ``KEY=VALUE`` rules and ``$QUORUMLOG_NODE_FLAGS`` split into words; the node's TOML is
  ``n1.toml`` with the name, the data directory and (for a node that joins) ``join = true``
  changed. The only substitutions are paths: the unit's ``/etc/quorumlog`` and
  ``/opt/quorumlog/bin/quorumlog`` point at a config directory and this Python's
  ``quorumlog``; the node runs as the invoking user (the unit's ``User=`` is not applied).

Usage (also importable: ``Testbed``)::

    netns.py up   --prefix qlt --hosts 3 --config-dir /tmp/qlt   # namespaces + configs
    netns.py start --prefix qlt --config-dir /tmp/qlt n1           # runs in the foreground
    netns.py link --prefix qlt n2 down|up
    netns.py down --prefix qlt                                     # removes everything

Owns: creating and deleting the namespaces, links, addresses, hosts files and node configs
of one prefix. Must never: touch a namespace, link or /etc/netns entry of another prefix,
or leave any behind after ``down`` (which deletes by prefix, whatever state it finds).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
UNIT = ROOT / "deploy" / "systemd" / "quorumlog@.service"
TEMPLATE_TOML = ROOT / "deploy" / "systemd" / "n1.toml"
TEMPLATE_ENV = ROOT / "deploy" / "systemd" / "n1.env"
UNIT_ETC = "/etc/quorumlog"
UNIT_BINARY = "/opt/quorumlog/bin/quorumlog"
DOMAIN = "quorumlog.internal"
NETNS_ETC = Path("/etc/netns")


def run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def available() -> str | None:
    """None when this machine can run the test bed, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, check=False)
    return None if probe.returncode == 0 else "ip netns does not work here"


# -- systemd semantics -------------------------------------------------------------------------
def read_environment_file(path: Path) -> dict[str, str]:
    """systemd ``EnvironmentFile=``: ``KEY=VALUE`` lines, ``#``/``;`` comments, optional
    quotes around the whole value."""
    values: dict[str, str] = {}
    for raw_line in path.read_text().splitlines():
        line = raw_line.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def unit_exec_start(instance: str, environment: dict[str, str], etc_dir: Path) -> list[str]:
    """The unit's ``ExecStart`` for ``instance`` as systemd expands it: ``%i``, ``${VAR}``
    as one word, ``$VAR`` split on whitespace; paths mapped to this test bed."""
    line = next(
        text.partition("=")[2]
        for text in UNIT.read_text().splitlines()
        if text.startswith("ExecStart=")
    )
    words: list[str] = []
    for word in shlex.split(line.replace("%i", instance)):
        bare = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if bare:
            words.extend(environment.get(bare.group(1), "").split())
            continue
        expanded = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                          lambda m: environment.get(m.group(1), ""), word)
        words.append(expanded.replace(UNIT_ETC, str(etc_dir)))
    if words[0] != UNIT_BINARY:
        raise RuntimeError(f"unexpected ExecStart binary {words[0]!r}")
    words[0] = str(Path(sys.executable).with_name("quorumlog"))
    return words


# -- the test bed -----------------------------------------------------------------------------
@dataclass
class Testbed:
    prefix: str
    config_dir: Path
    subnet: str = "10.77.0"
    hosts: list[str] = field(default_factory=list)  # node names with a host namespace

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    @property
    def client(self) -> str:
        return f"{self.prefix}-c"

    def namespace(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def address(self, name: str) -> str:
        return f"{self.subnet}.{10 + int(name.lstrip('n'))}"

    @staticmethod
    def host_name(name: str) -> str:
        return f"{name}.{DOMAIN}"

    # -- network ----------------------------------------------------------------------
    def up(self, names: list[str], planned: list[str]) -> None:
        """Switch, client namespace and one host per name; hosts files name ``planned``
        (hosts that may be added later too)."""
        self._namespace(self.switch)
        run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.switch, "link", "set", "br0", "up")
        self._attach(self.client, "c", f"{self.subnet}.2")
        for name in names:
            self.add_host(name, planned)
        self._write_hosts(self.client, planned)

    def add_host(self, name: str, planned: list[str]) -> None:
        namespace = self.namespace(name)
        self._attach(namespace, name, self.address(name))
        self._write_hosts(namespace, planned)
        self.hosts.append(name)

    def _namespace(self, namespace: str) -> None:
        run("ip", "netns", "add", namespace)
        run("ip", "-n", namespace, "link", "set", "lo", "up")

    def _attach(self, namespace: str, tag: str, address: str) -> None:
        self._namespace(namespace)
        outside = f"{self.prefix}{tag}"[:15]  # the switch end, named by prefix and host
        run("ip", "link", "add", "eth0", "netns", namespace, "type", "veth",
            "peer", "name", outside, "netns", self.switch)
        run("ip", "-n", self.switch, "link", "set", outside, "master", "br0")
        run("ip", "-n", self.switch, "link", "set", outside, "up")
        run("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        run("ip", "-n", namespace, "link", "set", "eth0", "up")

    def _write_hosts(self, namespace: str, planned: list[str]) -> None:
        directory = NETNS_ETC / namespace
        directory.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost"]
        lines += [f"{self.address(n)} {self.host_name(n)} {n}" for n in planned]
        (directory / "hosts").write_text("\n".join(lines) + "\n")

    def link(self, name: str, state: str) -> None:
        """Take a host's only link down or bring it back (``state``: down / up)."""
        run("ip", "-n", self.namespace(name), "link", "set", "eth0", state)

    def down(self) -> list[str]:
        """Delete every namespace and /etc/netns entry of this prefix; returns their names."""
        removed = []
        for line in run("ip", "netns", "list").splitlines():
            namespace = line.split()[0] if line.split() else ""
            if namespace.startswith(f"{self.prefix}-"):
                subprocess.run(["ip", "netns", "delete", namespace], check=False)
                removed.append(namespace)
        if NETNS_ETC.is_dir():
            for entry in NETNS_ETC.iterdir():
                if entry.name.startswith(f"{self.prefix}-"):
                    shutil.rmtree(entry, ignore_errors=True)
            if not any(NETNS_ETC.iterdir()):
                NETNS_ETC.rmdir()  # only ever removed empty
        return removed

    def leftovers(self) -> list[str]:
        names = [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line]
        names = [n for n in names if n.startswith(f"{self.prefix}-")]
        if NETNS_ETC.is_dir():
            names += [str(e) for e in NETNS_ETC.iterdir() if e.name.startswith(f"{self.prefix}-")]
        return names

    # -- nodes ------------------------------------------------------------------------
    def write_node_config(self, name: str, peers: list[str], join: bool = False) -> None:
        """``<name>.toml`` and ``<name>.env`` from the systemd examples, for this host."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        text = TEMPLATE_TOML.read_text()
        text = re.sub(r"^\[peers\][\s\S]*", "", text, flags=re.MULTILINE)
        text = text.replace("n1", name).replace(
            f'"/var/lib/quorumlog/{name}"', f'"{self.config_dir / "data" / name}"'
        )
        text = re.sub(r'^metrics_addr = .*\n', "", text, flags=re.MULTILINE)
        if join:
            text += "join = true\n"
        text += "\n[peers]\n" + "".join(
            f'{peer} = "{self.host_name(peer)}:7101"\n' for peer in peers
        )
        (self.config_dir / f"{name}.toml").write_text(text)
        env = TEMPLATE_ENV.read_text().replace("n1", name)
        (self.config_dir / f"{name}.env").write_text(env)

    def exec_prefix(self, name: str) -> list[str]:
        """What runs a command on host ``name``: ``ip netns exec <host>``."""
        return ["ip", "netns", "exec", self.namespace(name)]

    def unit_command(self, name: str) -> list[str]:
        """The unit's ``ExecStart`` for node ``name`` (run it behind ``exec_prefix``)."""
        environment = read_environment_file(self.config_dir / f"{name}.env")
        return unit_exec_start(name, environment, self.config_dir)

    def unit_environment(self, name: str) -> dict[str, str]:
        """The unit's environment (its ``EnvironmentFile``, plus ``PATH``) and nothing else."""
        environment = read_environment_file(self.config_dir / f"{name}.env")
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environment}

    def node_command(self, name: str) -> tuple[list[str], dict[str, str]]:
        """``ip netns exec <host> <ExecStart>`` and the unit's environment. (The tests start
        nodes from these pieces with the local-cluster launcher,
        ``quorumlog.node.process.launcher``; this script itself needs no quorumlog.)"""
        return [*self.exec_prefix(name), *self.unit_command(name)], self.unit_environment(name)

    def client_command(self, *argv: str) -> list[str]:
        """A ``quorumlog`` command run from the client namespace."""
        binary = str(Path(sys.executable).with_name("quorumlog"))
        return ["ip", "netns", "exec", self.client, binary, *argv]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netns.py", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["up", "start", "link", "down"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--prefix", default="qlt")
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--config-dir", type=Path, default=Path("/tmp/quorumlog-netns"))
    args = parser.parse_args(argv)
    reason = available()
    if reason:
        print(f"netns.py: {reason}", file=sys.stderr)
        return 2
    bed = Testbed(args.prefix, args.config_dir)
    names = [f"n{i}" for i in range(1, args.hosts + 1)]
    if args.action == "up":
        bed.up(names, names)
        for name in names:
            bed.write_node_config(name, names)
        print(f"hosts {', '.join(f'{n}={bed.address(n)}' for n in names)}; "
              f"client namespace {bed.client}; configs in {args.config_dir}")
    elif args.action == "start":
        command, env = bed.node_command(args.args[0])
        os.execvpe(command[0], command, env)
    elif args.action == "link":
        bed.link(args.args[0], args.args[1])
    else:
        print(f"removed {', '.join(bed.down()) or 'nothing'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
