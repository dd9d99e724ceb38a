"""``instore gateway run``, ``instore gateway decode`` and ``instore firmware generate`` (dispatched from api/cli.py).

Bad input ends the command with one line ``instore: error: <reason>`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import signal
import sys
from pathlib import Path
from typing import BinaryIO, Final, TextIO

from beacon_gateway.errors import GatewayError

EXIT_BAD_INPUT: Final = 2
BYTES_PER_MB: Final = 1024 * 1024


def _fail(message: str) -> int:
    print(f"instore: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


# ---------------------------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from beacon_gateway.config import load_gateway_config

    try:
        cfg = load_gateway_config(args.config)
    except GatewayError as exc:
        return _fail(exc.detail)
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if cfg.scanner.kind == "replay":
        assert cfg.scanner.file is not None
        if not cfg.scanner.file.is_file():
            return _fail(f"{args.config}: scanner.file: no such file: {cfg.scanner.file}")
    try:
        return asyncio.run(_run(cfg))
    except GatewayError as exc:
        return _fail(exc.detail)


async def _run(cfg: object) -> int:
    from beacon_gateway.agent import GatewayAgent
    from beacon_gateway.config import GatewayFileConfig
    from beacon_gateway.outbox import Outbox
    from beacon_gateway.publisher import PahoPublisher
    from beacon_gateway.scanner import BleakAdvertScanner, ReplayScanner, Scanner
    from beacon_gateway.wire import OFFLINE_PAYLOAD, status_topic

    assert isinstance(cfg, GatewayFileConfig) and cfg.outbox is not None
    scanner: Scanner
    if cfg.scanner.kind == "replay":
        assert cfg.scanner.file is not None
        scanner = ReplayScanner(cfg.scanner.file)
    else:
        scanner = BleakAdvertScanner(adapter=cfg.scanner.adapter, mode=cfg.scanner.mode,
                                     watchdog_s=cfg.scanner.watchdog_s, scan_window_s=cfg.scanner.scan_window_s)
    outbox = Outbox(cfg.outbox, max_batches=cfg.outbox_max_batches, max_bytes=int(cfg.outbox_max_mb * BYTES_PER_MB))
    publisher = PahoPublisher(
        cfg.mqtt, cfg.mqtt_client_id, will=(status_topic(cfg.venue, cfg.gateway), OFFLINE_PAYLOAD),
        tls_ca=str(cfg.tls.ca) if cfg.tls.ca else None, tls_insecure=cfg.tls.insecure,
    )
    agent = GatewayAgent(cfg, scanner, publisher, outbox)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger(__name__).info(
        "gateway %s of %s: %s scanner, broker %r, outbox %s (next seq %d, %d pending)", cfg.gateway, cfg.venue,
        scanner.kind, publisher.endpoint, cfg.outbox, outbox.next_seq, outbox.depth)
    try:
        return await agent.run(stop)
    finally:
        outbox.close()


# ---------------------------------------------------------------------------------------------- decode


def decode_stream(lines: TextIO, out: TextIO) -> int:
    """One JSON output line per input line, in order; returns the number of lines with an error."""
    from beacon_gateway.advertisements import AdvertParser, decode_line

    parser = AdvertParser()
    errors = 0
    for line in lines:
        try:
            result = decode_line(line, parser)
        except Exception as exc:  # decode_line never raises; this keeps a bug from eating the rest of a capture
            result = {"id": None, "kind": None, "tx_power": None, "error": f"internal error: {type(exc).__name__}"}
        errors += result["error"] is not None
        out.write(json.dumps(result, separators=(",", ":")) + "\n")
    out.flush()
    return errors


def cmd_decode(args: argparse.Namespace) -> int:
    if args.file in (None, "-"):
        stdin = sys.stdin.buffer
        decode_stream(_text(stdin), sys.stdout)
        return 0
    path = Path(args.file)
    try:
        with path.open("rb") as raw:
            decode_stream(_text(raw), sys.stdout)
    except FileNotFoundError:
        return _fail(f"{path}: no such file")
    except IsADirectoryError:
        return _fail(f"{path}: is a directory")
    return 0


def _text(raw: BinaryIO) -> TextIO:
    """Lines of a byte stream as text; undecodable bytes become U+FFFD and give an error line, not a crash."""
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=None)


# ---------------------------------------------------------------------------------------------- firmware


def cmd_firmware_generate(args: argparse.Namespace) -> int:
    from beacon_gateway.firmware import DEFAULT_FIRMWARE_MQTT, FirmwareOptions, generate_firmware, write_files
    from positioning.errors import PositioningError
    from positioning.venue import parse_venue

    path = Path(args.venue)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _fail(f"{path}: no such file")
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"{path}: cannot read venue file: {exc}")
    try:
        venue = parse_venue(text, str(path))
    except PositioningError as exc:
        return _fail(str(exc).splitlines()[0])
    options = FirmwareOptions(mqtt=getattr(args, "mqtt", None) or DEFAULT_FIRMWARE_MQTT)
    try:
        files = generate_firmware(venue, options)
        written = write_files(Path(args.out), files)
    except GatewayError as exc:
        return _fail(exc.detail)
    except OSError as exc:
        return _fail(f"{args.out}: cannot write: {exc}")
    gateways = sum(1 for a in venue.anchors if a.kind == "gateway")
    print(f"wrote {len(written)} files for {gateways} gateways and {len(venue.beacons)} beacons of {venue.id} "
          f"to {args.out}")
    return 0
