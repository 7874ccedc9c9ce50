"""`python -m polybot`: the command line.

Exit codes are part of the interface (systemd's `RestartPreventExitStatus=2 78` relies on them):
0 clean, 2 bad configuration, 3 not implemented, 4 an operator request written but not acknowledged
by a running bot, 73 another bot runs on the same DATA_DIR (`run` refused), 78 fatal and not worth
restarting (credentials rejected), anything else a crash.

Each command validates only the settings it needs: `report`, `halt` and `resume` read only
`DATA_DIR`, so they work in an emergency with a broken `.env`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from polybot import config, console
from polybot.claims import DataDirInUse
from polybot.errors import EXIT_CONFIG, EXIT_OK, fatal_unwrapped


def load_settings_or_exit(args: argparse.Namespace) -> config.Settings:
    """Full validation; on any problem print one line per problem and exit 2."""
    return console.settings_or_exit(config.environment(args.env_file))


def data_dir_or_exit(args: argparse.Namespace) -> Path:
    return console.data_dir_or_exit(args.env_file, getattr(args, "data_dir", None))


# --- commands -------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    settings = load_settings_or_exit(args)
    rows = settings.effective()
    width = max(len(name) for name, _ in rows)
    print("polybot: configuration is valid. Effective settings (secrets shown as ***):")
    for name, shown in rows:
        print(f"  {name:<{width}} = {shown}")
    if settings.opticodds_api_key is None:
        print("note: OPTICODDS_API_KEY is not set: the bot will run but cannot price, so it never trades")
    return EXIT_OK


# Commands import what they need when they run, so `report`, `halt` and `resume` start fast and
# never depend on the trading stack importing cleanly.


def cmd_run(args: argparse.Namespace) -> int:
    if args.sim:  # the demo: its own settings, no .env
        from polybot import demo

        return demo.run_demo(duration=args.duration, seed=args.seed, live=args.live,
                             data_dir=Path(args.data_dir) if args.data_dir else None,
                             record_dir=Path(args.record) if args.record else None,
                             speed=args.speed if args.speed is not None else demo.DEMO_SPEED)
    from polybot import app

    return app.main(args)


def cmd_sim(args: argparse.Namespace) -> int:
    from polybot.sim import harness

    return harness.main(list(args.sim_args))


def cmd_report(args: argparse.Namespace) -> int:
    from polybot import report

    data_dir = data_dir_or_exit(args)
    if args.html is None:
        return report.main(data_dir, as_json=args.json)
    # the caps drawn against: this environment's (the store does not keep a run's own)
    env = config.environment(args.env_file)
    return report.main(data_dir, as_json=args.json, html=Path(args.html),
                       caps=config.load_risk_caps(env),
                       caps_source="the RISK_* settings of the environment `report` ran in, "
                                   "defaults where unset; the store does not keep the caps a run "
                                   "used")


def cmd_backtest(args: argparse.Namespace) -> int:
    from polybot import backtest

    if args.grid:
        if args.html is not None:
            print("backtest: --html draws one replay's page; drop it with --grid (a sweep prints "
                  "one row per combination)", file=sys.stderr)
            return 2
        from polybot import grid

        return grid.main(Path(args.recording), list(args.set), list(args.grid), start=args.start,
                         stop=args.stop, jobs=args.jobs, as_json=args.json)
    html_data = None
    if args.html is not None:  # the replay's page is drawn by `report`, from the replay's store
        from polybot import report

        html_data = report.html_data
    return backtest.main(Path(args.recording), list(args.set), start=args.start, stop=args.stop,
                         as_json=args.json, html=None if args.html is None else Path(args.html),
                         html_data=html_data)


def cmd_halt(args: argparse.Namespace) -> int:
    from polybot import operator

    return operator.halt(data_dir_or_exit(args))


def cmd_resume(args: argparse.Namespace) -> int:
    from polybot import operator

    return operator.resume(data_dir_or_exit(args))


def cmd_cancel_all(args: argparse.Namespace) -> int:
    from polybot import operator

    if args.direct:
        env = config.environment(args.env_file)
        return operator.cancel_all_direct(console.settings_without_markets_or_exit(env))
    return operator.cancel_all(data_dir_or_exit(args))


def cmd_flatten(args: argparse.Namespace) -> int:
    from polybot import operator

    return operator.flatten(data_dir_or_exit(args))


DEFAULT_HTML_REPORT = "report.html"  # in the current folder (docs/design-notes.md "HTML report")
DEFAULT_BACKTEST_HTML = "backtest-report.html"  # the name, in the current folder


# --- parser ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env-file", type=Path, default=None, metavar="PATH",
                        help="read settings from this .env file (default: ./.env if present); "
                             "the real environment wins over the file")
    p = argparse.ArgumentParser(
        prog="polybot",
        description="Polymarket US sports trading bot: fair value from sportsbook odds, "
                    "fractional Kelly sizing, hard risk limits, paper or live.",
        epilog="Exit codes: 0 ok, 2 bad configuration, 3 not implemented, 4 not acknowledged by a "
               "running bot, 73 DATA_DIR in use by another bot, 78 fatal (credentials rejected).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", parents=[common], help="run the bot (paper or live, per TRADING_MODE)",
                         description="Run the supervised bot. With --sim: no configuration and no "
                                     "network needed; starts a local exchange and odds feed "
                                     "in-process and trades them in paper mode.")
    run.add_argument("--sim", action="store_true",
                     help="run against the bundled local exchange and odds feed (ignores .env)")
    run.add_argument("--duration", type=float, default=None, metavar="S",
                     help="with --sim: stop after S seconds and print a summary")
    run.add_argument("--seed", type=int, default=1, metavar="N", help="with --sim: scenario seed")
    run.add_argument("--speed", type=float, default=None, metavar="X",
                     help="with --sim: run the local world and the bot X times faster than real "
                          "time on one clock (default 20; 1 = real time)")
    run.add_argument("--live", action="store_true",
                     help="with --sim: live mode (real REST orders) against the local exchange")
    run.add_argument("--data-dir", default=None, metavar="DIR",
                     help="with --sim: keep state here instead of a temporary directory")
    run.add_argument("--record", default=None, metavar="DIR",
                     help="record the raw feeds into DIR (overrides RECORD_DIR; also with --sim)")
    run.add_argument("--sim-credentials", type=Path, default=None, metavar="FILE",
                     help="point an ordinary run at a `polybot sim` started separately "
                          "(URLs, keys, and MARKET_SLUGS when unset)")
    run.set_defaults(func=cmd_run)

    sim = sub.add_parser("sim", add_help=False, help="run the local Polymarket US exchange "
                         "(and local OpticOdds) standalone; `polybot sim --help` for options")
    sim.add_argument("sim_args", nargs=argparse.REMAINDER)
    sim.set_defaults(func=cmd_sim)

    check = sub.add_parser("check", parents=[common], help="validate the settings and print them "
                           "(secrets shown as ***)")
    check.set_defaults(func=cmd_check)

    report = sub.add_parser("report", parents=[common], help="P&L, positions, fees, rejections and "
                            "closing-line value from the database (needs only DATA_DIR)")
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report.add_argument("--html", nargs="?", const=DEFAULT_HTML_REPORT, default=None,
                        metavar="PATH", help="write the report as one self-contained HTML file "
                        f"with charts (default {DEFAULT_HTML_REPORT}; opens offline)")
    report.add_argument("--data-dir", default=None, metavar="DIR", help="override DATA_DIR")
    report.set_defaults(func=cmd_report)

    backtest = sub.add_parser(
        "backtest", help="replay a recording (RECORD_DIR, run --record) through the whole bot in "
        "paper mode: orders, fills and the ledger it ends with (deterministic)")
    backtest.add_argument("recording", metavar="RECORDING", help="the recording's directory")
    backtest.add_argument("--from", dest="start", default=None, metavar="T",
                          help="replay the feeds from this wall time (ISO 8601; UTC if no zone)")
    backtest.add_argument("--to", dest="stop", default=None, metavar="T",
                          help="replay the feeds up to this wall time (ISO 8601)")
    backtest.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                          help="override one of the recording's settings (repeatable)")
    backtest.add_argument("--json", action="store_true",
                          help="print JSON (byte-identical for the same recording and settings)")
    backtest.add_argument("--html", nargs="?", const=DEFAULT_BACKTEST_HTML, default=None,
                          metavar="PATH", help="also write the replay's report as one "
                          f"self-contained HTML file with charts (default {DEFAULT_BACKTEST_HTML};"
                          " opens offline)")
    backtest.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                          help="sweep: one replay per combination of the values (repeatable), "
                          "across processes; one row each, sorted by P&L (values that are lists: separate "
                          "them with ';')")
    backtest.add_argument("--jobs", type=int, default=None, metavar="N",
                          help="with --grid: processes to use (default: every core)")
    backtest.set_defaults(func=cmd_backtest)

    halt = sub.add_parser("halt", parents=[common], help="halt trading now (creates DATA_DIR/KILL; "
                          "works with the bot down, and then holds from its next start)")
    halt.add_argument("--data-dir", default=None, metavar="DIR", help="override DATA_DIR")
    halt.set_defaults(func=cmd_halt)

    resume = sub.add_parser("resume", parents=[common], help="remove the kill file and ask the bot "
                            "to clear a drawdown halt")
    resume.add_argument("--data-dir", default=None, metavar="DIR", help="override DATA_DIR")
    resume.set_defaults(func=cmd_resume)

    cancel_all = sub.add_parser("cancel-all", parents=[common], help="ask the running bot to cancel "
                                "its open orders (trading goes on; use halt to pause)")
    cancel_all.add_argument("--direct", action="store_true",
                            help="without a running bot (and without MARKET_SLUGS): cancel the bot's "
                                 "own open orders recorded in its store, by order id, and confirm "
                                 "each (orders the bot did not place are left alone)")
    cancel_all.set_defaults(func=cmd_cancel_all)

    flatten = sub.add_parser("flatten", parents=[common], help="ask the running bot to close every "
                             "position in the configured markets with IOC orders")
    flatten.set_defaults(func=cmd_flatten)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sim":  # the simulator owns its own options, --help included
        return cmd_sim(argparse.Namespace(sim_args=argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with fatal_unwrapped(DataDirInUse):  # the demo runs the bot inside the sim's nursery
            return int(args.func(args))
    except config.ConfigError as exc:
        console.config_problems(exc)
        return EXIT_CONFIG
    except DataDirInUse as exc:  # a second bot on one DATA_DIR: one line, nothing touched
        print(f"polybot: refused: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
