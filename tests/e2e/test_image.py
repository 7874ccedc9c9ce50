"""The image's filesystem, built without Docker: the Dockerfile's own steps replayed.

There is no Docker daemon on CI, so this test reads the Dockerfile and does what it says: COPY the
listed sources (filtered by .dockerignore) into a stand-in for WORKDIR, apply its ENV, and run its
install RUN steps with a fresh virtualenv's `python`/`pip` first on PATH, as an unprivileged user,
exactly as written. The result must import from the virtualenv (not from the source tree) and
answer the image's CMD. Then the image's CMD runs from that filesystem, as that user, configured
only through environment variables (as `env_file: .env` does), against `python -m polybot sim`,
until the image's own HEALTHCHECK command succeeds; SIGTERM then stops it cleanly. A Dockerfile
edit that breaks the install or the entry point breaks this test.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNPRIVILEGED = "nobody"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def ignored(path: str) -> bool:
    from tests.unit.test_deploy import dockerignore_patterns, dockerignored

    return dockerignored(dockerignore_patterns(), path)


def copy_context(sources: list[str], dest: Path) -> None:
    """COPY src... dest, with the build context filtered by .dockerignore like Docker does."""
    for source in sources:
        src = REPO / source
        if src.is_dir():  # a folder's contents go into dest
            for path in sorted(src.rglob("*")):
                rel = path.relative_to(REPO)
                if path.is_file() and not ignored(str(rel)):
                    out = dest / path.relative_to(src)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, out)
        else:
            assert not ignored(source), f"{source} is COPY'd but .dockerignore drops it"
            shutil.copy2(src, dest / src.name if dest.is_dir() else dest)


def base_python() -> str | None:
    """A Python 3.11 the unprivileged user can execute (pyenv under /root is not)."""
    for candidate in (
        getattr(sys, "_base_executable", None),
        "/usr/bin/python3.11",
        shutil.which("python3.11"),
    ):
        if not candidate:
            continue
        probe = subprocess.run(
            ["runuser", "-u", UNPRIVILEGED, "--", candidate, "-c", "import sys, venv, ensurepip; assert sys.version_info[:2] == (3, 11)"],
            capture_output=True,
        )  # fmt: skip
        if probe.returncode == 0:
            return candidate
    return None


@pytest.mark.slow
def test_image_install_steps_build_a_working_venv_as_an_unprivileged_user():
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser to build as an unprivileged user")
    try:
        user = pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        pytest.skip(f"no '{UNPRIVILEGED}' user on this machine")
    python = base_python()
    if python is None:
        pytest.skip(f"no Python 3.11 with venv that '{UNPRIVILEGED}' can run")

    stage = Path(tempfile.mkdtemp(prefix="polybot-image-"))
    try:
        stage.chmod(0o755)
        workdir = stage / "app"
        workdir.mkdir()
        venv = stage / "venv"
        env = {
            **{k: v for k, v in os.environ.items() if k.startswith(("PIP_", "SSL_CERT")) or k.lower().endswith("_proxy")},
            "HOME": str(stage),
            "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        }  # fmt: skip
        installs = 0
        for word, rest in instructions():
            if word == "FROM":
                assert rest == "python:3.11-slim"
            elif word == "WORKDIR":
                assert rest == "/app"  # the stand-in above
            elif word == "ENV":
                env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
            elif word == "COPY":
                *sources, dest = rest.split()
                target = (
                    workdir / dest.removeprefix("./").rstrip("/")
                    if dest not in {".", "./"}
                    else workdir
                )
                if dest.endswith("/") or dest in {".", "./"}:
                    target.mkdir(parents=True, exist_ok=True)
                copy_context(sources, target)
            elif word == "RUN" and "pip install" in rest:
                if installs == 0:
                    shutil.chown(stage, user.pw_uid, user.pw_gid)
                    subprocess.run(
                        ["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(stage)], check=True
                    )
                    made = subprocess.run(
                        ["runuser", "-u", UNPRIVILEGED, "--", python, "-m", "venv", str(venv)],
                        capture_output=True, text=True,
                    )  # fmt: skip
                    assert made.returncode == 0, made.stderr
                subprocess.run(
                    ["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(workdir)], check=True
                )
                step = subprocess.run(
                    ["runuser", "-u", UNPRIVILEGED, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()], "sh", "-c", rest],
                    cwd=workdir, capture_output=True, text=True, timeout=600,
                )  # fmt: skip
                assert step.returncode == 0, (
                    f"RUN {rest}\n{step.stdout[-3000:]}\n{step.stderr[-3000:]}"
                )
                installs += 1
        assert installs >= 2, "expected a dependency layer and a package layer"

        def as_user(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
            return subprocess.run(
                ["runuser", "-u", UNPRIVILEGED, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()], *argv],
                cwd=cwd, capture_output=True, text=True, timeout=60,
            )  # fmt: skip

        # Installed into the venv, not merely importable from the copied source tree.
        where = as_user(
            "python", "-c", "import polybot, polybot.cli; print(polybot.__file__)", cwd=stage
        )
        assert where.returncode == 0, where.stderr
        assert where.stdout.strip().startswith(str(venv)), where.stdout
        # Every runtime dependency declared in pyproject.toml came from the dependency layer.
        check = as_user("pip", "check", cwd=stage)
        assert check.returncode == 0, check.stdout + check.stderr
        # The image's CMD, from WORKDIR, knows its subcommand.
        cmd = json.loads(next(rest for word, rest in instructions() if word == "CMD"))
        answered = as_user(*cmd, "--help", cwd=workdir)
        assert answered.returncode == 0, answered.stderr
        assert as_user("polybot", "--help", cwd=stage).returncode == 0  # the console script too

        run_image_cmd_against_the_sim(cmd, env, workdir, stage, user)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_image_cmd_against_the_sim(cmd: list[str], env: dict[str, str], workdir: Path,
                                  stage: Path, user: pwd.struct_passwd) -> None:
    creds_file = stage / "sim-credentials.json"
    sim = subprocess.Popen(
        [sys.executable, "-m", "polybot", "sim", "--port", "0", "--seed", "2",
         "--credentials-file", str(creds_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bot = None
    try:
        deadline = time.monotonic() + 30
        while not creds_file.exists():
            assert sim.poll() is None and time.monotonic() < deadline, "the sim did not start"
            time.sleep(0.1)
        creds = json.loads(creds_file.read_text())
        port = free_port()
        for folder in ("logs", "data"):
            (workdir / folder).mkdir(exist_ok=True)
            shutil.chown(workdir / folder, user.pw_uid, user.pw_gid)
        bot_env = {
            **env,
            "TRADING_MODE": "paper",
            "PM_API_KEY_ID": creds["key_id"], "PM_PRIVATE_KEY": creds["secret_key"],
            "PM_BASE_URL": creds["api_url"], "PM_GATEWAY_URL": creds["gateway_url"],
            "PM_WS_URL": creds["ws_url"], "MARKET_SLUGS": ",".join(creds["markets"]),
            "OPTICODDS_BASE_URL": creds["opticodds_url"], "OPTICODDS_API_KEY": creds["opticodds_key"],
            "HEALTH_PORT": str(port),
        }  # fmt: skip
        bot = subprocess.Popen(
            ["runuser", "-u", UNPRIVILEGED, "--", "env", "-i", *[f"{k}={v}" for k, v in bot_env.items()], *cmd],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        healthcheck = json.loads(
            next(rest for word, rest in instructions() if word == "HEALTHCHECK").split("CMD", 1)[1])
        deadline = time.monotonic() + 60
        while True:
            assert bot.poll() is None, f"the image's CMD exited early:\n{bot.stderr.read()[-3000:]}"
            probe = subprocess.run(
                ["runuser", "-u", UNPRIVILEGED, "--", "env", "-i", *[f"{k}={v}" for k, v in bot_env.items()], *healthcheck],
                cwd=workdir, capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            if probe.returncode == 0:
                break
            assert time.monotonic() < deadline, f"HEALTHCHECK never passed: {probe.stderr[-1000:]}"
            time.sleep(0.5)
        assert (workdir / "logs" / "bot.log").exists()  # the relative defaults land in /app/logs
        # Signal the bot itself, as Docker does (runuser would SIGKILL its child 2 s after a TERM).
        children = subprocess.run(["pgrep", "-P", str(bot.pid)], capture_output=True, text=True)
        pids = [int(p) for p in children.stdout.split()]
        assert len(pids) == 1, children
        os.kill(pids[0], signal.SIGTERM)
        assert bot.wait(timeout=20) == 0, bot.stderr.read()[-3000:]
    finally:
        for proc in (bot, sim):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
