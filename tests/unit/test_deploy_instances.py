"""Several accounts on one host (issue 17 item 4): the systemd template unit, setup-ec2.sh
--instance, the two-account compose example, per-instance alarms, CloudWatch and backups.

The template is checked against the plain unit it derives from: the same supervision and
hardening, with only the per-instance lines different, so a hardening fix to one that misses the
other fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from polybot import claims, config
from polybot.config import VARIABLES
from tests.unit.test_deploy import dockerignore_patterns, dockerignored, systemd_analyze

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "polymarket-bot.service"
TEMPLATE = REPO / "systemd" / "polymarket-bot@.service"
APP = "/opt/polymarket-bot"
DEFAULTS = {v.name: v.default for v in VARIABLES}
KEYS = {"PM_API_KEY_ID": "0b6bbf3c-3c1a-4c43-9a37-6a3f4a0d1c2e",
        "PM_PRIVATE_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "MARKET_SLUGS": "aec-x"}
# the lines that name the instance; every other directive is the plain unit's
PER_INSTANCE = {"Description", "WorkingDirectory", "EnvironmentFile", "ExecStart",
                "ReadWritePaths", "SyslogIdentifier"}


def directives(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def instantiate(tmp_path: Path, name: str) -> Path:
    """A stand-in checkout with one instance's folders, and the template rewritten to it as
    setup-ec2.sh does for a checkout outside /opt/polymarket-bot: verify checks the paths."""
    app = tmp_path / "app"
    (app / "venv" / "bin").mkdir(parents=True)
    (app / "venv" / "bin" / "python").symlink_to(sys.executable)
    for sub in ("data", "logs"):
        (app / "instances" / name / sub).mkdir(parents=True)
    (app / "instances" / name / ".env").write_text("")
    (app / "claims").mkdir()
    units = tmp_path / "units"
    units.mkdir()
    (units / TEMPLATE.name).write_text(TEMPLATE.read_text().replace(APP, str(app)))
    return units / f"polymarket-bot@{name}.service"


# --- the template unit ---------------------------------------------------------------------------


def test_template_unit_passes_systemd_analyze_verify_for_an_instance(tmp_path):
    analyze = systemd_analyze()
    unit = instantiate(tmp_path, "alice")
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    output = result.stdout + result.stderr
    complaints = [line for line in output.splitlines() if "polymarket-bot@" in line]
    assert result.returncode == 0 and not complaints, output


def test_template_unit_fails_verify_when_its_command_does_not_exist(tmp_path):
    """The check above can fail: the same verify, with a command that is not there."""
    analyze = systemd_analyze()
    unit = instantiate(tmp_path, "alice")
    broken = (unit.parent / TEMPLATE.name).read_text().replace("/usr/bin/env ", "/usr/bin/no-env ")
    (unit.parent / TEMPLATE.name).write_text(broken)
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0 and "no-env" in result.stdout + result.stderr


def test_template_has_the_plain_units_supervision_and_hardening_line_for_line():
    plain, template = directives(UNIT), directives(TEMPLATE)
    assert set(plain) == set(template)
    for key in set(plain) - PER_INSTANCE:
        assert template[key] == plain[key], key


def test_template_runs_the_plain_units_command_with_its_name_and_the_shared_claims_forced():
    (plain,) = directives(UNIT)["ExecStart"]
    (exec_start,) = directives(TEMPLATE)["ExecStart"]
    argv = shlex.split(exec_start)
    # env(1) sets them after EnvironmentFile=, which would override Environment=
    assert argv[:3] == ["/usr/bin/env", "INSTANCE=%i", f"CLAIMS_DIR={APP}/claims"]
    assert argv[3:] == shlex.split(plain)


def test_each_instance_writes_only_its_own_folders_and_the_shared_claims():
    d = directives(TEMPLATE)
    (workdir,) = d["WorkingDirectory"]
    assert workdir == f"{APP}/instances/%i"
    assert d["EnvironmentFile"] == [f"{workdir}/.env"]
    writable = {PurePosixPath(p) for line in d["ReadWritePaths"] for p in line.split()}
    assert writable == {
        (PurePosixPath(workdir) / DEFAULTS["LOG_FILE"]).parent,
        (PurePosixPath(workdir) / DEFAULTS["TRADES_LOG_FILE"]).parent,
        PurePosixPath(workdir) / DEFAULTS["DATA_DIR"],
        PurePosixPath(APP) / "claims",
    }
    assert d["SyslogIdentifier"] == ["polymarket-bot@%i"]
    assert "%i" in d["Description"][0]


def test_the_ci_script_installs_systemd_analyze_and_makes_its_absence_a_failure():
    ci = (REPO / ".ci" / "run").read_text()
    assert "chromium-driver systemd" in ci
    assert "\nexport POLYBOT_CI=1\n" in ci
    assert ci.index("export POLYBOT_CI=1") < ci.index("pytest -q")


# --- setup-ec2.sh --instance -----------------------------------------------------------------------


def setup(destdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "scripts" / "setup-ec2.sh"), "--mode", "systemd", "--destdir", str(destdir),
         *args], capture_output=True, text=True, timeout=30)


def instance_env(destdir: Path, name: str) -> dict[str, str]:
    path = destdir / str(REPO).lstrip("/") / "instances" / name / ".env"
    return config.environment(path, environ={})


def test_setup_instance_gives_each_account_its_env_folders_and_a_health_port_of_its_own(tmp_path):
    first = setup(tmp_path, "--instance", "alice")
    assert first.returncode == 0, first.stderr
    assert "would run: systemctl enable polymarket-bot@alice" in first.stdout
    assert setup(tmp_path, "--instance", "bob").returncode == 0
    alice, bob = instance_env(tmp_path, "alice"), instance_env(tmp_path, "bob")
    # 8080 is the single bot's; each account the lowest free port above it
    assert (alice["INSTANCE"], alice["HEALTH_PORT"]) == ("alice", "8081")
    assert (bob["INSTANCE"], bob["HEALTH_PORT"]) == ("bob", "8082")
    # .env.example's every other line, and the result is a configuration the bot accepts
    example = config.environment(REPO / ".env.example", environ={})
    assert {k: v for k, v in alice.items() if k not in ("INSTANCE", "HEALTH_PORT")} == {
        k: v for k, v in example.items() if k not in ("INSTANCE", "HEALTH_PORT")}
    settings = config.load_settings({**alice, **KEYS})
    assert (settings.instance, settings.health_port) == ("alice", 8081)
    home = tmp_path / str(REPO).lstrip("/")
    for name in ("alice", "bob"):
        for sub in ("data", "logs"):
            assert (home / "instances" / name / sub).is_dir()
        assert (home / "instances" / name / ".env").stat().st_mode & 0o777 == 0o640
    assert (home / "claims").is_dir()
    unit = (tmp_path / "etc" / "systemd" / "system" / TEMPLATE.name).read_text()
    assert unit == TEMPLATE.read_text().replace(APP, str(REPO))


def test_setup_instance_again_keeps_the_accounts_env_and_port_and_refuses_a_taken_port(tmp_path):
    assert setup(tmp_path, "--instance", "alice").returncode == 0
    env_file = tmp_path / str(REPO).lstrip("/") / "instances" / "alice" / ".env"
    env_file.write_text(env_file.read_text() + "PM_API_KEY_ID=filled-in-by-the-operator\n")
    again = setup(tmp_path, "--instance", "alice")
    assert again.returncode == 0, again.stderr
    assert "filled-in-by-the-operator" in env_file.read_text()  # never overwritten
    assert instance_env(tmp_path, "alice")["HEALTH_PORT"] == "8081"

    taken = setup(tmp_path, "--instance", "bob", "--health-port", "8081")
    assert taken.returncode == 1
    assert "health port 8081 is already another bot's" in taken.stderr
    assert not (env_file.parent.parent / "bob" / ".env").exists()
    chosen = setup(tmp_path, "--instance", "bob", "--health-port", "9100")
    assert chosen.returncode == 0, chosen.stderr
    assert instance_env(tmp_path, "bob")["HEALTH_PORT"] == "9100"


@pytest.mark.parametrize("args", [["--instance", "Alice"], ["--instance", "a/b"],
                                  ["--instance", ""], ["--health-port", "8081"],
                                  ["--instance", "alice", "--health-port", "80"]])
def test_setup_refuses_a_bad_instance_name_or_port_with_usage_exit_code(tmp_path, args):
    result = setup(tmp_path, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert not (tmp_path / str(REPO).lstrip("/") / "instances").exists()


# --- the two-account compose example ----------------------------------------------------------------


def compose(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())["services"]


PER_SERVICE = {"container_name", "env_file", "environment", "volumes", "ports"}


def test_compose_accounts_runs_each_account_like_the_single_bot_with_its_own_files_and_port():
    single = compose("docker-compose.yml")["bot"]
    accounts = compose("docker-compose.accounts.yml")
    assert len(accounts) >= 2
    (workdir,) = [line.split()[1] for line in (REPO / "Dockerfile").read_text().splitlines()
                  if line.startswith("WORKDIR ")]
    data_dirs: list[str] = []
    for name, service in accounts.items():
        # restart, logging, healthcheck, grace period, memory: the single bot's, key for key
        assert {k: v for k, v in service.items() if k not in PER_SERVICE} == {
            k: v for k, v in single.items() if k not in PER_SERVICE}
        assert service["container_name"] == f"polymarket-bot-{name}"
        assert service["env_file"] == [f"instances/{name}/.env"]
        env = service["environment"]
        assert env["INSTANCE"] == name
        assert {k: v for k, v in env.items() if k not in ("INSTANCE", "CLAIMS_DIR", "DATA_DIR")} \
            == {k: v for k, v in single["environment"].items() if k != "DATA_DIR"}
        mounts = dict(v.split(":")[::-1] for v in service["volumes"])  # container -> host
        data_dir = f"{workdir}/{env['DATA_DIR']}"
        assert mounts == {"/app/logs": f"./instances/{name}/logs",
                          data_dir: f"./instances/{name}/data",
                          env["CLAIMS_DIR"]: "./claims"}
        data_dirs.append(data_dir)
        (port,) = service["ports"]
        host, _host_port, container_port = port.split(":")
        assert host == "127.0.0.1" and container_port == env["HEALTH_PORT"]
    # nothing an account writes is another's; the claims are everyone's
    host_ports = [s["ports"][0].split(":")[1] for s in accounts.values()]
    assert len(set(host_ports)) == len(accounts) and "8080" not in host_ports
    data = [s["volumes"][1].split(":")[0] for s in accounts.values()]
    assert len(set(data)) == len(accounts)
    # a claim names its owner by the resolved DATA_DIR (polybot.claims.instance_id): inside
    # their containers too, no two accounts may resolve to the same one
    assert len({claims.instance_id(Path(d)) for d in data_dirs}) == len(accounts)
    assert len({s["environment"]["CLAIMS_DIR"] for s in accounts.values()}) == 1


def test_compose_accounts_host_ports_are_the_ones_setup_gives_in_order(tmp_path):
    accounts = compose("docker-compose.accounts.yml")
    for name in accounts:
        assert setup(tmp_path, "--instance", name).returncode == 0
        assert instance_env(tmp_path, name)["HEALTH_PORT"] == \
            accounts[name]["ports"][0].split(":")[1]


def test_the_accounts_files_stay_out_of_git_and_out_of_the_image_build_context(tmp_path):
    paths = ["instances/alice/.env", "instances/alice/data/polybot.db", "claims/x"]
    # the repository's .gitignore in a repository of its own: the check holds in an exported
    # tree (git archive, the image's build context) as well as in a clone
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copy(REPO / ".gitignore", tmp_path / ".gitignore")
    ignored = subprocess.run(["git", "-C", str(tmp_path), "check-ignore", "--no-index", *paths],
                             capture_output=True, text=True)
    assert ignored.stdout.split() == paths
    patterns = dockerignore_patterns()
    assert all(dockerignored(patterns, p) for p in paths)


# --- alarms and CloudWatch per instance ------------------------------------------------------------


def alarms(tmp_path: Path, *args: str) -> list[list[str]]:
    """create-alarms.sh's aws calls, recorded by a stand-in aws CLI as JSON lines."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls.jsonl"
    calls.unlink(missing_ok=True)
    fake = bin_dir / "aws"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import json, sys; "
                    f"print(json.dumps(sys.argv[1:]))' \"$@\" >> {calls}\n")
    fake.chmod(0o755)
    result = subprocess.run(
        [str(REPO / "scripts" / "create-alarms.sh"), "--sns-topic-arn",
         "arn:aws:sns:us-east-1:123456789012:bot", "--instance-id", "i-0123456789abcdef0", *args],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in calls.read_text().splitlines()]


def option(argv: list[str], name: str) -> list[str]:
    """The values after option `name` up to the next option."""
    i = argv.index(name) + 1
    out = []
    while i < len(argv) and not argv[i].startswith("--"):
        out.append(argv[i])
        i += 1
    return out


def test_alarms_per_instance_read_only_that_bots_series_under_names_of_their_own(tmp_path):
    single = alarms(tmp_path)
    alice = alarms(tmp_path, "--instance", "alice")
    names = [option(c, "--alarm-name")[0] for c in alice]
    assert names == ["polymarket-bot-high-cpu", "polymarket-bot-status-check",  # the host's
                     "polymarket-bot-alice-health", "polymarket-bot-alice-trading-halted",
                     "polymarket-bot-alice-daily-loss-near-limit"]
    assert alice[:2] == single[:2]  # the host alarms: the same call, updated in place
    dims = [{"Name": "job", "Value": "polybot"}, {"Name": "bot_instance", "Value": "alice"}]
    for call in alice[2:4]:
        assert option(call, "--dimensions") == ["Name=job,Value=polybot",
                                                "Name=bot_instance,Value=alice"]
    queries = json.loads(option(alice[4], "--metrics")[0])
    assert [q["MetricStat"]["Metric"]["Dimensions"] for q in queries if "MetricStat" in q] == \
        [dims, dims]
    # what the agent publishes for an instance's series: exactly these dimensions
    assert agent_dimensions("alice") == [(n, "job", "bot_instance") for n in sorted(BOT_METRICS)]
    # without --instance nothing changed: the single bot's job=polybot alarms
    assert option(single[2], "--dimensions") == ["Name=job,Value=polybot"]
    assert option(single[2], "--alarm-name") == ["polymarket-bot-health"]


BOT_METRICS = {"polybot_up", "polybot_trading_halted", "polybot_daily_pnl_usd",
               "polybot_daily_loss_limit_usd", "polybot_equity_usd", "polybot_restarts_total",
               "polybot_usd_at_risk"}


def agent_dimensions(bot: str) -> list[tuple[str, ...]]:
    """(metric, *dimensions) the agent publishes for a bot's series ("" = the single bot, no
    bot_instance label): what each metric_declaration matching its labels selects. The
    declarations' source labels are joined with ";" and a missing label is empty."""
    agent = json.loads((REPO / "cloudwatch" / "amazon-cloudwatch-agent.json").read_text())
    section = agent["logs"]["metrics_collected"]["prometheus"]["emf_processor"]
    labels = {"job": "polybot", "bot_instance": bot}
    out = []
    for name in sorted(BOT_METRICS):
        series = [{**labels, "scope": scope} for scope in ("portfolio", "market")] \
            if name == "polybot_usd_at_risk" else [labels]
        for series_labels in series:
            for d in section["metric_declaration"]:
                joined = ";".join(series_labels.get(label, "") for label in d["source_labels"])
                if re.fullmatch(d["label_matcher"], joined) and \
                        any(re.search(s, name) for s in d["metric_selectors"]):
                    for dims in d["dimensions"]:
                        out.append((name, *dims))
    return out


def test_the_agent_publishes_each_bots_series_once_under_its_own_dimensions():
    single, alice = agent_dimensions(""), agent_dimensions("alice")
    assert single == [(name, "job") for name in sorted(BOT_METRICS)]  # as before instances
    assert alice == [(name, "job", "bot_instance") for name in sorted(BOT_METRICS)]


def test_alarms_refuse_a_bad_instance_name(tmp_path):
    result = subprocess.run(
        [str(REPO / "scripts" / "create-alarms.sh"), "--sns-topic-arn",
         "arn:aws:sns:us-east-1:123456789012:bot", "--instance-id", "i-0123456789abcdef0",
         "--instance", "Alice", "--dry-run"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "--instance must be" in result.stderr


def test_setup_instance_has_the_agent_ship_each_accounts_logs_and_scrape_its_port(tmp_path):
    for name in ("alice", "bob"):
        assert setup(tmp_path, "--instance", name).returncode == 0
    etc = tmp_path / "opt" / "aws" / "amazon-cloudwatch-agent" / "etc"
    agent = json.loads((etc / "amazon-cloudwatch-agent.json").read_text())
    streams = {e["log_stream_name"]: e["file_path"]
               for e in agent["logs"]["logs_collected"]["files"]["collect_list"]}
    for name in ("alice", "bob"):
        for log in ("bot", "trades"):
            assert streams[f"{{instance_id}}/{name}/{log}"] == \
                f"{REPO}/instances/{name}/logs/{log}.log"
    (job,) = yaml.safe_load((etc / "prometheus.yaml").read_text())["scrape_configs"]
    # the accounts' ports only: no checkout .env here, so no single bot on 8080
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8081", "127.0.0.1:8082"]
    assert job["job_name"] == "polybot"
