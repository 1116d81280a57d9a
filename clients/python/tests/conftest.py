"""Real agent-registry clusters for the SDK's tests (adapted from
clients/legacy/tests/conftest.py; nothing is imported from there).

The node binary is ``$REGISTRY_BIN``, else
``${CARGO_TARGET_DIR:-<repo>/target}/release/agent-registry``. Nodes listen
on free loopback ports, keep data and logs in a pytest temporary directory
and are stopped when their fixture ends; when a test failed, the last lines
of each node's log are printed in the summary.

- ``cluster`` (session): three nodes with a small event window (so a test
  can overtake it); otherwise the defaults (tests that need fast liveness
  give their agents a short TTL). Tests that kill nodes take ``restore`` so that the
  next test finds every node back and ready.
- ``auth_cluster`` (module, in test_auth.py): three nodes with ``--auth on``.
- ``ops_cluster`` (module, in test_operations.py): three nodes of its own
  for membership changes and leadership handovers, which a node can join
  (``start_node(node, join=True)``).
- ``tls_node`` (module, in test_tls.py): one node serving https with a
  certificate of a CA made for the test (``make_cluster(..., ca_file=)``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]

# Seconds to wait for a cluster to elect a leader and be ready.
READY_TIMEOUT = float(os.environ.get("REGISTRY_READY_TIMEOUT", "90"))
# Seconds a node gets to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT = 20.0
LOG_TAIL_LINES = 40
# Events the test cluster keeps: small, so test_watch can outrun it.
EVENT_WINDOW = 100
CLUSTER_FLAGS = ["--event-window", str(EVENT_WINDOW)]

# One line per HTTP request drowns the tests' own story in a failure report.
logging.getLogger("httpx").setLevel(logging.WARNING)


def registry_binary() -> Path:
    explicit = os.environ.get("REGISTRY_BIN")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or "target")
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "release" / "agent-registry"


def registryctl_binary() -> Path:
    """``$REGISTRYCTL_BIN``, else ``registryctl`` beside the node binary (a
    ``cargo build --release --workspace`` builds both)."""
    explicit = os.environ.get("REGISTRYCTL_BIN")
    return Path(explicit) if explicit else registry_binary().parent / "registryctl"


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
    #: ``https`` when the node serves TLS (``--tls-cert-file`` in the flags).
    scheme: str = "http"

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.addr}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Cluster:
    binary: Path
    nodes: list[Node]
    flags: list[str]
    secret: Path
    #: Bearer token the harness's own probes send (``--auth on``).
    token: str | None = None
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=2.0))

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def start_node(self, n: Node, join: bool = False) -> None:
        """Starts ``n`` as a member of the initial cluster, or (``join``) as
        a new node waiting to be added: ``--join``, with the cluster's
        secret, and an empty data directory (docs/operations.md,
        "Membership")."""
        initial = ",".join(f"{m.node_id}={m.addr}" for m in self.nodes)
        membership = ["--join"] if join else ["--initial-cluster", initial]
        # The flags are explicit: REGISTRY_* settings of the caller's
        # environment must not change a node behind the harness's back.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        env.setdefault("NO_COLOR", "1")
        n.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(self.binary),
            "--node-id",
            str(n.node_id),
            "--listen",
            n.addr,
            "--data-dir",
            str(n.data_dir),
            *membership,
            "--cluster-secret-file",
            str(self.secret),
            *self.flags,
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
                start_new_session=True,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,
            )

    def start(self) -> None:
        if not self.secret.exists():
            self.secret.write_text(secrets.token_hex(32) + "\n")
        for n in self.nodes:
            self.start_node(n)

    def kill(self, n: Node) -> None:
        """kill -9: no goodbye to clients or peers."""
        assert n.proc is not None
        n.proc.send_signal(signal.SIGKILL)
        n.proc.wait(timeout=10)

    def restart_dead(self) -> None:
        """Starts again every node that is not running (same data)."""
        for n in self.nodes:
            if not n.running():
                self.start_node(n)

    def logs(self) -> str:
        return "\n".join(
            f"---- last lines of node {n.node_id} ({n.url}) log {n.log_path} ----\n"
            f"{log_tail(n.log_path)}"
            for n in self.nodes
        )

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def info(self, node: Node) -> dict[str, Any] | None:
        """``GET /v1/cluster`` of one node (None when it does not answer)."""
        try:
            r = self.http.get(f"{node.url}/v1/cluster", headers=self._headers())
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

    def check_alive(self, nodes: list[Node] | None = None) -> None:
        for n in nodes if nodes is not None else self.nodes:
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
            time.sleep(0.1)

    def leader(self, timeout: float = 30.0, among: list[Node] | None = None) -> Node:
        """The node that says it is the leader and that the others agree on."""
        candidates = among if among is not None else [n for n in self.nodes if n.running()]
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            for n in candidates:
                info = self.info(n)
                last = info
                if info and info.get("role") == "leader":
                    return n
            if time.monotonic() >= deadline:
                pytest.fail(f"no leader among the running nodes after {timeout}s (last: {last})")
            time.sleep(0.05)

    def followers(self) -> list[Node]:
        leader = self.leader()
        return [n for n in self.nodes if n is not leader and n.running()]

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


def make_cluster(
    base: Path,
    size: int,
    flags: list[str],
    token: str | None = None,
    ca_file: Path | None = None,
) -> Cluster:
    """Nodes not started yet. With ``ca_file`` the nodes serve https (the
    flags give them certificates that CA issued) and the harness's own
    probes trust it."""
    binary = registry_binary()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(
            f"registry binary {binary} is missing: build it with "
            "`cargo build --release -p agent-registry` or set REGISTRY_BIN"
        )
    ports = free_ports(size)
    nodes = [
        Node(
            i + 1,
            port,
            base / f"node{i + 1}",
            base / f"node{i + 1}.log",
            scheme="http" if ca_file is None else "https",
        )
        for i, port in enumerate(ports)
    ]
    c = Cluster(binary, nodes, flags, base / "cluster-secret", token=token)
    if ca_file is not None:
        c.http = httpx.Client(timeout=2.0, verify=ssl.create_default_context(cafile=ca_file))
    _CLUSTERS.append(c)
    return c


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = make_cluster(tmp_path_factory.mktemp("cluster"), 3, CLUSTER_FLAGS)
    try:
        c.start()
        c.wait_ready()
        yield c
    finally:
        c.stop()


@pytest.fixture
def restore(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster, brought back whole after the test (killed nodes
    restarted, every node ready) so the next test starts from a full one."""
    yield cluster
    cluster.restart_dead()
    cluster.wait_ready()


@pytest.fixture
def nodes(cluster: Cluster) -> list[str]:
    """Every node's URL, the leader's first."""
    leader = cluster.leader()
    return [leader.url] + [n.url for n in cluster.nodes if n is not leader]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    if exitstatus == 0:
        return
    for c in _CLUSTERS:
        terminalreporter.section("registry node logs")
        terminalreporter.write_line(c.logs())
