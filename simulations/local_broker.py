"""A real mosquitto broker process on a free loopback port, for integration tests and benchmarks.

``MosquittoBroker`` can be stopped and restarted on the same port with its persistence kept, so
tests can cut the broker mid-stream. Tests get one through the ``mosquitto_broker`` fixture in
``conftest.py``; benchmarks use ``start_mosquitto`` directly.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

START_TIMEOUT_S: Final = 10.0
STOP_TIMEOUT_S: Final = 10.0
MOSQUITTO_CANDIDATES: Final = ("mosquitto", "/usr/sbin/mosquitto")


def find_mosquitto() -> str | None:
    for candidate in MOSQUITTO_CANDIDATES:
        found = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, up: bool, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"mosquitto on port {port} did not {'start' if up else 'stop'} in {timeout_s} s")


@dataclass
class MosquittoBroker:
    exe: str
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = self.workdir / "mosquitto.log"
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            "\n".join([
                f"listener {self.port} 127.0.0.1",
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {self.workdir}/",
                "autosave_interval 1",
                "max_queued_messages 0",  # persistent sessions keep everything while a client is away
                "max_inflight_messages 0",
                f"user {getpass.getuser()}",  # as root, mosquitto would drop to a user that cannot write here
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "",
            ])
        )

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> MosquittoBroker:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([self.exe, "-c", str(self.workdir / "mosquitto.conf")],
                                            stdout=log, stderr=log)
        try:
            _wait_port(self.port, up=True, timeout_s=START_TIMEOUT_S)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()  # SIGTERM: mosquitto saves its persistence file
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        _wait_port(self.port, up=False, timeout_s=STOP_TIMEOUT_S)

    def restart(self) -> None:
        self.stop()
        self.start()


def start_mosquitto(workdir: Path, exe: str | None = None) -> MosquittoBroker:
    found = exe or find_mosquitto()
    if found is None:
        raise FileNotFoundError("mosquitto is not installed (run `make install`)")
    return MosquittoBroker(found, workdir).start()
