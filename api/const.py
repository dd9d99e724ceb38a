"""Tuning constants of the engine service, each with why it has its value."""

from __future__ import annotations

from typing import Final

# ---------------------------------------------------------------------------------------------- ingest
INGEST_QUEUE_MAX: Final = 2_000  # messages waiting for the pipeline; when full the MQTT thread waits (backpressure)
INGEST_PUT_TIMEOUT_S: Final = 0.5  # the MQTT thread re-checks shutdown this often while the queue is full
MQTT_KEEPALIVE_S: Final = 30  # broker notices a dead engine within 1.5x this
MQTT_RECONNECT_MIN_S: Final = 1  # first reconnect delay
MQTT_RECONNECT_MAX_S: Final = 30  # bounded exponential backoff between reconnects
MQTT_CONNECT_TIMEOUT_S: Final = 10.0  # a broker that does not answer CONNECT in this time is reported unreachable
MQTT_MAX_QUEUED_OUT: Final = 10_000  # outgoing messages (events, positions) paho keeps while the broker is away
ENGINE_CLIENT_ID_PREFIX: Final = "instore-engine-"  # fixed per venue: the broker keeps our session across restarts
SHARED_GROUP_DEFAULT: Final = "engine"  # $share/<group>/... when shared subscriptions are turned on
DEDUP_WINDOW: Final = 4_096  # batches remembered per gateway (~68 min at one batch per second); bounded memory
DEDUP_RESET_AFTER: Final = 3  # this many consecutive far-too-old seqs: the gateway lost its counter, start over
ERROR_SAMPLES_KEPT: Final = 20  # last refused messages kept (reason, topic, detail) for operators

# ---------------------------------------------------------------------------------------------- pipeline
COMMIT_EVERY_S: Final = 0.25  # advance + commit + ack cadence (wall): p99 reading-to-position ~0.5 s at 100k/s
COMMIT_MIN_S: Final = 0.05  # never commit more often than this (each commit runs the solver on fresh readings)
COMMIT_IDLE_S: Final = 0.1  # commit early once the queue is empty this long (brokers with small in-flight limits)
COMMIT_MAX_MESSAGES: Final = 400  # commit early when this many messages wait for their ack
STEP_MAX_S: Final = 1.0  # event time is advanced in steps of at most this: >= one position per second per device
IDLE_GRACE_S: Final = 2.0  # without data, event time follows the wall clock after this pause (exits still fire)
MAX_CLOCK_SKEW_S: Final = 86_400.0  # readings stamped further than this ahead of the wall clock are refused
TICK_S: Final = 0.05  # the pipeline loop wakes at least this often
LATENCY_SAMPLES_KEPT: Final = 20_000  # recent reading-to-position latencies kept for the p50/p99 metric
LIVE_MAX_AGE_S: Final = 30.0  # a device not positioned for this long (event time) leaves the live map
GATEWAY_SILENCE_S: Final = 60.0  # a gateway silent this long is down (checked every tick: flagged well within 90 s)
POSITION_HISTORY_S: Final = 86_400.0  # SQLite keeps a day of positions (longer history goes to the time-series DB)
RETENTION_SWEEP_S: Final = 3_600.0  # how often old rows are purged
OCCUPANCY_BUCKET_S: Final = 60.0  # per-zone occupancy is recorded per minute

# ---------------------------------------------------------------------------------------------- api
SSE_PERIOD_S: Final = 0.5  # live map frames per client: twice a second is smooth enough for walking dots
SSE_KEEPALIVE_S: Final = 15.0  # comment line so proxies keep an idle stream open
RECENT_EVENTS_KEPT: Final = 200  # zone events kept in memory for the dashboard feed
SCAN_MAX_READINGS: Final = 500  # one phone scan: more beacons than this is not a real scan
