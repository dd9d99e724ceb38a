#!/bin/sh
# Debian packages the project uses: mosquitto (broker for tests and benchmarks; openssl makes its test TLS certs), victoria-metrics
# (time-series server for integration tests), chromium + chromedriver (browser tests of the pages).
# Installs only what is missing; needs root (or passwordless sudo) when something is missing.
set -eu
PACKAGES="mosquitto victoria-metrics chromium chromium-driver openssl"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing Debian packages:$missing"
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends $missing || {
    $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends $missing
}
