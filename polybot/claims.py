"""OS file locks that keep one bot per DATA_DIR and one trading instance per market.

Two instances must never write one store, and two instances of the same operator must never
trade one market: on a regulated exchange an order of one of your accounts filling against
another of yours is wash trading. Both rules are held by `fcntl.flock` on a file, taken with
`LOCK_NB` (a refusal comes back at once: the Trio loop never waits on a lock) and held by an
open file descriptor for as long as the process wants it. The kernel releases a flock when the
last descriptor closes, so a process that crashes or is SIGKILLed never leaves a stale lock
behind, and no lock file's content is ever trusted for the decision (it only names the holder
in the refusal's message).

- `DataDirLock`: `DATA_DIR/LOCK`, taken by `run` (`polybot.runtime.run_bot`) before the store
  is opened and held until the process ends. A second bot on the same DATA_DIR is refused with
  `DataDirInUse` (exit `EXIT_DATA_DIR_IN_USE`). The operator commands (`halt`, `resume`,
  `report`, `cancel-all`, `flatten`) never take it: they work beside the running bot.
- `MarketClaims`: one lock file per market in the shared `CLAIMS_DIR`. The engine claims a
  market the first time the gate approves an order there, and sends nothing to a market another
  instance holds (the rejection `claimed_elsewhere`; `/status` shows the market as not traded
  with the holder). A claim is kept while the market is in the universe and released when it
  retires (flat, no open order: `polybot.lifecycle`). The file names its owner (its DATA_DIR)
  and outlives the owner's process, so a market stays the owner's while it is stopped or
  crashed (a position must never be left to another instance, which could trade against it);
  at its next start the owner locks its files again before anything trades, keeps the markets
  it holds a position or an open order in, and releases the others. The lock makes taking a
  claim atomic; the owner's name makes it last.

Lock files of released claims are unlinked while still locked; `_lock` checks after each
`flock` that the path still names the inode it locked, so a racing opener of an unlinked file
never believes it holds the claim.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
from pathlib import Path

from polybot.errors import EXIT_DATA_DIR_IN_USE, FatalError

log = logging.getLogger(__name__)

LOCK_NAME = "LOCK"
CLAIM_RETRY_SECONDS = 5.0  # a market another instance holds is asked for again this often
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class DataDirInUse(FatalError):
    """Another process holds DATA_DIR/LOCK: this one must not write the store."""

    exit_code = EXIT_DATA_DIR_IN_USE


def _lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive flock on `path` (created if missing), or None
    when another open file holds it. Never blocks."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # unlinked by its releaser between our open and our flock: try afresh
            os.close(fd)
            continue
        return fd


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode("utf-8"), 0)


def _read(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode("utf-8", errors="replace")


def _holder(path: Path) -> str:
    """Who holds a lock, as its holder wrote it (best effort: the lock itself is the truth)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "another process"
    return text[:200] or "another process"


def instance_id(data_dir: Path) -> str:
    """Who an instance is, across its restarts: its DATA_DIR (one bot per DATA_DIR)."""
    return str(Path(data_dir).resolve())


class DataDirLock:
    """DATA_DIR/LOCK held by this process (`acquire` refuses with DataDirInUse)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / LOCK_NAME
        fd = _lock(path)
        if fd is None:
            raise DataDirInUse(f"DATA_DIR {data_dir} is in use by another polybot "
                               f"({_holder(path)}); one bot per DATA_DIR")
        _write(fd, f"pid {os.getpid()}")  # named in the refusal of a second bot
        return cls(path, fd)

    def release(self) -> None:
        """Close the descriptor (the kernel drops the lock; the file stays, harmless)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_file_name(slug: str) -> str:
    """The market's lock file name in CLAIMS_DIR: the slug itself when it is file-safe."""
    safe = _SAFE.sub("_", slug)
    if safe != slug or not safe or safe.startswith("."):
        safe = f"{safe.lstrip('.')[:80]}-{hashlib.sha256(slug.encode()).hexdigest()[:16]}"
    return f"{safe}.claim"


class MarketClaims:
    """The markets this instance may trade, against every instance sharing `directory`.

    A claim file holds its owner's identity (`instance_id`: its DATA_DIR) on its first line. It
    is locked while the owner runs and stays when the owner stops or crashes: a market is the
    owner's until the owner retires it (the file is then removed) or, at its next start, finds
    itself flat there (`keep_only`). Another instance may take a market only when the file is
    absent, or unlocked and naming no one.
    """

    def __init__(self, directory: Path, me: str, *, pid: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.me = me
        self._pid = os.getpid() if pid is None else pid
        self._held: dict[str, int] = {}  # slug -> the descriptor holding its lock
        self._refused: dict[str, tuple[float, str]] = {}  # slug -> (when, who holds it)

    def _path(self, slug: str) -> Path:
        return self.directory / claim_file_name(slug)

    def held(self, slug: str) -> bool:
        return slug in self._held

    def claim(self, slug: str, mono: float) -> bool:
        """Hold `slug` (True), or find another instance holding it (False, remembered: asked
        again only after CLAIM_RETRY_SECONDS). Never blocks."""
        if slug in self._held:
            return True
        if self.refused_recently(slug, mono):
            return False
        who = self._take(slug)
        if who:
            if slug not in self._refused:
                log.warning("market %s is claimed by another instance (%s): not traded here",
                            slug, who)
            self._refused[slug] = (mono, who)
            return False
        if self._refused.pop(slug, None) is not None:
            log.info("market %s claimed (the other instance let it go)", slug)
        return True

    def _take(self, slug: str) -> str:
        """"" when this instance now holds `slug`; else who holds it."""
        path = self._path(slug)
        fd = _lock(path)
        if fd is None:
            return f"{_owner(_holder(path))}, running"
        owner = _read(fd).split("\n", 1)[0].strip()
        if owner and owner != self.me:
            os.close(fd)
            return f"{owner}, not running: kept until it retires the market"
        _write(fd, f"{self.me}\npid {self._pid}, market {slug}\n")
        self._held[slug] = fd
        return ""

    def refused_recently(self, slug: str, mono: float) -> bool:
        """Another instance held `slug` when last asked, less than CLAIM_RETRY_SECONDS ago."""
        refused = self._refused.get(slug)
        return refused is not None and mono - refused[0] < CLAIM_RETRY_SECONDS

    def why_not(self, slug: str) -> str:
        """"" when held or never refused; else who held it when last asked (for /status)."""
        if slug in self._held:
            return ""
        refused = self._refused.get(slug)
        return "" if refused is None else f"claimed by another instance ({refused[1]})"

    def release(self, slug: str) -> None:
        """Let `slug` go (the market retired, or this instance is flat there at its start). The
        file is unlinked while still locked, so the next claimant creates it afresh (`_lock`)."""
        self._refused.pop(slug, None)
        fd = self._held.pop(slug, None)
        if fd is None:
            return
        try:
            self._path(slug).unlink(missing_ok=True)
        finally:
            os.close(fd)

    def keep_only(self, in_use: set[str]) -> list[str]:
        """At start: lock again every market this instance claimed before (its files name it),
        keep those in `in_use` (a position or an open order) and release the others. Returns
        the markets of `in_use` another instance holds (this one must not trade them)."""
        mine: list[str] = []
        for path in sorted(self.directory.glob("*.claim")):
            try:
                owner = path.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
            except OSError:
                continue
            slug = _slug_in(path)
            if owner.strip() == self.me and slug:
                mine.append(slug)
        for slug in mine:
            if self._take(slug) == "" and slug not in in_use:
                self.release(slug)  # flat there: free for any instance again
        lost = []
        for slug in sorted(in_use):
            if not self.claim(slug, 0.0):
                lost.append(slug)
        return lost

    def release_all(self) -> None:
        """The process is stopping: every lock goes (the kernel would do it at exit anyway);
        the files stay, naming this instance, so its markets wait for its restart."""
        for fd in self._held.values():
            os.close(fd)
        self._held.clear()
        self._refused.clear()

    def held_markets(self) -> set[str]:
        return set(self._held)

    def status(self) -> dict[str, object]:
        """For /status: the shared folder, the markets held here, and those another instance
        held when last asked (with who)."""
        return {"dir": str(self.directory), "instance": self.me, "held": sorted(self._held),
                "elsewhere": {slug: who for slug, (_, who) in sorted(self._refused.items())}}

    def market_keys(self) -> set[str]:
        return set(self._held) | set(self._refused)


def _owner(text: str) -> str:
    """A claim file's content as one line for a message: owner, then the rest."""
    return ", ".join(line.strip() for line in text.splitlines() if line.strip()) or "unknown"


def _slug_in(path: Path) -> str:
    """The market a claim file is for, from the `market SLUG` its owner wrote ("" if none)."""
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
            if ", market " in line:
                return line.rsplit(", market ", 1)[1].strip()
    except OSError:
        pass
    return ""
