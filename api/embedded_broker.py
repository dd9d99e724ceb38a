"""An in-process MQTT broker (amqtt) for the demo, so it needs nothing installed.

amqtt keeps the messages of a disconnected persistent session only for authenticated (named)
clients and treats every client of its anonymous plugin as anonymous; ``OpenAuthPlugin`` lets any
client in without marking it anonymous, so the engine's persistent session works as on mosquitto.
Only for the demo on loopback: production runs mosquitto (``instore serve --mqtt URL``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Any, Final

from amqtt.plugins.base import BaseAuthPlugin

from api.errors import EngineError

START_TIMEOUT_S: Final = 15.0
STOP_TIMEOUT_S: Final = 10.0


class OpenAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Accept every client as a named one (demo on loopback only)."""

    async def authenticate(self, *, session: Any) -> bool:
        return True


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from simulations.local_broker import free_port

        self.host = host
        self.port = port or free_port()
        self._loop = asyncio.new_event_loop()
        self._broker: Any = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="amqtt", daemon=True)
        for name in ("amqtt", "transitions"):  # amqtt logs every late PUBACK under load; the engine counts its own
            logging.getLogger(name).setLevel(logging.CRITICAL)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        from amqtt.broker import Broker

        self._thread.start()

        async def boot() -> Any:
            config = {"listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}",
                                                "max_connections": 1000}},
                      "plugins": {f"{__name__}.OpenAuthPlugin": {}}}
            broker = Broker(config, loop=self._loop)
            await broker.start()
            return broker

        fut: Future[Any] = asyncio.run_coroutine_threadsafe(boot(), self._loop)
        try:
            self._broker = fut.result(START_TIMEOUT_S)
        except Exception as exc:
            raise EngineError(f"embedded broker could not start on {self.host}:{self.port}: {exc}") from None
        return self

    def stop(self) -> None:
        if self._broker is not None:
            fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                fut.result(STOP_TIMEOUT_S)
            except Exception as exc:  # a broker that does not stop cleanly is abandoned with the process
                logging.getLogger("instore.broker").warning("embedded broker shutdown: %s", exc)
            self._broker = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_TIMEOUT_S)
