"""The console side of a command: its environment, its settings, and its lines on stderr.

Shared by the command line (`cli`) and the composition roots (`app.main`), so neither imports the
other. Each command validates only the settings it needs: `report`, `halt` and `resume` read only
`DATA_DIR` (`data_dir_or_exit`), so they work in an emergency with a broken `.env`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from polybot import config
from polybot.errors import EXIT_CONFIG


def err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def config_problems(exc: config.ConfigError) -> None:
    """One stderr line per problem, the format every command uses."""
    for problem in exc.problems:
        err(f"polybot: bad setting: {problem}")


def settings_or_exit(env: Mapping[str, str], *, require_markets: bool = True) -> config.Settings:
    """Full validation; on any problem print one line per problem and exit 2."""
    try:
        return config.load_settings(env, warn=lambda w: err(f"polybot: warning: {w}"),
                                    require_markets=require_markets)
    except config.ConfigError as exc:
        config_problems(exc)
        raise SystemExit(EXIT_CONFIG) from None


def settings_without_markets_or_exit(env: Mapping[str, str]) -> config.Settings:
    """Full validation of everything but the markets to trade (for a command that trades
    nothing: `cancel-all --direct` cancels the stored orders by id)."""
    return settings_or_exit(env, require_markets=False)


def data_dir_or_exit(env_file: Path | None, override: str | None = None) -> Path:
    """`DATA_DIR` alone (the override first); on a problem print it and exit 2."""
    if override:
        return Path(override)
    try:
        return config.load_data_dir(config.environment(env_file))
    except config.ConfigError as exc:
        config_problems(exc)
        raise SystemExit(EXIT_CONFIG) from None
