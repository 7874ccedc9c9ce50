#!/usr/bin/env bash
# Restore polybot's database (and optionally its logs) from an archive made by backup.sh.
#
# The bot must be stopped: a database replaced under a running bot is overwritten by its next
# write, or worse, mixed with it. The current database is never deleted: it and its -wal/-shm side
# files and intent journal (-intents) are moved to DATA_DIR/pre-restore-<time>/. Moving the side
# files matters: a stale -wal left next to the restored file would be replayed into it by SQLite
# on the next open and corrupt it; a stale journal would add intents of another history.
# .env is never overwritten (the archive holds a redacted copy only).
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: restore.sh [--bot-dir DIR] [--with-logs] [--force] [--any-instance] ARCHIVE

ARCHIVE is a polybot-backup-*.tar.gz made by backup.sh, a local path or an s3:// URI (fetched with
the aws CLI). Steps: check the archive (sha256 from its MANIFEST, SQLite integrity check), check
that the bot is not running, move the current DATA_DIR/polybot.db and its -wal/-shm aside to
DATA_DIR/pre-restore-<time>/, install the archived database, and write the archived (redacted)
configuration to BOT_DIR/config.env.restored-<time> for comparison. Then start the bot.

Options (environment variables in brackets):
  --bot-dir DIR   the bot's working directory [BOT_DIR, default /opt/polymarket-bot]
  --with-logs     also unpack the archived logs into LOG_DIR/restored-<time>/ (the live log
                  files are never touched: the running bot is their only writer)
  --force         skip the "is the bot running?" checks (systemd unit, Docker container, health
                  port); only when you know it is stopped
  --any-instance  restore an archive of another INSTANCE (or of the single bot) into this one:
                  refused otherwise, since the database holds its account's orders and positions
  -h, --help      this text
DATA_DIR, HEALTH_PORT and INSTANCE are read from the environment, else from BOT_DIR/.env
(defaults: data, 8080, none). For an account: --bot-dir /opt/polymarket-bot/instances/NAME; the
running checks then look at polymarket-bot@NAME and the container polymarket-bot-NAME. Python 3 with sqlite3 is required [PYTHON, default python3].
Exit status: 0 restored, 1 failed (the current database untouched unless it says otherwise),
2 bad usage, 3 the bot is running.
USAGE
}

die() { echo "restore.sh: $*" >&2; exit 1; }

BOT_DIR="${BOT_DIR:-/opt/polymarket-bot}"
PYTHON="${PYTHON:-python3}"
WITH_LOGS=0
FORCE=0
ANY_INSTANCE=0
ARCHIVE=""

while [ $# -gt 0 ]; do
    case "$1" in
        --bot-dir) [ $# -ge 2 ] || { usage >&2; exit 2; }; BOT_DIR="$2"; shift 2 ;;
        --with-logs) WITH_LOGS=1; shift ;;
        --force) FORCE=1; shift ;;
        --any-instance) ANY_INSTANCE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "restore.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
        *) [ -z "$ARCHIVE" ] || { echo "restore.sh: one archive only" >&2; exit 2; }; ARCHIVE="$1"; shift ;;
    esac
done
[ -n "$ARCHIVE" ] || { echo "restore.sh: which archive? (see --help)" >&2; exit 2; }
[ -d "$BOT_DIR" ] || die "bot directory not found: $BOT_DIR"
BOT_DIR="$(cd "$BOT_DIR" && pwd)"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"

# A plain KEY=value lookup in .env, never `source`: the file is data, not a script to execute.
env_file_value() {
    local name="$1" file="$BOT_DIR/.env" line value
    [ -r "$file" ] || return 0
    line="$(grep -E "^[[:space:]]*(export[[:space:]]+)?${name}=" "$file" | tail -n 1 || true)"
    [ -n "$line" ] || return 0
    value="${line#*=}"
    value="${value%\"}"; value="${value#\"}"
    value="${value%\'}"; value="${value#\'}"
    printf '%s' "$value"
}

DATA_DIR="${DATA_DIR:-$(env_file_value DATA_DIR)}"
DATA_DIR="${DATA_DIR:-data}"
case "$DATA_DIR" in /*) ;; *) DATA_DIR="$BOT_DIR/$DATA_DIR" ;; esac
HEALTH_PORT="${HEALTH_PORT:-$(env_file_value HEALTH_PORT)}"
HEALTH_PORT="${HEALTH_PORT:-8080}"
INSTANCE="${INSTANCE:-$(env_file_value INSTANCE)}"
if [ -n "$INSTANCE" ] && ! [[ "$INSTANCE" =~ ^[a-z0-9][a-z0-9_-]{0,31}$ ]]; then
    die "INSTANCE='$INSTANCE' is not an instance name (polybot check says why)"
fi
UNIT="polymarket-bot${INSTANCE:+@$INSTANCE}"
CONTAINER="polymarket-bot${INSTANCE:+-$INSTANCE}"
LOG_DIR="$BOT_DIR/logs"
DB="$DATA_DIR/polybot.db"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"

# --- Is the bot running? -------------------------------------------------------------------------
bot_running_reason() {
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$UNIT" 2>/dev/null; then
        echo "systemd unit $UNIT is active (sudo systemctl stop $UNIT)"; return
    fi
    if command -v docker >/dev/null 2>&1 \
        && [ -n "$(docker ps -q --filter name="^$CONTAINER\$" 2>/dev/null || true)" ]; then
        echo "container $CONTAINER is running (docker stop $CONTAINER)"; return
    fi
    # Any HTTP answer at all, even 503, means a bot is there.
    if "$PYTHON" - "$HEALTH_PORT" <<'PY'
import sys
import urllib.error
import urllib.request

try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2)
except urllib.error.HTTPError:
    sys.exit(0)
except OSError:
    sys.exit(1)
sys.exit(0)
PY
    then
        echo "something answers on 127.0.0.1:$HEALTH_PORT/health (stop the bot first)"; return
    fi
}

if [ "$FORCE" -eq 0 ]; then
    reason="$(bot_running_reason)"
    if [ -n "$reason" ]; then
        echo "restore.sh: refusing to restore while the bot runs: $reason" >&2
        exit 3
    fi
fi

# --- Fetch and check the archive -------------------------------------------------------------------
mkdir -p "$DATA_DIR"
WORK="$(mktemp -d "$DATA_DIR/.restore-$STAMP.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

case "$ARCHIVE" in
    s3://*)
        command -v aws >/dev/null 2>&1 || die "the aws CLI is needed to fetch $ARCHIVE"
        aws s3 cp --only-show-errors "$ARCHIVE" "$WORK/archive.tar.gz" || die "could not fetch $ARCHIVE"
        LOCAL_ARCHIVE="$WORK/archive.tar.gz"
        ;;
    *)
        [ -f "$ARCHIVE" ] || die "archive not found: $ARCHIVE"
        LOCAL_ARCHIVE="$ARCHIVE"
        ;;
esac

mkdir "$WORK/x"
tar -C "$WORK/x" -xzf "$LOCAL_ARCHIVE" --no-same-owner || die "cannot unpack $ARCHIVE"
set -- "$WORK"/x/polybot-backup-*/
[ $# -eq 1 ] && [ -d "$1" ] || die "$ARCHIVE is not a backup.sh archive (no single polybot-backup-* folder)"
SRC="${1%/}"
[ -f "$SRC/polybot.db" ] || die "$ARCHIVE holds no polybot.db"

# An archive of another account would hand this bot that account's orders and positions.
archived_instance="$(sed -n 's/^instance=//p' "$SRC/MANIFEST" 2>/dev/null || true)"
if [ "$archived_instance" != "$INSTANCE" ] && [ "$ANY_INSTANCE" -eq 0 ]; then
    die "$ARCHIVE is a backup of ${archived_instance:+instance }${archived_instance:-the single bot}, this is ${INSTANCE:+instance }${INSTANCE:-the single bot} ($BOT_DIR): pass --any-instance if that is what you mean"
fi

if [ -f "$SRC/MANIFEST" ]; then
    want="$(sed -n 's/^polybot_db_sha256=//p' "$SRC/MANIFEST")"
    got="$(sha256sum "$SRC/polybot.db" | cut -d' ' -f1)"
    [ -z "$want" ] || [ "$want" = "$got" ] || die "polybot.db does not match the sha256 in MANIFEST: the archive is damaged"
fi
"$PYTHON" - "$SRC/polybot.db" <<'PY' || die "the archived database fails SQLite's integrity check"
import sqlite3
import sys

connection = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
result = connection.execute("PRAGMA integrity_check").fetchone()[0]
connection.close()
sys.exit(0 if result == "ok" else f"integrity_check: {result}")
PY

# --- Swap the database in ---------------------------------------------------------------------------
# Stage the new file next to its destination (same filesystem), then rename: the database path
# never holds a half-copied file.
cp "$SRC/polybot.db" "$DATA_DIR/.polybot.db.restoring"
if [ "$(id -u)" -eq 0 ]; then
    chown --reference="$DATA_DIR" "$DATA_DIR/.polybot.db.restoring"
fi
chmod 0640 "$DATA_DIR/.polybot.db.restoring"

ASIDE=""
# -intents: the bot's intent journal (polybot/journal.py); replayed into the restored database it
# would add intents of another history
for f in "$DB" "$DB-wal" "$DB-shm" "$DB-journal" "$DB-intents"; do
    if [ -e "$f" ]; then
        ASIDE="$DATA_DIR/pre-restore-$STAMP"
        mkdir -p "$ASIDE"
        mv "$f" "$ASIDE/"
    fi
done
mv "$DATA_DIR/.polybot.db.restoring" "$DB"
echo "restore.sh: restored $DB from $ARCHIVE"
[ -z "$ASIDE" ] || echo "restore.sh: the previous database is kept in $ASIDE"

# --- Logs and configuration, for reference only ------------------------------------------------------
if [ "$WITH_LOGS" -eq 1 ] && [ -d "$SRC/logs" ]; then
    mkdir -p "$LOG_DIR/restored-$STAMP"
    cp -p "$SRC"/logs/* "$LOG_DIR/restored-$STAMP/" 2>/dev/null || true
    if [ "$(id -u)" -eq 0 ]; then chown -R --reference="$LOG_DIR" "$LOG_DIR/restored-$STAMP"; fi
    echo "restore.sh: archived logs are in $LOG_DIR/restored-$STAMP"
fi
if [ -f "$SRC/config.env" ]; then
    (umask 077; cp "$SRC/config.env" "$BOT_DIR/config.env.restored-$STAMP")
    echo "restore.sh: archived configuration (secrets redacted) is in $BOT_DIR/config.env.restored-$STAMP; .env was not changed"
fi
echo "restore.sh: check it with 'python -m polybot report' (DATA_DIR=$DATA_DIR), then start the bot"
