"""The composition root of `python -m polybot run`: settings in, the supervised process run.

The components are built by `polybot.components` and driven by `polybot.runtime`; the money path
is the trading engine's (`polybot.engine`). This module only turns the command line and the
environment into Settings, configures logging and runs the process.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import trio

from polybot.config import load_settings
from polybot.errors import EXIT_CONFIG, EXIT_CREDENTIALS, FatalCredentialsError
from polybot.logs import configure_from_settings
from polybot.runtime import run_bot

log = logging.getLogger("polybot.app")


# --- the `run` command -----------------------------------------------------------------------------


def main(args: Any) -> int:
    """`python -m polybot run` (called by polybot.cli)."""
    from polybot import cli

    if args.sim:
        from polybot.demo import run_demo

        return run_demo(duration=args.duration, seed=args.seed, live=args.live,
                        data_dir=Path(args.data_dir) if args.data_dir else None)
    env = cli._env(args)
    if args.sim_credentials is not None:
        env.update(credentials_env(args.sim_credentials, env))
    try:
        settings = load_settings(env, warn=lambda w: cli._err(f"polybot: warning: {w}"))
    except Exception as exc:
        from polybot.config import ConfigError

        if isinstance(exc, ConfigError):
            for problem in exc.problems:
                cli._err(f"polybot: bad setting: {problem}")
            return EXIT_CONFIG
        raise
    configure_from_settings(settings)
    try:
        return trio.run(run_bot, settings)
    except FatalCredentialsError as exc:
        log.critical("credentials rejected: %s", exc)
        return EXIT_CREDENTIALS


def credentials_env(path: Path, env: dict[str, str]) -> dict[str, str]:
    """Settings from a `polybot sim --credentials-file` JSON (MARKET_SLUGS only when unset)."""
    creds = json.loads(Path(path).read_text(encoding="utf-8"))
    out = {
        "PM_API_KEY_ID": creds["key_id"],
        "PM_PRIVATE_KEY": creds["secret_key"],
        "PM_BASE_URL": creds["api_url"],
        "PM_GATEWAY_URL": creds["gateway_url"],
        "PM_WS_URL": creds["ws_url"],
    }
    if not env.get("MARKET_SLUGS"):
        out["MARKET_SLUGS"] = ",".join(creds["markets"])
    if creds.get("opticodds_url"):
        out["OPTICODDS_BASE_URL"] = creds["opticodds_url"]
        out["OPTICODDS_API_KEY"] = creds["opticodds_key"]
    return out
