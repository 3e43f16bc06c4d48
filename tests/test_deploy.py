"""The deployment files in ``deploy/`` agree with the node they deploy.

Every manifest is parsed (YAML, TOML, the Dockerfile, the systemd unit and env file) and every
node command in them is run through the real ``quorumlog node`` argument parser and
``NodeConfig.validate``, as each replica would see it: Kubernetes ``$(VAR)`` references are
expanded per pod, systemd ``%i`` and ``$VAR`` per instance. Then ports, probe ports, Service
ports and targetPorts, host names, labels and users are cross-checked. No network, no docker,
no kubectl.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from quorumlog.client import cli
from quorumlog.client.cli import cmd_node as cli_node
from quorumlog.node.common.config import NodeConfig, load_toml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
NAMESPACE = "qlog-test"  # any namespace: the manifests must not hard-code one


# --- helpers -----------------------------------------------------------------------------


def node_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quorumlog node")
    cli_node.add_arguments(parser)
    return parser


def node_flags() -> set[str]:
    """Every option string ``quorumlog node --help`` accepts."""
    return {option for action in node_parser()._actions for option in action.option_strings}


def parse_node(argv: list[str], where: str, toml_dir: Path | None = None) -> NodeConfig:
    """``argv`` is ``["node", flags...]``; returns the validated config the node would run."""
    assert argv and argv[0] == "node", f"{where}: expected a `node` command, got {argv!r}"
    flags = node_flags()
    for token in argv[1:]:
        if token.startswith("-"):
            flag = token.split("=", 1)[0]
            assert flag in flags, f"{where}: {flag} is not a `quorumlog node` flag"
    args = node_parser().parse_args(argv[1:])
    if args.config is not None:
        assert toml_dir is not None, f"{where}: unexpected --config"
        args.config = toml_dir / args.config.name
    config = cli_node.config_from_args(args)
    config.validate()
    return config


def parse_cli(argv: list[str], where: str) -> argparse.Namespace:
    """Parse a non-node ``quorumlog`` command line with the real dispatcher's parser."""
    assert argv and argv[0] in cli.SUBCOMMANDS, f"{where}: unknown subcommand in {argv!r}"
    return cli.build_parser(argv[0]).parse_args(argv)


def host_of(address: str) -> str:
    return address.rpartition(":")[0]


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


# --- every manifest parses ---------------------------------------------------------------


YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def test_deploy_folder_has_every_deliverable() -> None:
    expected = [
        "Dockerfile", "compose.yaml", "README.md",
        "kubernetes/statefulset.yaml", "kubernetes/services.yaml", "kubernetes/pdb.yaml",
        "systemd/quorumlog@.service", "systemd/n1.env", "systemd/n1.toml",
        "grafana/quorumlog.json", "netns/netns.py",
    ]
    missing = [name for name in expected if not (DEPLOY / name).is_file()]
    assert not missing, f"missing in deploy/: {missing}"


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_manifest_parses(path: Path) -> None:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert documents, f"{path}: empty"
    for document in documents:
        assert isinstance(document, dict), f"{path}: a document is not a mapping"
        if path.parent == KUBERNETES:
            assert {"apiVersion", "kind"} <= document.keys(), f"{path}: no apiVersion/kind"
            if document["kind"] != "Kustomization":
                assert document["metadata"]["name"], f"{path}: unnamed {document['kind']}"
                assert "namespace" not in document["metadata"], (
                    f"{path}: {document['kind']} hard-codes a namespace"
                )


# --- Dockerfile ----------------------------------------------------------------------------


@dataclass
class Dockerfile:
    instructions: list[tuple[str, str]]  # (INSTRUCTION, arguments), continuations joined

    @classmethod
    def load(cls) -> Dockerfile:
        text = (DEPLOY / "Dockerfile").read_text()
        logical: list[str] = []
        current = ""
        for raw in text.splitlines():
            line = raw.strip()
            if not current and (not line or line.startswith("#")):
                continue
            if line.startswith("#"):
                continue  # a comment inside a continued instruction
            if line.endswith("\\"):
                current += line[:-1] + " "
                continue
            logical.append(current + line)
            current = ""
        assert not current, "Dockerfile ends inside a continued line"
        pairs = []
        for line in logical:
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
        return cls(pairs)

    def all(self, keyword: str) -> list[str]:
        return [rest for key, rest in self.instructions if key == keyword]

    def final_stage(self) -> list[tuple[str, str]]:
        starts = [i for i, (key, _) in enumerate(self.instructions) if key == "FROM"]
        return self.instructions[starts[-1]:]

    def final(self, keyword: str) -> list[str]:
        return [rest for key, rest in self.final_stage() if key == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for rest in self.final("ENV"):
            for item in shlex.split(rest):
                key, sep, value = item.partition("=")
                assert sep, f"ENV {rest!r}: use KEY=VALUE"
                values[key] = value
        return values


def exec_form(text: str) -> list[str]:
    value = yaml.safe_load(text)  # a JSON array is valid YAML
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), (
        f"expected exec form [\"...\"], got {text!r}"
    )
    return value


def test_dockerfile_builds_from_python_311_slim_and_installs_the_repo() -> None:
    docker = Dockerfile.load()
    args = {key: value for key, _, value in (a.partition("=") for a in docker.all("ARG"))}
    bases = [base.split()[0] for base in docker.all("FROM")]
    resolved = [args.get(base[2:-1], base) if base.startswith("${") else base for base in bases]
    assert resolved[-1] == "python:3.11-slim", resolved
    copied = {shlex.split(rest)[0].rstrip("/") for rest in docker.all("COPY")
              if not rest.startswith("--from")}
    package_dirs = set(re.findall(r'^"quorumlog\.\w+" = "(\w+)"$',
                                  (ROOT / "pyproject.toml").read_text(), re.MULTILINE))
    assert package_dirs, "no package-dir mapping found in pyproject.toml"
    missing = package_dirs - copied
    assert not missing, f"Dockerfile does not COPY package folders {missing}"
    assert "pyproject.toml" in copied
    assert any("pip install" in rest and re.search(r"\s\.(\s|$)", rest)
               for rest in docker.all("RUN")), "the image must pip install the repository"


def test_dockerfile_runs_as_a_numeric_non_root_user() -> None:
    users = Dockerfile.load().final("USER")
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, f"USER must be a numeric non-root uid: {user}"


def test_dockerfile_exposes_the_ports_the_manifests_use() -> None:
    exposed = {int(p.split("/")[0]) for rest in Dockerfile.load().final("EXPOSE")
               for p in rest.split()}
    assert exposed == {7001, 7101, 9100}
    assert exposed == set(compose_ports()) == set(kubernetes_ports().values())


def test_dockerfile_healthcheck_asks_the_grpc_health_service() -> None:
    docker = Dockerfile.load()
    checks = docker.final("HEALTHCHECK")
    assert len(checks) == 1, "exactly one HEALTHCHECK"
    options, _, command = checks[0].partition("CMD ")
    assert command, f"HEALTHCHECK without CMD: {checks[0]!r}"
    argv = exec_form(command)
    assert argv[:2] == ["quorumlog", "health"], argv
    assert cli.SUBCOMMANDS["health"][0] == "quorumlog.client.cli.cmd_health"
    parsed = parse_cli(argv[1:], "HEALTHCHECK")
    assert parsed.service == "", "the health check must ask for the node (service \"\")"
    # Where it looks by default: $QUORUMLOG_HEALTH_ADDR, which must be the client port.
    address = parsed.address or docker.env()["QUORUMLOG_HEALTH_ADDR"]
    assert port_of(address) == 7001
    assert "--timeout" in options and "--interval" in options
    assert exec_form(docker.final("ENTRYPOINT")[-1]) == ["quorumlog"]


def test_dockerignore_keeps_local_state_out_but_not_the_sources() -> None:
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for required in (".git", ".venv", "data"):
        assert required in ignored, f".dockerignore must exclude {required}"
    copied = {shlex.split(rest)[0].rstrip("/") for rest in Dockerfile.load().all("COPY")
              if not rest.startswith("--from")}
    assert not copied & set(ignored), f".dockerignore excludes what the image copies: {copied}"


# --- compose -------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    document = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


def compose_nodes() -> dict[str, tuple[dict[str, Any], NodeConfig]]:
    nodes = {}
    for name, service in compose()["services"].items():
        command = service.get("command")
        if command and command[0] == "node":
            nodes[name] = (service, parse_node(list(command), f"compose {name}"))
    return nodes


def compose_ports() -> list[int]:
    (_, config), *_ = compose_nodes().values()
    ports = [port_of(config.client_addr), port_of(config.peer_addr)]
    if config.metrics_addr:
        ports.append(port_of(config.metrics_addr))
    return ports


def test_compose_runs_three_nodes_that_name_each_other_by_host_name() -> None:
    nodes = compose_nodes()
    assert sorted(nodes) == ["n1", "n2", "n3"]
    for name, (service, config) in nodes.items():
        assert config.name == name, f"{name}: --id {config.name}"
        assert service.get("hostname", name) == name
        assert set(config.peers) == set(nodes), f"{name}: peers {sorted(config.peers)}"
        for peer, address in config.peers.items():
            host = host_of(address)
            assert not is_ip(host), f"{name}: peer {peer} given by IP {address}"
            assert host == peer and host in compose()["services"], (
                f"{name}: peer {peer} at {address} is not its compose service name"
            )
            assert port_of(address) == port_of(nodes[peer][1].peer_addr)
        # The client address is advertised as the leader hint: a name, not 0.0.0.0.
        assert host_of(config.client_addr) == name
        assert service["environment"]["QUORUMLOG_HEALTH_ADDR"] == config.client_addr
        assert service["image"] == nodes["n1"][0]["image"], "one image for every node"


def test_compose_publishes_client_ports_on_loopback_and_keeps_data_in_named_volumes() -> None:
    document = compose()
    declared = set(document.get("volumes") or {})
    host_ports = []
    volumes = []
    for name, (service, config) in compose_nodes().items():
        (published,) = service["ports"]
        host_ip, host_port, container_port = str(published).split(":")
        assert host_ip == "127.0.0.1", f"{name}: publish on loopback only, got {published}"
        assert int(container_port) == port_of(config.client_addr), f"{name}: {published}"
        host_ports.append(int(host_port))
        mounts = [m for m in service["volumes"] if m.split(":")[1] == str(config.data_dir)]
        assert len(mounts) == 1, f"{name}: no volume at --data-dir {config.data_dir}"
        volume = mounts[0].split(":")[0]
        assert volume in declared, f"{name}: {volume} is not a named volume"
        volumes.append(volume)
        assert service["healthcheck"]["test"][1:3] == ["quorumlog", "health"]
    assert sorted(host_ports) == [7001, 7002, 7003]
    assert len(set(volumes)) == 3, "each node needs its own volume"


def test_compose_builds_the_image_from_the_repository() -> None:
    for name, service in compose()["services"].items():
        build = service.get("build")
        assert build, f"{name}: no build section"
        context = (DEPLOY / build["context"]).resolve()
        assert context == ROOT, f"{name}: build context {context}"
        assert (context / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_compose_cli_service_is_a_real_command_pointing_at_the_nodes() -> None:
    services = compose()["services"]
    nodes = compose_nodes()
    tools = {name: s for name, s in services.items() if name not in nodes}
    for name, service in tools.items():
        parse_cli(list(service["command"]), f"compose {name}")
        cluster = service["environment"]["QUORUMLOG_CLUSTER"].split(",")
        assert sorted(cluster) == sorted(config.client_addr for _, config in nodes.values())


# --- Kubernetes ----------------------------------------------------------------------------


def kubernetes_documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def one(kind: str) -> dict[str, Any]:
    found = [doc for doc in kubernetes_documents() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def services() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in kubernetes_documents()
            if doc["kind"] == "Service"}


def container() -> dict[str, Any]:
    (main,) = one("StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert isinstance(main, dict)
    return main


def kubernetes_ports() -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container()["ports"]}


_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known variables are replaced, others left as is."""
    return _REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def pod_env(ordinal: int) -> dict[str, str]:
    """The container's environment in pod ``quorumlog-<ordinal>`` (in order, as kubelet)."""
    statefulset = one("StatefulSet")
    downward = {
        "metadata.name": f"{statefulset['metadata']['name']}-{ordinal}",
        "metadata.namespace": NAMESPACE,
    }
    env: dict[str, str] = {}
    for item in container().get("env", []):
        if "value" in item:
            env[item["name"]] = expand(str(item["value"]), env)
        else:
            env[item["name"]] = downward[item["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def pod_configs() -> Iterator[tuple[str, NodeConfig]]:
    statefulset = one("StatefulSet")
    main = container()
    for ordinal in range(statefulset["spec"]["replicas"]):
        env = pod_env(ordinal)
        argv = [expand(arg, env) for arg in [*main.get("command", []), *main["args"]]]
        if argv[0] == "quorumlog":
            argv = argv[1:]
        pod = f"{statefulset['metadata']['name']}-{ordinal}"
        yield pod, parse_node(argv, f"StatefulSet pod {pod}")


def test_statefulset_runs_three_pods_named_by_their_node_ids() -> None:
    statefulset = one("StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    assert container().get("command", ["quorumlog"]) == ["quorumlog"]
    configs = dict(pod_configs())
    assert sorted(configs) == ["quorumlog-0", "quorumlog-1", "quorumlog-2"]
    for pod, config in configs.items():
        assert config.name == pod, f"{pod}: --id {config.name}"
        assert set(config.peers) == set(configs)


def test_statefulset_peers_are_dns_names_of_the_headless_service() -> None:
    statefulset = one("StatefulSet")
    headless_name = statefulset["spec"]["serviceName"]
    headless = services()[headless_name]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"].get("publishNotReadyAddresses") is True, (
        "peers must resolve each other before they are ready"
    )
    for pod, config in pod_configs():
        for peer, address in config.peers.items():
            host = host_of(address)
            labels = host.split(".")
            assert labels[:2] == [peer, headless_name], f"{pod}: peer {peer} at {address}"
            assert labels[2:] in ([], [NAMESPACE, "svc", "cluster", "local"]), address
            assert port_of(address) == kubernetes_ports()["peer"]
        # Listening and advertised addresses are the pod's own stable name.
        assert host_of(config.client_addr) == host_of(config.peers[pod])
        assert port_of(config.client_addr) == kubernetes_ports()["client"]
        assert config.metrics_addr and port_of(config.metrics_addr) == kubernetes_ports()[
            "metrics"]


def test_statefulset_keeps_data_on_a_volume_claim_template() -> None:
    spec = one("StatefulSet")["spec"]
    claims = {template["metadata"]["name"]: template for template in spec["volumeClaimTemplates"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container()["volumeMounts"]}
    for pod, config in pod_configs():
        assert mounts.get(str(config.data_dir)) in claims, (
            f"{pod}: --data-dir {config.data_dir} is not on a PersistentVolumeClaim"
        )
    for claim in claims.values():
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert claim["spec"]["resources"]["requests"]["storage"]


def test_probes_are_grpc_health_checks_on_the_client_port() -> None:
    main = container()
    assert {"readinessProbe", "livenessProbe"} <= main.keys()
    for key in ("startupProbe", "readinessProbe", "livenessProbe"):
        if key not in main:
            continue
        probe = main[key]
        assert set(probe) & {"httpGet", "tcpSocket", "exec"} == set(), f"{key}: not grpc"
        assert probe["grpc"]["port"] == kubernetes_ports()["client"], key
        assert probe["grpc"].get("service", "") == "", f"{key}: ask for the node (\"\")"
    for _, config in pod_configs():
        assert port_of(config.client_addr) == main["readinessProbe"]["grpc"]["port"]


def test_resources_and_non_root_security_context() -> None:
    pod_spec = one("StatefulSet")["spec"]["template"]["spec"]
    main = container()
    requests = main["resources"]["requests"]
    assert requests["cpu"] and requests["memory"]
    assert main["resources"]["limits"]["memory"]
    pod_security = pod_spec.get("securityContext", {})
    security = main.get("securityContext", {})
    assert pod_security.get("runAsNonRoot") is True, "pod securityContext: runAsNonRoot"
    assert security.get("runAsNonRoot", True) is True, "the container overrides runAsNonRoot"
    uid = security.get("runAsUser", pod_security.get("runAsUser"))
    image_uid = int(Dockerfile.load().final("USER")[-1].split(":")[0])
    assert uid in (None, image_uid), f"runAsUser {uid} is not the image's user {image_uid}"
    assert pod_security.get("fsGroup") == image_uid, "the data volume must be writable"
    assert security.get("allowPrivilegeEscalation") is False
    assert security.get("capabilities", {}).get("drop") == ["ALL"]


def test_services_route_to_the_containers_named_ports() -> None:
    ports = kubernetes_ports()
    template_labels = one("StatefulSet")["spec"]["template"]["metadata"]["labels"]
    for name, service in services().items():
        assert labels_match(service["spec"]["selector"], template_labels), name
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            number = ports[target] if isinstance(target, str) else target
            assert number in ports.values(), f"{name}: targetPort {target} is no container port"
            assert port["port"] == number, f"{name}: port {port['port']} -> {number}"
            assert port["name"] in ports and ports[port["name"]] == number, (
                f"{name}: port named {port['name']} does not lead to that container port"
            )
    headless = services()[one("StatefulSet")["spec"]["serviceName"]]
    assert ports["peer"] in {p["port"] for p in headless["spec"]["ports"]}
    clients = [s for s in services().values() if s["spec"].get("clusterIP") != "None"]
    assert clients, "no client Service"
    for client in clients:
        assert {p["port"] for p in client["spec"]["ports"]} == {ports["client"]}


def test_selectors_pdb_and_labels_agree() -> None:
    statefulset = one("StatefulSet")
    template_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    selector = statefulset["spec"]["selector"]["matchLabels"]
    assert labels_match(selector, template_labels)
    pdb = one("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert statefulset["spec"].get("podManagementPolicy") == "Parallel"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


# --- systemd ---------------------------------------------------------------------------------


def unit() -> dict[str, list[tuple[str, str]]]:
    """The unit file as {section: [(key, value), ...]} (keys may repeat, as in systemd)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    section = ""
    for raw in (SYSTEMD / "quorumlog@.service").read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            sections.setdefault(section, [])
            continue
        key, sep, value = line.partition("=")
        assert sep and section, f"unit: cannot parse {raw!r}"
        sections[section].append((key.strip(), value.strip()))
    return sections


def unit_value(section: str, key: str) -> str:
    values = [v for k, v in unit()[section] if k == key]
    assert len(values) == 1, f"[{section}] {key}: expected one value, got {values}"
    return values[0]


def env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{path}: {raw!r}"
        values[key] = value
    return values


def instance_argv(instance: str) -> list[str]:
    """ExecStart as systemd would run it for ``quorumlog@<instance>``."""
    env = env_file(SYSTEMD / f"{instance}.env")
    words = shlex.split(unit_value("Service", "ExecStart").replace("%i", instance))
    argv: list[str] = []
    for word in words:
        if word.startswith("$") and not word.startswith("${"):
            argv += env.get(word[1:], "").split()  # $VAR: split into words, empty -> none
        else:
            argv.append(word)
    return argv


def test_systemd_unit_runs_a_node_from_the_instance_toml_and_env_file() -> None:
    assert unit_value("Service", "EnvironmentFile") == "/etc/quorumlog/%i.env"
    argv = instance_argv("n1")
    assert Path(argv[0]).name == "quorumlog" and Path(argv[0]).is_absolute()
    assert "/etc/quorumlog/n1.toml" in argv
    config = parse_node(argv[1:], "quorumlog@n1.service", toml_dir=SYSTEMD)
    assert config.name == "n1"
    writable = unit_value("Service", "ReadWritePaths").replace("%i", "n1").split()
    assert any(config.data_dir == Path(p) or Path(p) in config.data_dir.parents
               for p in writable), f"data dir {config.data_dir} is not in ReadWritePaths"
    state = unit_value("Service", "StateDirectory").replace("%i", "n1")
    assert Path("/var/lib") / state == config.data_dir
    assert env_file(SYSTEMD / "n1.env")["QUORUMLOG_HEALTH_ADDR"] == config.client_addr


def test_systemd_unit_restarts_on_failure_as_a_dedicated_hardened_user() -> None:
    assert unit_value("Service", "Restart") == "on-failure"
    assert unit_value("Service", "User") not in ("", "root", "0")
    assert unit_value("Service", "NoNewPrivileges") == "yes"
    assert unit_value("Service", "ProtectSystem") == "strict"
    assert unit_value("Service", "KillSignal") == "SIGTERM"
    assert unit_value("Install", "WantedBy") == "multi-user.target"
    assert "network-online.target" in unit_value("Unit", "After")


def test_example_toml_loads_validates_and_names_peers_by_host() -> None:
    config = NodeConfig(**load_toml(SYSTEMD / "n1.toml"))  # type: ignore[arg-type]
    config.validate()
    assert sorted(config.peers) == ["n1", "n2", "n3"]
    for address in [*config.peers.values(), config.client_addr, config.peer_addr]:
        assert not is_ip(host_of(address)), f"{address}: use a host name"
    assert {port_of(a) for a in config.peers.values()} == {port_of(config.peer_addr)}


# --- README -------------------------------------------------------------------------------


def test_readme_covers_each_deployment() -> None:
    text = (DEPLOY / "README.md").read_text()
    for needle in ("Dockerfile", "compose.yaml", "statefulset.yaml", "services.yaml",
                   "pdb.yaml", "quorumlog@.service", "n1.env", "n1.toml", "quorumlog health",
                   "grafana/quorumlog.json", "netns/netns.py", "--join"):
        assert needle in text, f"deploy/README.md does not mention {needle}"
