#!/usr/bin/env bash
# Writes a store's HTML report and renders it in headless Chromium (installed from Debian's packages
# when missing), to check that the self-contained page draws: prints the PNG's path.
#   tools/render-report.sh STORE [OUT.png]
set -euo pipefail
store=${1:?usage: render-report.sh STORE [OUT.png]}
png=${2:-$PWD/shadowmover-report.png}
here=$(cd "$(dirname "$0")/.." && pwd)
sm=${SHADOWMOVER:-$here/.build/release/shadowmover}
if ! command -v chromium >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
html=$(mktemp --suffix=.html)
"$sm" inspect report --store "$store" --html "$html" >/dev/null
# No network: the page must draw from itself alone.
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1150,1450 \
    --proxy-server=127.0.0.1:9 --screenshot="$png" "file://$html" 2>/dev/null
rm -f "$html"
echo "$png"
