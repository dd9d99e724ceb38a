"""The live demo's traffic: a steady simulated crowd published by synthetic gateways.

``start_demo_gateways(venue=..., broker_url=..., shoppers=N, speed=X, seed=K)`` (called by
``instore demo``) keeps about N shoppers in the venue whatever the hour, publishes every gateway's
readings in our wire protocol over one MQTT connection (light on the embedded broker), and returns
a handle whose ``stop()`` ends it. With ``api_url`` the shoppers' app phones also post their scans
of the venue beacons to ``<api_url>/v1/scans``.
"""

from __future__ import annotations

import time
from typing import Final

from positioning.venue import Venue
from simulations.gateways import LiveRun, ScanPoster, Sink, WireGateways, paho_factory
from simulations.scenario import World

DEMO_SHARED_CONNECTION: Final = True  # one connection for all gateways: the embedded broker stays light


class DemoTraffic:
    """A running live simulation; ``stop()`` ends it and closes its connections."""

    def __init__(self, run: LiveRun, wire: WireGateways) -> None:
        self.run = run
        self.wire = wire

    @property
    def world(self) -> World:
        return self.run.world

    @property
    def published(self) -> int:
        return self.wire.batches

    def stop(self) -> None:
        self.run.stop()


def start_demo_gateways(*, venue: Venue, broker_url: str, shoppers: int, speed: float = 1.0, seed: int = 0,
                        api_url: str | None = None, shared_connection: bool = DEMO_SHARED_CONNECTION) -> DemoTraffic:
    world = World(venue, shoppers, seed=seed, start_t=time.time(), follow_clock=False, phone_scans=bool(api_url))
    wire = WireGateways(venue, paho_factory(broker_url), shared_connection=shared_connection,
                        client_prefix="instore-demo", seed=seed)
    sinks: list[Sink] = [wire]
    if api_url:
        sinks.append(ScanPoster(api_url))
    run = LiveRun(world, sinks, speed=speed)
    opened: list[Sink] = []
    try:
        for s in sinks:  # connect before returning, so a broker problem surfaces to the caller
            s.open()
            opened.append(s)
    except BaseException:
        for s in opened:
            s.close()
        raise
    run.start(opened=True)
    return DemoTraffic(run, wire)
