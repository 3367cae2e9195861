#!/usr/bin/env bash
# Installs what the visualizer's tests and benchmark need: headless Chromium, its WebDriver, and
# Graphviz (`dot`, for SVG export). Idempotent: a quick no-op when everything is already there.
# Runs as root on a fresh CI machine (Debian); apt-get waits for another install's lock.
set -euo pipefail

needed=()
command -v chromium >/dev/null 2>&1 || needed+=(chromium)
command -v chromedriver >/dev/null 2>&1 || needed+=(chromium-driver)
command -v dot >/dev/null 2>&1 || needed+=(graphviz)
fc-list 2>/dev/null | grep -qi dejavu || needed+=(fonts-dejavu-core)

if [ ${#needed[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "setup_browser.sh: need root to install ${needed[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -o DPkg::Lock::Timeout=600 -q "$@"; }
apt_get update >/dev/null
apt_get install -y --no-install-recommends "${needed[@]}" >/dev/null
echo "setup_browser.sh: installed ${needed[*]}"
