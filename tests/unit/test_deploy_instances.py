"""Several accounts on one host (issue 17 item 4): the systemd template unit, setup-ec2.sh
--instance, the two-account compose example, per-instance alarms, CloudWatch and backups.

The template is checked against the plain unit it derives from: the same supervision and
hardening, with only the per-instance lines different, so a hardening fix to one that misses the
other fails here.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path, PurePosixPath

from polybot.config import VARIABLES
from tests.unit.test_deploy import systemd_analyze

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "polymarket-bot.service"
TEMPLATE = REPO / "systemd" / "polymarket-bot@.service"
APP = "/opt/polymarket-bot"
DEFAULTS = {v.name: v.default for v in VARIABLES}
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
