#!/usr/bin/env bash
# Prepare a fresh Ubuntu 22.04 or 24.04 EC2 instance to run polybot, from a checkout of this
# repository (normally /opt/polymarket-bot). Idempotent: run it again after an upgrade.
# Step by step, and what to do before and after, in docs/operations.md.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: sudo scripts/setup-ec2.sh --mode docker|systemd [--instance NAME [--health-port PORT]]
                                 [--admin-user USER] [--backup-s3-uri URI]
                                 [--no-cloudwatch] [--no-sysctl] [--destdir DIR] [--help]

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

--instance NAME: one more account on this host (docs/operations.md, "Adding an account"); run
                it once per account. Instead of the checkout's .env, logs/ and data/, the account
                gets instances/NAME/ with its own .env (from .env.example, INSTANCE=NAME and a
                HEALTH_PORT of its own), data/ and logs/; the shared claims/ folder (CLAIMS_DIR);
                its backup in /etc/cron.d/polymarket-bot-backup-NAME; with --mode systemd the
                template unit systemd/polymarket-bot@.service, polymarket-bot@NAME enabled (the
                plain unit is not installed); with --mode docker, add the account's service to
                docker-compose.accounts.yml. HEALTH_PORT: --health-port, else the one already in
                the instance's .env, else the lowest port from 8081 up that no other instance's
                .env (nor the checkout's .env, 8080 by default) uses.

Options:
  --mode MODE          docker or systemd (required; never run both on one database)
  --admin-user USER    the human operator's login [default: $SUDO_USER, else ubuntu]
  --backup-s3-uri URI  e.g. s3://my-bucket/polybot/ (the instance role needs s3:PutObject there)
  --no-cloudwatch      skip the CloudWatch agent
  --no-sysctl          skip the kernel TCP settings
  --instance NAME      set up the account NAME (lower-case letters, digits, - and _; 1-32)
  --health-port PORT   the instance's health port (default: chosen as above)
  --destdir DIR        write only the instance's files, under DIR instead of /, as the invoking
                       user, and print the system commands instead of running them (no root;
                       for review and tests; needs --instance)
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
INSTANCE=""
HEALTH_PORT=""
DESTDIR=""

while [ $# -gt 0 ]; do
    case "$1" in
        --mode) [ $# -ge 2 ] || { usage >&2; exit 2; }; MODE="$2"; shift 2 ;;
        --admin-user) [ $# -ge 2 ] || { usage >&2; exit 2; }; ADMIN_USER="$2"; shift 2 ;;
        --backup-s3-uri) [ $# -ge 2 ] || { usage >&2; exit 2; }; BACKUP_S3_URI="$2"; shift 2 ;;
        --no-cloudwatch) WITH_CLOUDWATCH=0; shift ;;
        --no-sysctl) WITH_SYSCTL=0; shift ;;
        --instance) [ $# -ge 2 ] || { usage >&2; exit 2; }; INSTANCE="$2"; shift 2 ;;
        --health-port) [ $# -ge 2 ] || { usage >&2; exit 2; }; HEALTH_PORT="$2"; shift 2 ;;
        --destdir) [ $# -ge 2 ] || { usage >&2; exit 2; }; DESTDIR="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "setup-ec2.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

log() { echo "setup-ec2.sh: $*"; }
die() { echo "setup-ec2.sh: $*" >&2; exit 1; }

case "$MODE" in docker|systemd) ;; *) echo "setup-ec2.sh: --mode docker or --mode systemd" >&2; exit 2 ;; esac
case "$BACKUP_S3_URI" in ''|s3://*) ;; *) die "--backup-s3-uri must start with s3://" ;; esac
# The same rule as polybot's INSTANCE setting (polybot/config.py): it names a unit, folders,
# backups, alarms and a metric label.
if [ -n "$INSTANCE" ] && ! [[ "$INSTANCE" =~ ^[a-z0-9][a-z0-9_-]{0,31}$ ]]; then
    echo "setup-ec2.sh: --instance must be 1-32 lower-case letters, digits, - or _, starting with a letter or digit, got '$INSTANCE'" >&2
    exit 2
fi
if [ -n "$HEALTH_PORT" ]; then
    [ -n "$INSTANCE" ] || { echo "setup-ec2.sh: --health-port goes with --instance" >&2; exit 2; }
    if ! [[ "$HEALTH_PORT" =~ ^[0-9]{4,5}$ ]] || [ "$HEALTH_PORT" -lt 1024 ] || [ "$HEALTH_PORT" -gt 65535 ]; then
        echo "setup-ec2.sh: --health-port must be a port from 1024 to 65535, got '$HEALTH_PORT'" >&2
        exit 2
    fi
fi
[ -z "$DESTDIR" ] || [ -n "$INSTANCE" ] || { echo "setup-ec2.sh: --destdir goes with --instance" >&2; exit 2; }

APP_DIR="$(cd "$(dirname "$0")/.." && pwd)"
[ -f "$APP_DIR/pyproject.toml" ] || die "$APP_DIR is not a polybot checkout"
if [ -n "$DESTDIR" ]; then
    mkdir -p "$DESTDIR"
    DESTDIR="$(cd "$DESTDIR" && pwd)"
fi
ROOT="$DESTDIR"             # where files go: / normally, DESTDIR for a review
INSTANCES="$APP_DIR/instances"
CLAIMS_DIR="$APP_DIR/claims"

# Runs a command that changes the system, or shows it under --destdir.
sys_run() {
    if [ -n "$DESTDIR" ]; then
        printf 'setup-ec2.sh: would run:'; printf ' %q' "$@"; printf '\n'
    else
        "$@"
    fi
}

# HEALTH_PORT=... in an env file, or nothing (a plain lookup: the file is data, never sourced).
env_port() {
    sed -n 's/^[[:space:]]*HEALTH_PORT=["'\'']\{0,1\}\([0-9]*\).*/\1/p' "$1" 2>/dev/null | tail -n 1
}

# The instance's health port: --health-port, else the one its .env already has, else the lowest
# from 8081 that no other instance's .env and not the checkout's .env (default 8080) uses. Ports
# come from the env files, not from what listens now: a stopped instance keeps its port.
choose_port() {
    local env_file="$ROOT$INSTANCES/$INSTANCE/.env" single="" used other port
    if [ -z "$HEALTH_PORT" ] && [ -f "$env_file" ]; then
        HEALTH_PORT="$(env_port "$env_file")"
    fi
    if [ -f "$ROOT$APP_DIR/.env" ]; then single="$(env_port "$ROOT$APP_DIR/.env")"; fi
    used="${single:-8080}"
    for other in "$ROOT$INSTANCES"/*/.env; do
        [ -f "$other" ] || continue
        [ "$other" = "$env_file" ] && continue
        used="$used $(env_port "$other")"
    done
    if [ -n "$HEALTH_PORT" ]; then
        for port in $used; do
            [ "$port" != "$HEALTH_PORT" ] || die "health port $HEALTH_PORT is already another bot's on this host"
        done
        return
    fi
    port=8081
    while [[ " $used " == *" $port "* ]]; do port=$((port + 1)); done
    HEALTH_PORT="$port"
}

# The account's folder, laid out like a single bot's checkout (so backup.sh/restore.sh take it as
# --bot-dir): .env, data/, logs/; and the claims folder all instances share.
setup_instance() {
    local dir="$ROOT$INSTANCES/$INSTANCE" owner=() admin=()
    if [ -z "$DESTDIR" ]; then
        owner=(-o "$BOT_USER" -g "$BOT_USER")
        admin=(-o "$ADMIN_USER" -g "$BOT_USER")
    fi
    choose_port
    log "account $INSTANCE in $INSTANCES/$INSTANCE, health port $HEALTH_PORT"
    install -d -m 0755 "$ROOT$INSTANCES"
    install -d "${admin[@]}" -m 0750 "$dir"
    install -d "${owner[@]}" -m 0750 "$dir/data" "$dir/logs" "$ROOT$CLAIMS_DIR"
    if [ ! -e "$dir/.env" ]; then
        [ -f "$APP_DIR/.env.example" ] || die "no .env.example in $APP_DIR"
        # INSTANCE here only for `polybot check` and the scripts: the unit sets it from its name.
        sed -e "s/^INSTANCE=.*/INSTANCE=$INSTANCE/" -e "s/^HEALTH_PORT=.*/HEALTH_PORT=$HEALTH_PORT/" \
            "$APP_DIR/.env.example" > "$dir/.env.new"
        grep -q "^INSTANCE=$INSTANCE\$" "$dir/.env.new" || echo "INSTANCE=$INSTANCE" >> "$dir/.env.new"
        grep -q "^HEALTH_PORT=$HEALTH_PORT\$" "$dir/.env.new" || echo "HEALTH_PORT=$HEALTH_PORT" >> "$dir/.env.new"
        install "${admin[@]}" -m 0640 "$dir/.env.new" "$dir/.env"
        rm -f "$dir/.env.new"
        log "created $INSTANCES/$INSTANCE/.env from .env.example: fill in this account's keys before starting it"
    else
        [ "$(env_port "$dir/.env")" = "$HEALTH_PORT" ] \
            || die "$INSTANCES/$INSTANCE/.env has HEALTH_PORT=$(env_port "$dir/.env"), not $HEALTH_PORT: edit it or drop --health-port"
        if [ -z "$DESTDIR" ]; then
            chown "$ADMIN_USER:$BOT_USER" "$dir/.env"
        fi
        chmod 0640 "$dir/.env"
    fi
}

install_instance_unit() {
    install -d -m 0755 "$ROOT/etc/systemd/system"
    sed "s#/opt/polymarket-bot#$APP_DIR#g" "$APP_DIR/systemd/polymarket-bot@.service" \
        > "$ROOT/etc/systemd/system/polymarket-bot@.service"
    chmod 0644 "$ROOT/etc/systemd/system/polymarket-bot@.service"
    sys_run systemctl daemon-reload
    sys_run systemctl enable "polymarket-bot@$INSTANCE"
}

# The CloudWatch agent's configuration for every bot on this host: the single bot's (the
# checkout's logs/ and health port) and each account's in instances/ (its logs/ as log streams
# <instance-id>/NAME/bot and .../trades, its HEALTH_PORT as one more scrape target; its series
# carry bot_instance=NAME, which the agent's second metric_declaration turns into a dimension).
# Written whole from cloudwatch/ each time, so adding an account rewrites it with all of them.
cloudwatch_config() {
    local etc="$1"
    install -d -m 0755 "$etc"
    python3 - "$APP_DIR" "$ROOT" "$etc" <<'PY'
import json
import pathlib
import re
import sys

app, root, etc = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
home = pathlib.Path(root + app)
src = pathlib.Path(app) / "cloudwatch"


def port(env_file):
    found = re.findall(r"^\s*HEALTH_PORT=[\"']?(\d+)", env_file.read_text(), re.M)
    return found[-1] if found else "8080"


config = json.loads((src / "amazon-cloudwatch-agent.json").read_text().replace(
    "/opt/polymarket-bot", app))
files = config["logs"]["logs_collected"]["files"]["collect_list"]
single = [dict(entry) for entry in files]
instances = sorted(p.parent.name for p in (home / "instances").glob("*/.env"))
targets = []
if (home / ".env").exists() or not instances:
    targets.append("127.0.0.1:" + (port(home / ".env") if (home / ".env").exists() else "8080"))
for name in instances:
    for entry in single:
        files.append({**entry,
                      "file_path": entry["file_path"].replace(f"{app}/logs/",
                                                              f"{app}/instances/{name}/logs/"),
                      "log_stream_name": entry["log_stream_name"].replace(
                          "{instance_id}/", "{instance_id}/" + name + "/")})
    targets.append("127.0.0.1:" + port(home / "instances" / name / ".env"))
(etc / "amazon-cloudwatch-agent.json").write_text(json.dumps(config, indent=2) + "\n")
prometheus = (src / "prometheus.yaml").read_text()
assert "          - 127.0.0.1:8080\n" in prometheus
(etc / "prometheus.yaml").write_text(prometheus.replace(
    "          - 127.0.0.1:8080\n", "".join(f"          - {t}\n" for t in targets)))
PY
}

if [ -n "$DESTDIR" ]; then
    log "--destdir $DESTDIR: the account's files only, nothing else on this system changes"
    setup_instance
    if [ "$MODE" = systemd ]; then install_instance_unit; fi
    if [ "$WITH_CLOUDWATCH" -eq 1 ]; then
        cloudwatch_config "$ROOT/opt/aws/amazon-cloudwatch-agent/etc"
        sys_run /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl \
            -a fetch-config -m ec2 -s -c "file:/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json"
    fi
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "run with sudo"
id "$ADMIN_USER" >/dev/null 2>&1 || die "no such user: $ADMIN_USER (see --admin-user)"

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
install -d -o "$BOT_USER" -g "$BOT_USER" -m 0700 "$BACKUP_DIR"
install -d -o "$BOT_USER" -g "$BOT_USER" -m 0750 /var/log/polymarket-bot
if [ -n "$INSTANCE" ]; then
    # an account of its own: no checkout-level .env, logs/ or data/ (no single bot here)
    setup_instance
elif [ ! -e "$APP_DIR/.env" ]; then
    install -d -o "$BOT_USER" -g "$BOT_USER" -m 0750 "$APP_DIR/logs" "$APP_DIR/data"
    [ -f "$APP_DIR/.env.example" ] || die "no .env and no .env.example in $APP_DIR"
    install -o "$ADMIN_USER" -g "$BOT_USER" -m 0640 "$APP_DIR/.env.example" "$APP_DIR/.env"
    log "created $APP_DIR/.env from .env.example: fill it in before starting the bot"
else
    install -d -o "$BOT_USER" -g "$BOT_USER" -m 0750 "$APP_DIR/logs" "$APP_DIR/data"
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
    if [ -n "$INSTANCE" ]; then
        install_instance_unit
    else
        sed "s#/opt/polymarket-bot#$APP_DIR#g" "$APP_DIR/systemd/polymarket-bot.service" \
            > /etc/systemd/system/polymarket-bot.service
        chmod 0644 /etc/systemd/system/polymarket-bot.service
        systemctl daemon-reload
        systemctl enable polymarket-bot
    fi
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
    cloudwatch_config "$etc"
    /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl \
        -a fetch-config -m ec2 -s -c "file:$etc/amazon-cloudwatch-agent.json"
fi

log "daily backup"
CRON=/etc/cron.d/polymarket-bot-backup
BOT_DIR="$APP_DIR"
if [ -n "$INSTANCE" ]; then
    # one cron file per account (archives named polybot-backup-NAME-<time>, see backup.sh)
    CRON="/etc/cron.d/polymarket-bot-backup-$INSTANCE"
    BOT_DIR="$INSTANCES/$INSTANCE"
fi
{
    echo "# polybot daily backup (scripts/backup.sh); written by scripts/setup-ec2.sh"
    echo "SHELL=/bin/bash"
    echo "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    [ -z "$BACKUP_S3_URI" ] || echo "BACKUP_S3_URI=$BACKUP_S3_URI"
    echo "15 0 * * * $BOT_USER $APP_DIR/scripts/backup.sh --bot-dir $BOT_DIR >>/var/log/polymarket-bot/backup.log 2>&1"
} > "$CRON"
chmod 0644 "$CRON"
if [ -n "$BACKUP_S3_URI" ] && ! command -v aws >/dev/null 2>&1; then
    log "note: BACKUP_S3_URI is set but the aws CLI is missing: sudo snap install aws-cli --classic"
fi

if [ -n "$INSTANCE" ]; then
    log "done. Next: edit $INSTANCES/$INSTANCE/.env (this account's own keys, TRADING_MODE=paper first), then"
    if [ "$MODE" = docker ]; then
        log "  add service $INSTANCE to docker-compose.accounts.yml (health port $HEALTH_PORT), then"
        log "  docker compose -f docker-compose.accounts.yml up -d --build"
    else
        log "  sudo systemctl start polymarket-bot@$INSTANCE && journalctl -u polymarket-bot@$INSTANCE -f"
    fi
    log "  and scripts/create-alarms.sh --instance $INSTANCE --sns-topic-arn ..."
elif [ "$MODE" = docker ]; then
    log "done. Next: edit $APP_DIR/.env (TRADING_MODE=paper first), then"
    log "  log out and in again (docker group), cd $APP_DIR && docker compose up -d --build"
else
    log "done. Next: edit $APP_DIR/.env (TRADING_MODE=paper first), then"
    log "  sudo systemctl start polymarket-bot && journalctl -u polymarket-bot -f"
fi
