#!/usr/bin/env bash
# Back up polybot's state: a consistent online copy of the SQLite database, the logs, and the
# configuration with its secrets redacted; optionally upload to S3; keep 7 days locally.
#
# Daily at 00:15 UTC, as the user that owns the database (install as /etc/cron.d/polymarket-bot-backup;
# scripts/setup-ec2.sh does this):
#   15 0 * * * polybot /opt/polymarket-bot/scripts/backup.sh >>/var/log/polymarket-bot/backup.log 2>&1
#
# Why not `tar data/`: the bot keeps writing its database (WAL mode) while it runs; a file copy can
# catch the main file and its -wal at different moments and restore as a corrupt or silently older
# database. SQLite's online backup API copies a single committed snapshot while the bot goes on
# writing. It must run as the database's owner: opening a WAL database may create its -wal/-shm
# side files, and root-owned side files would lock the bot out of its own database.
#
# The .env is NOT copied as is: it holds the exchange private key. The archive gets config.env with
# every secret-looking value (names containing KEY, SECRET, TOKEN, WEBHOOK or PASSWORD, except
# *_FILE paths) replaced by REDACTED. Keep the real secrets in a password manager or AWS Secrets
# Manager; restore.sh never overwrites .env.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: backup.sh [--bot-dir DIR] [--backup-dir DIR] [--retention-days N] [--help]

Writes BACKUP_DIR/polybot-backup-YYYYmmddTHHMMSSZ.tar.gz (polybot-backup-NAME-YYYY...Z.tar.gz
for the account NAME when INSTANCE is set: several accounts on one host share BACKUP_DIR) with
  polybot.db      online SQLite backup of DATA_DIR/polybot.db (integrity-checked)
  logs/           copy of the bot's log folder (bot.log, trades.log and their rotations)
  config.env      BOT_DIR/.env with secret values replaced by REDACTED
  MANIFEST        what, when, from where, which instance, sha256 of polybot.db
then uploads it to $BACKUP_S3_URI (e.g. s3://my-bucket/polybot/) when that is set, and deletes
local archives older than the retention period, its own (this INSTANCE's) only. Runs while the
bot runs. For an account: --bot-dir /opt/polymarket-bot/instances/NAME (setup-ec2.sh --instance
writes that cron line).

Options (environment variables in brackets):
  --bot-dir DIR          the bot's working directory [BOT_DIR, default /opt/polymarket-bot]
  --backup-dir DIR       where archives go [BACKUP_DIR, default /var/backups/polymarket-bot]
  --retention-days N     local archives kept this many days [BACKUP_RETENTION_DAYS, default 7]
  -h, --help             this text
DATA_DIR (relative to BOT_DIR, default data) and INSTANCE are read from the environment, else
from BOT_DIR/.env.
Python 3 with its sqlite3 module is required [PYTHON, default python3]; the aws CLI only for S3.
Exit status: 0 done, 1 failed (nothing partial is left in BACKUP_DIR), 2 bad usage.
USAGE
}

die() { echo "backup.sh: $*" >&2; exit 1; }

BOT_DIR="${BOT_DIR:-/opt/polymarket-bot}"
BACKUP_DIR="${BACKUP_DIR:-/var/backups/polymarket-bot}"
RETENTION_DAYS="${BACKUP_RETENTION_DAYS:-7}"
PYTHON="${PYTHON:-python3}"

while [ $# -gt 0 ]; do
    case "$1" in
        --bot-dir) [ $# -ge 2 ] || { usage >&2; exit 2; }; BOT_DIR="$2"; shift 2 ;;
        --backup-dir) [ $# -ge 2 ] || { usage >&2; exit 2; }; BACKUP_DIR="$2"; shift 2 ;;
        --retention-days) [ $# -ge 2 ] || { usage >&2; exit 2; }; RETENTION_DAYS="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "backup.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

case "$RETENTION_DAYS" in
    ''|*[!0-9]*) echo "backup.sh: --retention-days must be a whole number of days, got '$RETENTION_DAYS'" >&2; exit 2 ;;
esac
[ -d "$BOT_DIR" ] || die "bot directory not found: $BOT_DIR"
BOT_DIR="$(cd "$BOT_DIR" && pwd)"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (needed for SQLite's online backup)"

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
DB="$DATA_DIR/polybot.db"
LOG_DIR="$BOT_DIR/logs"
[ -f "$DB" ] || die "database not found: $DB"
INSTANCE="${INSTANCE:-$(env_file_value INSTANCE)}"
if [ -n "$INSTANCE" ] && ! [[ "$INSTANCE" =~ ^[a-z0-9][a-z0-9_-]{0,31}$ ]]; then
    die "INSTANCE='$INSTANCE' is not an instance name (polybot check says why)"
fi

if [ "$(id -u)" -eq 0 ] && [ "$(stat -c %u "$DB")" -ne 0 ]; then
    die "run as the database's owner ($(stat -c %U "$DB")), not root: root-owned -wal/-shm files would lock the bot out (e.g. sudo -u $(stat -c %U "$DB") $0)"
fi

umask 077
mkdir -p "$BACKUP_DIR"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
# The time right after the name: retention below tells an account's archives from another's
# (and from the single bot's) by this exact shape.
NAME="polybot-backup-${INSTANCE:+$INSTANCE-}$STAMP"
STAMP_GLOB="[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z"
WORK="$(mktemp -d "$BACKUP_DIR/.tmp-$NAME.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/$NAME"
mkdir -p "$STAGE"

# 1. Database: one snapshot through the backup API, then made a self-contained file (rollback
#    journal mode, so the copy has no -wal of its own) and checked.
"$PYTHON" - "$DB" "$STAGE/polybot.db" <<'PY'
import sqlite3
import sys

source_path, target_path = sys.argv[1], sys.argv[2]
source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)
target = sqlite3.connect(target_path)
with target:
    source.backup(target)  # pages=-1: the whole database in one step, i.e. one consistent snapshot
source.close()
target.execute("PRAGMA journal_mode=DELETE")
result = target.execute("PRAGMA integrity_check").fetchone()[0]
target.close()
if result != "ok":
    sys.exit(f"backup.sh: integrity check of the copy failed: {result}")
PY

# 2. Logs: copied first, then archived, so a rotation during the backup cannot fail tar.
if [ -d "$LOG_DIR" ]; then
    mkdir -p "$STAGE/logs"
    cp -p "$LOG_DIR"/* "$STAGE/logs/" 2>/dev/null || true
fi

# 3. Configuration, secrets redacted: NAME=value lines whose name looks secret (commented-out ones
#    too: an old key is still a key), and any line that is not a plain assignment or comment (a
#    multi-line value could be a key).
if [ -r "$BOT_DIR/.env" ]; then
    awk '
        /^[[:space:]]*$/ { print; next }
        match($0, /^[[:space:]#]*(export[[:space:]]+)?[A-Za-z_][A-Za-z0-9_]*=/) {
            head = substr($0, 1, RLENGTH)
            name = head
            sub(/^[[:space:]#]*(export[[:space:]]+)?/, "", name)
            sub(/=$/, "", name)
            upper = toupper(name)
            if (upper ~ /(KEY|SECRET|TOKEN|WEBHOOK|PASSWORD)/ && upper !~ /_FILE$/) print head "REDACTED"
            else print
            next
        }
        /^[[:space:]]*#/ { print; next }
        { print "# (line removed by backup.sh: not a NAME=value line)" }
    ' "$BOT_DIR/.env" > "$STAGE/config.env"
fi

DB_SHA="$(sha256sum "$STAGE/polybot.db" | cut -d' ' -f1)"
{
    echo "created_utc=$STAMP"
    echo "host=$(hostname)"
    echo "bot_dir=$BOT_DIR"
    echo "instance=$INSTANCE"
    echo "database=$DB"
    echo "polybot_db_sha256=$DB_SHA"
    # The checkout belongs to the operator, not to the user running this: tell git that is fine.
    if commit="$(git -c safe.directory="$BOT_DIR" -C "$BOT_DIR" rev-parse HEAD 2>/dev/null)"; then
        echo "code_commit=$commit"
    fi
} > "$STAGE/MANIFEST"

ARCHIVE="$BACKUP_DIR/$NAME.tar.gz"
tar -C "$WORK" -czf "$WORK/$NAME.tar.gz" "$NAME"
mv "$WORK/$NAME.tar.gz" "$ARCHIVE"
echo "backup.sh: wrote $ARCHIVE (polybot.db sha256 $DB_SHA)"

# 4. Off the machine. A failed upload fails the run (cron mails it) but keeps the local archive.
if [ -n "${BACKUP_S3_URI:-}" ]; then
    command -v aws >/dev/null 2>&1 || die "BACKUP_S3_URI is set but the aws CLI is not installed; local archive kept: $ARCHIVE"
    aws s3 cp --only-show-errors "$ARCHIVE" "${BACKUP_S3_URI%/}/$NAME.tar.gz" \
        || die "upload to ${BACKUP_S3_URI%/}/ failed; local archive kept: $ARCHIVE"
    echo "backup.sh: uploaded to ${BACKUP_S3_URI%/}/$NAME.tar.gz"
fi

# 5. Retention: only our own archives (this INSTANCE's, or the single bot's), by age in minutes
#    (find's -mtime rounds to whole days).
find "$BACKUP_DIR" -maxdepth 1 -type f -name "polybot-backup-${INSTANCE:+$INSTANCE-}$STAMP_GLOB.tar.gz" \
    -mmin +"$((RETENTION_DAYS * 24 * 60))" -print -delete \
    | sed 's/^/backup.sh: removed old /'
