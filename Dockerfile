# syntax=docker/dockerfile:1
#
# polybot image. Build: `docker compose build` (or `docker build -t polymarket-bot .`).
#
# Two install layers on purpose: the runtime dependencies are read from pyproject.toml and
# installed first, so a code change rebuilds only the small last layers; then the package itself
# is installed without resolving dependencies again. Every dependency ships manylinux wheels for
# this base, so no compiler is installed. tests/e2e/test_image.py replays these RUN steps into a
# fresh virtualenv as a non-root user, so keep them plain shell.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md ./
COPY polybot ./polybot
# CMD runs `python -m polybot` from WORKDIR, so this source tree (first on sys.path), not the
# installed copy, is what the bot imports; read-only and with PYTHONDONTWRITEBYTECODE, nothing
# would ever cache its bytecode and every start would compile all of polybot first.
RUN pip install --no-deps . \
    && python -m compileall -q polybot \
    && rm -rf build ./*.egg-info

# A fixed uid/gid: the host's `polybot` user (scripts/setup-ec2.sh) gets the same numbers, so the
# bind-mounted logs/ and data/ are writable by the container and by the systemd deployment alike.
# The code stays root-owned: the bot can write only its logs and its database. USER is numeric
# so a runtime that checks "non-root" (e.g. Kubernetes runAsNonRoot) can verify it.
ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" polybot \
    && useradd --system --uid "${APP_UID}" --gid polybot --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin polybot \
    && mkdir -p /app/logs /app/data \
    && chown polybot:polybot /app/logs /app/data
USER ${APP_UID}:${APP_UID}

EXPOSE 8080

# Standard library only. urlopen raises on a refused connection, a timeout and any non-2xx
# answer, so a hung or restarting bot (503) is unhealthy. 127.0.0.1 works whichever HEALTH_HOST
# the bot binds inside the container.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HEALTH_PORT', '8080') + '/health', timeout=5)"]

# The bot handles SIGTERM as a graceful stop (no new orders, cancel, flush) bounded at 10 s;
# docker-compose.yml gives it a longer grace period before SIGKILL.
STOPSIGNAL SIGTERM

CMD ["python", "-m", "polybot", "run"]
