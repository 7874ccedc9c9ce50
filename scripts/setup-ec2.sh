#!/usr/bin/env bash
# Prepare a fresh Ubuntu 22.04 or 24.04 EC2 instance to run polybot, from a checkout of this
# repository (normally /opt/polymarket-bot). Idempotent: run it again after an upgrade.
# Step by step, and what to do before and after, in docs/operations.md.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: sudo scripts/setup-ec2.sh --mode docker|systemd [--admin-user USER] [--backup-s3-uri URI]
                                 [--no-cloudwatch] [--no-sysctl] [--help]

Run from the checkout (its folder becomes the app directory, default /opt/polymarket-bot).
Both modes:
  - apt upgrade, unattended security upgrades, git/curl/sqlite3/python3
  - system user `polybot` (uid/gid 10001, the image's user too) owning logs/ and data/
  - .env from .env.example if absent (owner ADMIN_USER, group polybot, mode 0640): edit it
  - low-latency TCP settings (scripts/apply-sysctl.sh)           unless --no-sysctl
  - CloudWatch agent with cloudwatch/*.json|yaml                 unless --no-cloudwatch
  - daily backup at 00:15 UTC in /etc/cron.d/polymarket-bot-backup (to S3 with --backup-s3-uri)
--mode docker:  Docker Engine and the compose plugin from Docker's apt repository; ADMIN_USER
                joins the docker group. Start with `docker compose up -d --build`.
--mode systemd: Python 3.11 (Ubuntu 22.04 ships 3.10), a root-owned virtualenv in venv/ with
                `pip install .`, and systemd/polymarket-bot.service installed and enabled.
                Start with `sudo systemctl start polymarket-bot`.
It never starts the bot: fill in .env first.

Options:
  --mode MODE          docker or systemd (required; never run both on one database)
  --admin-user USER    the human operator's login [default: $SUDO_USER, else ubuntu]
  --backup-s3-uri URI  e.g. s3://my-bucket/polybot/ (the instance role needs s3:PutObject there)
  --no-cloudwatch      skip the CloudWatch agent
  --no-sysctl          skip the kernel TCP settings
  -h, --help           this text
USAGE
}

MODE=""
ADMIN_USER="${SUDO_USER:-ubuntu}"
BACKUP_S3_URI=""
WITH_CLOUDWATCH=1
WITH_SYSCTL=1
BOT_USER="polybot"
BOT_UID=10001
BACKUP_DIR="/var/backups/polymarket-bot"

while [ $# -gt 0 ]; do
    case "$1" in
        --mode) [ $# -ge 2 ] || { usage >&2; exit 2; }; MODE="$2"; shift 2 ;;
        --admin-user) [ $# -ge 2 ] || { usage >&2; exit 2; }; ADMIN_USER="$2"; shift 2 ;;
        --backup-s3-uri) [ $# -ge 2 ] || { usage >&2; exit 2; }; BACKUP_S3_URI="$2"; shift 2 ;;
        --no-cloudwatch) WITH_CLOUDWATCH=0; shift ;;
        --no-sysctl) WITH_SYSCTL=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "setup-ec2.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

log() { echo "setup-ec2.sh: $*"; }
die() { echo "setup-ec2.sh: $*" >&2; exit 1; }

case "$MODE" in docker|systemd) ;; *) echo "setup-ec2.sh: --mode docker or --mode systemd" >&2; exit 2 ;; esac
case "$BACKUP_S3_URI" in ''|s3://*) ;; *) die "--backup-s3-uri must start with s3://" ;; esac
[ "$(id -u)" -eq 0 ] || die "run with sudo"
id "$ADMIN_USER" >/dev/null 2>&1 || die "no such user: $ADMIN_USER (see --admin-user)"

APP_DIR="$(cd "$(dirname "$0")/.." && pwd)"
[ -f "$APP_DIR/pyproject.toml" ] || die "$APP_DIR is not a polybot checkout"

# shellcheck source=/dev/null
. /etc/os-release
case "${ID:-}:${VERSION_ID:-}" in
    ubuntu:22.04|ubuntu:24.04) ;;
    *) die "tested on Ubuntu 22.04 and 24.04 only, this is ${PRETTY_NAME:-unknown}" ;;
esac

export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y --no-install-recommends "$@"; }

log "updating the system"
apt-get update
apt-get -y upgrade
apt_install ca-certificates curl git gnupg sqlite3 python3 unattended-upgrades cron

# Security updates install themselves; a kernel update still needs a planned reboot.
cat > /etc/apt/apt.conf.d/20auto-upgrades <<'CONF'
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
CONF

log "user $BOT_USER (uid $BOT_UID) and folders"
if ! getent group "$BOT_USER" >/dev/null; then
    groupadd --system --gid "$BOT_UID" "$BOT_USER"
fi
if ! id "$BOT_USER" >/dev/null 2>&1; then
    useradd --system --uid "$BOT_UID" --gid "$BOT_USER" --home-dir "$APP_DIR" --no-create-home \
        --shell /usr/sbin/nologin "$BOT_USER"
fi
[ "$(id -u "$BOT_USER")" -eq "$BOT_UID" ] \
    || die "user $BOT_USER exists with uid $(id -u "$BOT_USER"), not $BOT_UID: the container could not write logs/ and data/"
install -d -o "$BOT_USER" -g "$BOT_USER" -m 0750 "$APP_DIR/logs" "$APP_DIR/data"
install -d -o "$BOT_USER" -g "$BOT_USER" -m 0700 "$BACKUP_DIR"
install -d -o "$BOT_USER" -g "$BOT_USER" -m 0750 /var/log/polymarket-bot
if [ ! -e "$APP_DIR/.env" ]; then
    [ -f "$APP_DIR/.env.example" ] || die "no .env and no .env.example in $APP_DIR"
    install -o "$ADMIN_USER" -g "$BOT_USER" -m 0640 "$APP_DIR/.env.example" "$APP_DIR/.env"
    log "created $APP_DIR/.env from .env.example: fill it in before starting the bot"
else
    chown "$ADMIN_USER:$BOT_USER" "$APP_DIR/.env"
    chmod 0640 "$APP_DIR/.env"
fi

if [ "$MODE" = docker ]; then
    log "Docker Engine and the compose plugin"
    install -m 0755 -d /etc/apt/keyrings
    curl -fsSL https://download.docker.com/linux/ubuntu/gpg -o /etc/apt/keyrings/docker.asc
    chmod a+r /etc/apt/keyrings/docker.asc
    echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/ubuntu ${VERSION_CODENAME} stable" \
        > /etc/apt/sources.list.d/docker.list
    apt-get update
    apt_install docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin
    systemctl enable --now docker
    # Membership of `docker` is root-equivalent: only the operator's own login gets it.
    usermod -aG docker "$ADMIN_USER"
else
    log "Python 3.11 and the virtualenv"
    if ! command -v python3.11 >/dev/null 2>&1 || ! python3.11 -c 'import venv, ensurepip' 2>/dev/null; then
        if ! apt_install python3.11 python3.11-venv; then
            # 24.04 has no python3.11 package; deadsnakes is the usual source for it.
            apt_install software-properties-common
            add-apt-repository -y ppa:deadsnakes/ppa
            apt-get update
            apt_install python3.11 python3.11-venv
        fi
    fi
    # Root-owned: the bot runs as polybot and cannot modify its own code.
    python3.11 -m venv "$APP_DIR/venv"
    "$APP_DIR/venv/bin/pip" install --upgrade pip
    "$APP_DIR/venv/bin/pip" install "$APP_DIR"
    # the unit runs `python -m polybot` from $APP_DIR, so this source tree is what it imports: its
    # bytecode compiled now (the polybot user cannot write it), or every start compiles it all
    "$APP_DIR/venv/bin/python" -m compileall -q "$APP_DIR/polybot"
    rm -rf "$APP_DIR/build" "$APP_DIR"/*.egg-info
    sed "s#/opt/polymarket-bot#$APP_DIR#g" "$APP_DIR/systemd/polymarket-bot.service" \
        > /etc/systemd/system/polymarket-bot.service
    chmod 0644 /etc/systemd/system/polymarket-bot.service
    systemctl daemon-reload
    systemctl enable polymarket-bot
fi

if [ "$WITH_SYSCTL" -eq 1 ]; then
    log "kernel TCP settings"
    "$APP_DIR/scripts/apply-sysctl.sh"
fi

if [ "$WITH_CLOUDWATCH" -eq 1 ]; then
    log "CloudWatch agent (the instance role needs CloudWatchAgentServerPolicy)"
    arch="$(dpkg --print-architecture)"
    deb="$(mktemp --suffix=.deb)"
    curl -fsSL "https://s3.amazonaws.com/amazoncloudwatch-agent/ubuntu/$arch/latest/amazon-cloudwatch-agent.deb" -o "$deb"
    dpkg -i "$deb"
    rm -f "$deb"
    etc=/opt/aws/amazon-cloudwatch-agent/etc
    sed "s#/opt/polymarket-bot#$APP_DIR#g" "$APP_DIR/cloudwatch/amazon-cloudwatch-agent.json" \
        > "$etc/amazon-cloudwatch-agent.json"
    install -m 0644 "$APP_DIR/cloudwatch/prometheus.yaml" "$etc/prometheus.yaml"
    /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl \
        -a fetch-config -m ec2 -s -c "file:$etc/amazon-cloudwatch-agent.json"
fi

log "daily backup"
{
    echo "# polybot daily backup (scripts/backup.sh); written by scripts/setup-ec2.sh"
    echo "SHELL=/bin/bash"
    echo "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    [ -z "$BACKUP_S3_URI" ] || echo "BACKUP_S3_URI=$BACKUP_S3_URI"
    echo "15 0 * * * $BOT_USER $APP_DIR/scripts/backup.sh --bot-dir $APP_DIR >>/var/log/polymarket-bot/backup.log 2>&1"
} > /etc/cron.d/polymarket-bot-backup
chmod 0644 /etc/cron.d/polymarket-bot-backup
if [ -n "$BACKUP_S3_URI" ] && ! command -v aws >/dev/null 2>&1; then
    log "note: BACKUP_S3_URI is set but the aws CLI is missing: sudo snap install aws-cli --classic"
fi

log "done. Next: edit $APP_DIR/.env (TRADING_MODE=paper first), then"
if [ "$MODE" = docker ]; then
    log "  log out and in again (docker group), cd $APP_DIR && docker compose up -d --build"
else
    log "  sudo systemctl start polymarket-bot && journalctl -u polymarket-bot -f"
fi
