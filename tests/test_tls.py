"""Optional TLS: two nodes over HTTPS with a self-signed certificate, and what plain HTTP gets."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from gossip.errors import TransportError
from gossip.http import http_call

from .nodeproc import Cluster, wait_for

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=gossip-test",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key, cert  # self-signed: the certificate is its own CA


def test_two_nodes_gossip_over_https(cluster: Cluster, certs: tuple[Path, Path, Path]) -> None:
    a = cluster.start("a", tls=certs)
    assert any("Serving HTTPS on 127.0.0.1" in line for line in a.banner)
    b = cluster.start("b", "--join", a.address, tls=certs)
    made = {a.create("secret-ish"), b.create("over TLS")}
    wait_for(lambda: a.guids() == made == b.guids(), 15, "both nodes to converge over HTTPS")
    # Plain HTTP to a TLS node gets no answer; an unverified certificate is refused.
    with pytest.raises(TransportError):
        http_call(f"http://{a.address}/healthz", timeout=2)
    with pytest.raises(TransportError):
        http_call(f"https://{a.address}/healthz", timeout=2, ssl_context=ssl.create_default_context())


def test_tls_flags_must_come_together(cluster: Cluster, certs: tuple[Path, Path, Path]) -> None:
    cert, key, _ = certs
    node = cluster.start("a", "--tls-cert", str(cert), "--tls-key", str(key), expect_banner=False)
    assert node.proc.wait(30) == 2
    err = node.proc.stderr.read() if node.proc.stderr else ""
    assert "--tls-ca" in err and "Traceback" not in err


def test_cli_talks_https_with_tls_ca(cluster: Cluster, certs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    import json
    import os
    import sys

    from .nodeproc import ROOT

    a = cluster.start("a", tls=certs)
    guid = a.create("hello")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "gossip", "status", "--json", "--config", "a.json"]
    done = subprocess.run(cmd + ["--tls-ca", str(certs[2])], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert [r["guid"] for r in json.loads(done.stdout)] == [guid]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert plain.returncode == 1 and plain.stderr.startswith("gossip: error: ") and "Traceback" not in plain.stderr
