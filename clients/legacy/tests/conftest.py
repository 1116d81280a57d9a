"""A real 3-node agent-registry cluster for the legacy-client tests.

The release binary is ``$REGISTRY_BIN``, else
``${CARGO_TARGET_DIR:-<repo>/target}/release/agent-registry`` (a relative
CARGO_TARGET_DIR is taken from the repository root, as cargo does). The
nodes listen on free loopback ports, keep their data and logs in a pytest
temporary directory, and are stopped when the session ends; when a test
failed, the last lines of each node's log are printed in the summary.

Every test that uses ``registry_url`` runs twice: through the leader and
through a follower.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]

# Seconds to wait for the cluster to elect a leader and be ready.
READY_TIMEOUT = float(os.environ.get("REGISTRY_READY_TIMEOUT", "90"))
# Seconds a node gets to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT = 20.0
# Node flags beyond identity, address, data and membership. The defaults
# serve: the tests that need fast liveness give their agent a short TTL
# through /v1 (ttl_seconds 2, offline_after_seconds 4), and the leader's
# default sweep (every 0.5 s) and checkpoint (every 1 s) intervals see it
# expire well within the tests' deadlines.
NODE_FLAGS: list[str] = []
LOG_TAIL_LINES = 40


def registry_binary() -> Path:
    explicit = os.environ.get("REGISTRY_BIN")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or "target")
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "release" / "agent-registry"


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (bound to port 0 together)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def die_with_parent() -> None:
    """In the child before exec (Linux): SIGKILL it when the test process
    dies, so that a killed pytest leaves no node behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Node:
    node_id: int
    port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Cluster:
    binary: Path
    nodes: list[Node]
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=2.0))

    def start(self) -> None:
        initial = ",".join(f"{n.node_id}={n.addr}" for n in self.nodes)
        # The flags are explicit: REGISTRY_* settings of the caller's
        # environment must not change a node behind the harness's back.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        env.setdefault("NO_COLOR", "1")
        # Node-to-node requests are signed with a secret shared by the nodes.
        secret = self.nodes[0].data_dir.parent.parent / "cluster-secret"
        if not secret.exists():
            secret.write_text(secrets.token_hex(32) + "\n")
        for n in self.nodes:
            n.data_dir.mkdir(parents=True, exist_ok=True)
            args = [
                str(self.binary),
                "--node-id",
                str(n.node_id),
                "--listen",
                n.addr,
                "--data-dir",
                str(n.data_dir),
                "--initial-cluster",
                initial,
                "--cluster-secret-file",
                str(secret),
                *NODE_FLAGS,
            ]
            with n.log_path.open("ab") as log:
                log.write(f"==== starting node {n.node_id}: {' '.join(args)}\n".encode())
                log.flush()
                n.proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    # Its own session: a ^C in the terminal reaches pytest,
                    # whose teardown then stops the nodes and shows their logs.
                    start_new_session=True,
                    preexec_fn=die_with_parent if sys.platform == "linux" else None,
                )

    def logs(self) -> str:
        return "\n".join(
            f"---- last lines of node {n.node_id} ({n.url}) log {n.log_path} ----\n"
            f"{log_tail(n.log_path)}"
            for n in self.nodes
        )

    def info(self, node: Node) -> dict[str, Any] | None:
        """``GET /v1/cluster`` of one node (None when it does not answer)."""
        try:
            r = self.http.get(f"{node.url}/v1/cluster")
        except httpx.HTTPError:
            return None
        if r.status_code != 200:
            return None
        body = r.json()
        return body if isinstance(body, dict) else None

    def ready(self, node: Node) -> bool:
        try:
            return self.http.get(f"{node.url}/health/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def check_alive(self) -> None:
        for n in self.nodes:
            if not n.running():
                code = n.proc.returncode if n.proc is not None else None
                pytest.fail(f"node {n.node_id} exited (code {code})\n{self.logs()}")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every node is ready (/health/ready 200) and knows a leader."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            pending = [
                n.node_id
                for n in self.nodes
                if not self.ready(n) or not (self.info(n) or {}).get("leader_id")
            ]
            if not pending:
                return
            if time.monotonic() >= deadline:
                pytest.fail(f"nodes {pending} not ready after {timeout}s\n{self.logs()}")
            time.sleep(0.2)

    def leader_and_followers(self, timeout: float = 30.0) -> tuple[str, list[str]]:
        """The leader's URL and the followers' URLs, from ``GET /v1/cluster``
        (``leader_id`` and ``members``), once the leader itself says so."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            self.check_alive()
            for n in self.nodes:
                info = self.info(n)
                last = info
                if not info or info.get("leader_id") is None:
                    continue
                members = {m["node_id"]: m["addr"] for m in info.get("members", [])}
                leader_addr = members.get(info["leader_id"])
                if leader_addr is None:
                    continue
                leader = next((x for x in self.nodes if x.addr == leader_addr), None)
                if leader is None:
                    continue
                confirm = self.info(leader)
                if not confirm or confirm.get("role") != "leader":
                    continue
                followers = [f"http://{a}" for i, a in members.items() if i != info["leader_id"]]
                return f"http://{leader_addr}", followers
            if time.monotonic() >= deadline:
                pytest.fail(f"no leader known after {timeout}s (last /v1/cluster: {last})")
            time.sleep(0.1)

    def stop(self) -> None:
        for n in self.nodes:
            if n.running():
                assert n.proc is not None
                n.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for n in self.nodes:
            if n.proc is None:
                continue
            try:
                n.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                n.proc.kill()
                n.proc.wait(timeout=10)
        self.http.close()


_CLUSTERS: list[Cluster] = []


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    binary = registry_binary()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(
            f"registry binary {binary} is missing: build it with "
            "`cargo build --release -p agent-registry` or set REGISTRY_BIN"
        )
    base = tmp_path_factory.mktemp("cluster")
    ports = free_ports(3)
    nodes = [
        Node(i + 1, port, base / f"node{i + 1}", base / f"node{i + 1}.log")
        for i, port in enumerate(ports)
    ]
    c = Cluster(binary, nodes)
    _CLUSTERS.append(c)
    try:
        c.start()
        c.wait_ready()
        yield c
    finally:
        c.stop()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    if exitstatus == 0:
        return
    for c in _CLUSTERS:
        terminalreporter.section("registry node logs")
        terminalreporter.write_line(c.logs())


@pytest.fixture
def leader_url(cluster: Cluster) -> str:
    return cluster.leader_and_followers()[0]


@pytest.fixture
def follower_url(cluster: Cluster) -> str:
    followers = cluster.leader_and_followers()[1]
    assert followers, "the cluster has no follower"
    return followers[0]


@pytest.fixture(params=["leader", "follower"])
def via(request: pytest.FixtureRequest) -> str:
    """Which node the test talks to (every test runs through both)."""
    value = request.param
    assert isinstance(value, str)
    return value


@pytest.fixture
def registry_url(via: str, cluster: Cluster) -> str:
    leader, followers = cluster.leader_and_followers()
    if via == "leader":
        return leader
    assert followers, "the cluster has no follower"
    return followers[0]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client, for the requests the legacy clients never make."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client
