"""The CLI as an operator meets it: a subprocess, its exit code, its stdout and stderr."""

import os
import subprocess
import sys
from pathlib import Path

SEED_B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
GOOD = {
    "PM_API_KEY_ID": "123e4567-e89b-12d3-a456-426614174000",
    "PM_PRIVATE_KEY": SEED_B64,
    "MARKET_SLUGS": "aec-nba-bos-nyk-2026-11-26",
    "OPTICODDS_API_KEY": "odds-key-abcdef",
    "DISCORD_WEBHOOK": "https://discord.test/api/webhooks/1/tok-xyz",
}


def polybot(args, cwd: Path, env_file: dict[str, str] | None = None, extra_env=None):
    env = {k: v for k, v in os.environ.items() if k not in GOOD and not k.startswith(("RISK_", "PM_"))}
    env.update(extra_env or {})
    if env_file is not None:
        (cwd / ".env").write_text("".join(f"{k}={v}\n" for k, v in env_file.items()))
    return subprocess.run([sys.executable, "-m", "polybot", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_check_with_a_valid_env_exits_0_and_prints_no_secret(tmp_path):
    r = polybot(["check"], tmp_path, env_file=GOOD)
    assert r.returncode == 0, r.stderr
    assert "MARKET_SLUGS" in r.stdout and "aec-nba-bos-nyk-2026-11-26" in r.stdout
    assert "PM_PRIVATE_KEY" in r.stdout and "***" in r.stdout
    for secret in (SEED_B64, "odds-key-abcdef", "tok-xyz"):
        assert secret not in r.stdout + r.stderr


def test_check_with_three_bad_variables_exits_2_with_exactly_three_lines(tmp_path):
    bad = dict(GOOD, RISK_KELLY_FRACTION="1.5", HEALTH_PORT="http", PM_PRIVATE_KEY="tooshort")
    r = polybot(["check"], tmp_path, env_file=bad)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3, r.stderr
    named = sorted(next(v for v in ("RISK_KELLY_FRACTION", "HEALTH_PORT", "PM_PRIVATE_KEY") if v in ln)
                   for ln in lines)
    assert named == ["HEALTH_PORT", "PM_PRIVATE_KEY", "RISK_KELLY_FRACTION"]
    assert "tooshort" not in r.stderr  # a bad secret is still not echoed
    assert r.stdout == ""


def test_env_file_option_and_real_environment_override(tmp_path):
    (tmp_path / "other.env").write_text("".join(f"{k}={v}\n" for k, v in GOOD.items()))
    r = polybot(["check", "--env-file", "other.env"], tmp_path, extra_env={"TRADING_MODE": "live"})
    assert r.returncode == 0, r.stderr
    assert "TRADING_MODE" in r.stdout and "= live" in r.stdout


def test_every_command_has_useful_help(tmp_path):
    for cmd in ("run", "check", "report", "halt", "resume", "cancel-all", "flatten"):
        r = polybot([cmd, "--help"], tmp_path)
        assert r.returncode == 0 and "usage: polybot " + cmd in r.stdout
    r = polybot(["--help"], tmp_path)
    assert r.returncode == 0 and "78" in r.stdout


def test_unknown_command_is_a_usage_error(tmp_path):
    r = polybot(["frobnicate"], tmp_path)
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_run_and_cancel_all_direct_with_bad_settings_exit_2_with_one_line_per_problem(tmp_path):
    # `run` validates in app.main and `cancel-all --direct` in the CLI: both through
    # polybot.console, so an operator sees the same lines as from `check`, before anything starts
    bad = dict(GOOD, RISK_KELLY_FRACTION="1.5", HEALTH_PORT="http")
    for args in (["run"], ["cancel-all", "--direct"]):
        r = polybot(args, tmp_path, env_file=bad)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 2 and all(ln.startswith("polybot: bad setting: ") for ln in lines), \
            (args, r.stderr)


def test_check_and_run_without_slugs_or_leagues_exit_2_with_one_line_saying_so(tmp_path):
    env = {k: v for k, v in GOOD.items() if k != "MARKET_SLUGS"}
    for command in (["check"], ["run"]):
        r = polybot(command, tmp_path, env_file=env)
        assert r.returncode == 2, (command, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert "MARKET_SLUGS and MARKET_LEAGUES are both unset" in lines[0]


def test_check_with_leagues_only_exits_0(tmp_path):
    env = {k: v for k, v in GOOD.items() if k != "MARKET_SLUGS"}
    r = polybot(["check"], tmp_path, env_file=dict(env, MARKET_LEAGUES="nba,cbb"))
    assert r.returncode == 0, r.stderr
    assert "nba,cbb" in r.stdout


def test_backtest_grid_with_html_is_refused_in_one_line_before_any_replay(tmp_path):
    # a sweep prints a row per combination; one page per combination is not what --html draws
    r = polybot(["backtest", str(tmp_path / "no-recording"), "--grid", "RISK_MIN_EDGE=0.02,0.05",
                 "--html"], tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "backtest: --html draws one replay's page; drop it with --grid (a sweep prints one row "
        "per combination)"]
    assert not (tmp_path / "backtest-report.html").exists()
