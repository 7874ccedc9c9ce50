"""The operator's kill switch and resume request: files in `DATA_DIR`, polled by the bot.

The bot stays the only writer of its own state, so an operator (the CLI's `halt` and `resume`,
which work with the bot down) leaves files and the running bot's operator-control task acts on
them:

- `DATA_DIR/KILL`: trading is HALTED while it exists (and a bot started while it exists starts
  halted). The control task polls it every `POLL_SECONDS`, so a kill is seen within 0.5 s; the
  trading state flips to HALTED synchronously in that poll, so no order is approved after it.
- `DATA_DIR/RESUME`: a one-shot request, consumed (deleted) by the bot, that clears a drawdown
  halt and an operator's flatten and re-bases the high-water mark.

These are the only file reads on the trading side, and they happen here, not in the risk gate's
per-order check.
"""

from __future__ import annotations

from pathlib import Path

import attrs

KILL_FILE = "KILL"
RESUME_FILE = "RESUME"
POLL_SECONDS = 0.25


@attrs.frozen(slots=True)
class FileSignals:
    """What one poll of `DATA_DIR` saw."""

    kill: bool
    kill_reason: str
    resume: bool


def poll_files(data_dir: Path) -> FileSignals:
    """Read the kill switch and consume a resume request (the bot side)."""
    kill_path = data_dir / KILL_FILE
    try:
        reason = kill_path.read_text(encoding="utf-8").strip()
        kill = True
    except FileNotFoundError:
        reason, kill = "", False
    except OSError:  # unreadable, but there: a kill switch fails closed
        reason, kill = "", True
    resume = False
    try:
        (data_dir / RESUME_FILE).unlink()
        resume = True
    except FileNotFoundError:
        pass
    return FileSignals(kill=kill, kill_reason=reason[:200], resume=resume)


def write_kill_file(data_dir: Path | str, reason: str = "") -> Path:
    """Create DATA_DIR/KILL: the bot halts at once and stays halted while the file exists."""
    path = Path(data_dir) / KILL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((reason or "halted by operator") + "\n")
    return path


def remove_kill_file(data_dir: Path | str) -> bool:
    """Remove DATA_DIR/KILL; True if it existed."""
    try:
        (Path(data_dir) / KILL_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def resume(data_dir: Path | str) -> Path:
    """The operator's resume (CLI and dashboard): remove KILL and leave RESUME; returns RESUME."""
    remove_kill_file(data_dir)
    return write_resume_request(data_dir)


def write_resume_request(data_dir: Path | str) -> Path:
    """Leave DATA_DIR/RESUME for the bot to consume (clears a drawdown halt and a flatten)."""
    path = Path(data_dir) / RESUME_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("resume requested\n")
    return path
