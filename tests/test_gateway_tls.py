"""mqtts:// with username and password against a real mosquitto with TLS and a password file."""

from __future__ import annotations

import gc
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from beacon_gateway.publisher import PahoPublisher
from simulations.local_broker import MOSQUITTO_CANDIDATES, MosquittoBroker
from tests.conftest import require_binary

pytestmark = pytest.mark.integration

USER, PASSWORD = "gw-01", "s3cr@t:pw"
WAIT_S = 15.0


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([require_binary("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[MosquittoBroker, Path]]:
    exe = require_binary(*MOSQUITTO_CANDIDATES)
    passwd = require_binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
    d = tmp_path / "tls"
    d.mkdir()
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=instore-test-ca",
             cwd=d)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    subprocess.run([passwd, "-b", "-c", str(d / "passwd"), USER, PASSWORD], check=True, capture_output=True, timeout=30)
    for f in d.iterdir():
        f.chmod(0o644 if f.suffix == ".pem" else 0o600)
    broker = MosquittoBroker(exe, tmp_path / "mosquitto")
    conf = broker.workdir / "mosquitto.conf"
    conf.write_text(conf.read_text().replace("allow_anonymous true", "\n".join([
        "allow_anonymous false",
        f"password_file {d / 'passwd'}",
        f"cafile {d / 'ca.pem'}",
        f"certfile {d / 'server.pem'}",
        f"keyfile {d / 'server.key'}",
    ])))
    broker.start()
    try:
        yield broker, d / "ca.pem"
    finally:
        broker.stop()


def test_tls_with_user_and_password(tls_broker: tuple[MosquittoBroker, Path]) -> None:
    broker, ca = tls_broker
    url = f"mqtts://gw%2D01:s3cr%40t%3Apw@127.0.0.1:{broker.port}"
    pub = PahoPublisher(url, "tls-gw", tls_ca=str(ca), will=("t/status", b"offline"))
    acked = threading.Event()
    pub.start()
    try:
        assert pub.wait_connected(WAIT_S), (broker.workdir / "mosquitto.log").read_text()
        pub.publish("t/readings", b"{}", on_ack=acked.set)
        assert acked.wait(WAIT_S)
    finally:
        pub.close()


# paho 2.2 leaves the socket of a failed TLS handshake to the garbage collector (a ResourceWarning of paho's)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("how", ["wrong password", "no TLS", "unknown CA"])
def test_refused_connections_never_connect(tls_broker: tuple[MosquittoBroker, Path], how: str) -> None:
    broker, ca = tls_broker
    url, cafile = {
        "wrong password": (f"mqtts://gw-01:nope@127.0.0.1:{broker.port}", str(ca)),
        "no TLS": (f"mqtt://gw-01:s3cr%40t%3Apw@127.0.0.1:{broker.port}", None),
        "unknown CA": (f"mqtts://gw-01:s3cr%40t%3Apw@127.0.0.1:{broker.port}", None),
    }[how]
    pub = PahoPublisher(url, f"tls-bad-{how.replace(' ', '-')}", tls_ca=cafile, reconnect_min_s=0.2,
                        reconnect_max_s=0.5)
    pub.start()
    try:
        time.sleep(1.5)
        assert not pub.connected and pub.connects == 0
    finally:
        pub.close(0.1)
        gc.collect()  # collect paho's leaked sockets here, where their warning is filtered
