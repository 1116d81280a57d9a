"""The CA option against a node that serves TLS (``--tls-cert-file``): a CA
and a node certificate are made with the openssl CLI (as docs/operations.md,
"Making certificates with openssl", does); the clients trust the node with
``ca_file=`` or ``REGISTRY_CACERT``, and without the CA, or with another CA's
file, they fail with an error that says the certificate did not verify."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_registry import AgentRegistration, AsyncRegistryClient, RegistryClient, Unavailable

from conftest import Cluster, make_cluster
from helpers import new_id

# Seconds a client refused by the certificate keeps trying before it gives up:
# short, the answer does not change.
REFUSED_BUDGET = 2.0


def openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=60
    )


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: its certificate and key."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return cert, key


def make_node_cert(directory: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 issued by ``ca``, and its key."""
    cert, key, csr = directory / "node.crt", directory / "node.key", directory / "node.csr"
    ext = directory / "node.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "keyUsage=critical,digitalSignature\n"
        "basicConstraints=CA:FALSE\n"
    )
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=node1",
        cwd=directory,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-days", "2", "-extfile", ext, "-out", cert,
        cwd=directory,
    )  # fmt: skip
    return cert, key


@dataclass
class TlsNode:
    cluster: Cluster
    #: The CA that issued the node's certificate.
    ca: Path
    #: A CA that did not.
    other_ca: Path

    @property
    def urls(self) -> list[str]:
        return self.cluster.urls


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsNode]:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is missing (scripts/setup.sh installs it)")
    base = tmp_path_factory.mktemp("tls-node")
    ca = make_ca(base, "test-ca")
    other_ca, _ = make_ca(base, "other-ca")
    cert, key = make_node_cert(base, ca)
    c = make_cluster(
        base, 1, ["--tls-cert-file", str(cert), "--tls-key-file", str(key)], ca_file=ca[0]
    )
    try:
        c.start()
        c.wait_ready()
        yield TlsNode(c, ca[0], other_ca)
    finally:
        c.stop()


def registration(agent_id: str) -> AgentRegistration:
    return AgentRegistration(agent_id=agent_id, name=agent_id, endpoint="https://10.0.0.5:7000")


async def test_ca_file_verifies_a_tls_node(
    tls_node: TlsNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REGISTRY_CACERT", raising=False)
    assert all(u.startswith("https://") for u in tls_node.urls)
    aid = new_id("tls")
    async with AsyncRegistryClient(tls_node.urls, ca_file=tls_node.ca) as client:
        created = await client.register(registration(aid))
        assert created.agent.agent_id == aid
        assert (await client.get(aid)).agent_id == aid
    with RegistryClient(tls_node.urls, ca_file=str(tls_node.ca)) as sync:
        assert sync.get(aid).agent_id == aid
        sync.deregister(aid)


async def test_registry_cacert_is_the_default_ca_file(
    tls_node: TlsNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGISTRY_CACERT", str(tls_node.ca))
    async with AsyncRegistryClient(tls_node.urls) as client:
        assert (await client.stats()).total_agents >= 0
    with RegistryClient(tls_node.urls) as sync:
        assert sync.stats().total_agents >= 0


@pytest.mark.parametrize("trust", ["system roots", "another CA"])
async def test_without_the_nodes_ca_the_certificate_is_refused(
    tls_node: TlsNode, monkeypatch: pytest.MonkeyPatch, trust: str
) -> None:
    monkeypatch.delenv("REGISTRY_CACERT", raising=False)
    ca_file = tls_node.other_ca if trust == "another CA" else None
    async with AsyncRegistryClient(
        tls_node.urls, ca_file=ca_file, retry_budget=REFUSED_BUDGET
    ) as client:
        with pytest.raises(Unavailable) as e:
            await client.stats()
    # Says why: the certificate, not a node that is down.
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value), str(e.value)
    assert e.value.node == tls_node.urls[0]
    with (
        RegistryClient(tls_node.urls, ca_file=ca_file, retry_budget=REFUSED_BUDGET) as sync,
        pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        sync.stats()


def test_a_missing_ca_file_is_an_error_at_construction() -> None:
    with pytest.raises(FileNotFoundError):
        AsyncRegistryClient(["https://127.0.0.1:1"], ca_file="/nonexistent/ca.pem")
