"""Tuning constants of the positioning core, each with the reason for its value."""

from __future__ import annotations

from typing import Final

LN10: Final = 2.302585092994046

# --- Radio channel -------------------------------------------------------------------------------
REFERENCE_TX_DBM: Final = -59.0  # iBeacon measured power of a typical tag; anchors' rssi_1m refer to it
DEVICE_HEIGHT_M: Final = 1.2  # phone in a hand or a pocket, tag on a cart
MIN_DISTANCE_M: Final = 0.5  # path-loss model is meaningless in the near field
SHADOWING_DB: Final = 6.0  # indoor shadowing sigma (4-8 dB in the literature)
FAST_FADING_DB: Final = 4.0  # per-packet spread (channels, multipath) that averaging removes
WINDOW_CORRELATED_DB: Final = 5.0  # shadowing is correlated over 1-2 s: most of it does not average out in a window
SENSITIVITY_DBM: Final = -97.0  # typical BLE receiver sensitivity; silence below it is censoring
BODY_LOSS_PRIOR_DB: Final = 0.0  # none assumed until walkers show one (carts and rigs have none); learned online
BODY_LOSS_MAX_DB: Final = 15.0
WALL_LOSS_PRIOR_DB: Final = 0.0  # per wall, counter or shelf on the line of sight (a few dB each); learned online
WALL_LOSS_MAX_DB: Final = 8.0
FLOOR_LOSS_DB: Final = 18.0  # a concrete slab between floors (15-20 dB)
RSSI_MIN_DBM: Final = -130.0  # below: a corrupt packet
RSSI_MAX_DBM: Final = 0.0  # above: a corrupt packet
# Exactly 0 dBm is what iOS ranging (CLBeacon.rssi) and many exports write for "not measured"; no BLE
# receiver reports it for a real packet (they saturate tens of dB lower).
RSSI_PLACEHOLDER_DBM: Final = 0.0
PATH_LOSS_N_BOUNDS: Final = (1.3, 4.5)  # physical range for indoor exponents
RSSI_1M_BOUNDS: Final = (-90.0, -30.0)  # physical range for the 1 m reference power
DEVICE_OFFSET_PRIOR_DB: Final = 8.0  # phones differ by up to ~20 dB: a wide prior on a device's offset
TX_POWER_PRIOR_DB: Final = 4.0  # the advertised measured power helps only when set honestly
# Phones span ~20 dB, and the anchors' 1 m power is often a guess (quiet tags sit 15-20 dB below it).
DEVICE_OFFSET_MAX_DB: Final = 25.0
MIN_ANCHORS_FOR_OFFSET: Final = 4  # solving x, y and an offset together needs >= 4 receivers

# --- Window filter -------------------------------------------------------------------------------
WINDOW_S: Final = 1.0  # positions are produced per second
FILTER_HISTORY_S: Final = 2.0  # readings older than this (relative to the window end) are not averaged
TRIM_FRACTION: Final = 0.2  # trimmed mean: drop the top and bottom 20% of a window's readings
MAX_ANCHORS_PER_FIX: Final = 24  # the strongest receivers carry the information; more only costs time

# --- Multilateration -----------------------------------------------------------------------------
HUBER_K: Final = 1.5  # robust loss threshold in standard deviations
SOLVER_ITERATIONS: Final = 25  # Gauss-Newton / Levenberg-Marquardt steps; converges in < 10 usually
SOLVER_TOL_M: Final = 1e-4  # step size below which a fix has converged (a tenth of a millimetre)
CENSOR_MARGIN_DB: Final = 6.0  # with few adverts, silence may be packet loss: censor only this far above sensitivity
MAX_CENSOR_ANCHORS: Final = 16  # nearest unheard receivers used to push a fix away
BOUNDS_MARGIN_M: Final = 2.0  # fixes may sit this far outside the anchors' hull when there is no floor outline
ACCURACY_MIN_M: Final = 0.5  # never claim better than this
ACCURACY_MAX_M: Final = 60.0
# Links expected this far above sensitivity tell the learners of losses and of anchors' power (weaker
# ones are heard only when lucky).
LOSS_MIN_MARGIN_DB: Final = 6.0
# Receivers' own 1 m power, learned from the devices' residuals when nothing else tells it (no survey,
# no anchors hearing each other; tracks in positioning.live, static scans in positioning.static):
# receivers differ by a few dB, beacons set to other transmit powers by far more. Each window's (or
# scan's) residuals at the estimate are compared with their own mean (which holds
# the error of the device's offset), so an anchor learns how much louder or quieter it is than the other
# anchors heard with it; the deviations are then centred over the anchors (their common level is the
# devices' offsets). Without the window's own mean, errors of the devices' offsets leaked into the anchors
# they were near (+-2 dB learned on a clean channel with none). Hall channel, 6 devices x 200 s, 6 seeds,
# median / p90 (m): receivers differing by 2 dB 3.69 / 8.52 -> 3.62 / 7.50, by 5 dB 4.77 / 9.84 ->
# 4.06 / 8.04; everyone standing 3.68 / 8.13 -> 3.63 / 7.81.
P0_PRIOR_WEIGHT: Final = 50.0  # links' worth of confidence in the nominal 1 m power
P0_MEMORY: Final = 3000.0  # links each anchor's learned deviation averages over
P0_LEARN_MAX_DB: Final = 10.0  # the most a learned deviation may reach
P0_MIN_LINKS: Final = 3  # a window tells the anchors' differences only with this many usable links
