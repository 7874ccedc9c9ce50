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

from polybot import console
from polybot.config import environment
from polybot.errors import EXIT_CREDENTIALS, FatalCredentialsError
from polybot.logs import configure_from_settings
from polybot.runtime import run_bot

log = logging.getLogger("polybot.app")


# --- the `run` command -----------------------------------------------------------------------------


def main(args: Any) -> int:
    """`python -m polybot run` (called by polybot.cli, which runs `--sim` itself)."""
    env = environment(args.env_file)
    if args.sim_credentials is not None:
        env.update(credentials_env(args.sim_credentials, env))
    if getattr(args, "record", None):  # `run --record DIR` wins over RECORD_DIR
        env["RECORD_DIR"] = str(args.record)
    settings = console.settings_or_exit(env)
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
    if not env.get("MARKET_SLUGS") and not env.get("MARKET_LEAGUES"):
        out["MARKET_SLUGS"] = ",".join(creds["markets"])
    if creds.get("opticodds_url"):
        out["OPTICODDS_BASE_URL"] = creds["opticodds_url"]
        out["OPTICODDS_API_KEY"] = creds["opticodds_key"]
    return out
