#!/usr/bin/env bash
# Install and apply scripts/sysctl-trading.conf (low-latency TCP settings), persistently.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: apply-sysctl.sh [--conf FILE] [--dest FILE] [--check] [--help]

Without --check (as root): loads the tcp_bbr module now and at every boot, installs FILE as
DEST, applies it with `sysctl -p`, then verifies that every setting took effect.
With --check (any user): changes nothing; compares the running kernel's values with FILE and
lists each difference.

Options:
  --conf FILE   settings to apply [default: sysctl-trading.conf next to this script]
  --dest FILE   where to install them [default: /etc/sysctl.d/60-polymarket-bot.conf]
  --check       only compare; exit 0 if the kernel matches FILE, 1 if not
  -h, --help    this text
Undo: remove DEST and /etc/modules-load.d/polymarket-bot.conf, then reboot (or `sysctl --system`).
USAGE
}

CONF="$(cd "$(dirname "$0")" && pwd)/sysctl-trading.conf"
DEST="/etc/sysctl.d/60-polymarket-bot.conf"
CHECK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --conf) [ $# -ge 2 ] || { usage >&2; exit 2; }; CONF="$2"; shift 2 ;;
        --dest) [ $# -ge 2 ] || { usage >&2; exit 2; }; DEST="$2"; shift 2 ;;
        --check) CHECK=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "apply-sysctl.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[ -r "$CONF" ] || { echo "apply-sysctl.sh: cannot read $CONF" >&2; exit 1; }

# Compare each `key = value` of CONF with /proc/sys; whitespace inside values is normalised
# (the kernel prints tabs).
compare() {
    local key value path actual status=0
    while IFS='=' read -r key value; do
        key="$(echo "$key" | tr -d '[:space:]')"
        case "$key" in ''|'#'*|';'*) continue ;; esac
        value="$(echo "$value" | xargs)"
        path="/proc/sys/$(echo "$key" | tr . /)"
        if [ ! -r "$path" ]; then
            echo "apply-sysctl.sh: $key: not available on this kernel" >&2
            status=1
            continue
        fi
        actual="$(xargs < "$path")"
        if [ "$actual" != "$value" ]; then
            echo "apply-sysctl.sh: $key is '$actual', want '$value'" >&2
            status=1
        fi
    done < "$CONF"
    return "$status"
}

if [ "$CHECK" -eq 1 ]; then
    if compare; then echo "apply-sysctl.sh: the kernel matches $CONF"; exit 0; fi
    exit 1
fi

[ "$(id -u)" -eq 0 ] || { echo "apply-sysctl.sh: run as root (or use --check)" >&2; exit 1; }

if ! grep -qw bbr /proc/sys/net/ipv4/tcp_available_congestion_control; then
    modprobe tcp_bbr
fi
echo tcp_bbr > /etc/modules-load.d/polymarket-bot.conf

install -m 0644 "$CONF" "$DEST"
sysctl -p "$DEST"
compare
echo "apply-sysctl.sh: applied $DEST"
