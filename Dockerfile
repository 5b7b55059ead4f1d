# syntax=docker/dockerfile:1
# canvas-tui for a scheduler: `sync` as a Kubernetes CronJob, `watch` as a Deployment (deploy/).
#
# Slim and non-root, and the root filesystem may be read-only: everything canvas-tui writes
# (journals, reports, the attach socket beside a journal) goes to the volume at
# /var/lib/canvas-tui, and temporary files to /tmp (an emptyDir in deploy/). The config and the
# API token are mounted from a Secret at /etc/canvas-tui; nothing here holds either.
#
# CI has no container engine: tests/test_wheel.py runs this file's steps without one (build the
# wheel, install it into a clean venv, run deploy/'s commands against the simulator), and
# tests/test_deploy.py checks that this file and deploy/ agree (user, paths).
#
#   docker build -t canvas-tui .
#   docker run --rm canvas-tui --version

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md config.example.toml ./
COPY examples/enrollments.csv examples/enrollments.csv
COPY canvas_tui canvas_tui
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim
# SQL sources need their driver: PostgreSQL and MariaDB/MySQL ship; add mssql/oracle if needed.
# kafka: `watch` on a topic ([source] kind = "kafka")
ARG EXTRAS=postgres,mysql,kafka
ARG UID=10001
COPY --from=wheel /wheels /wheels
# One venv with canvas-tui and its dependencies, compiled now: at run time nothing is written
# outside the volume and /tmp.
RUN python -m venv /opt/canvas-tui \
 && /opt/canvas-tui/bin/pip install --no-cache-dir "$(ls /wheels/canvas_tui-*.whl)[${EXTRAS}]" \
 && rm -rf /wheels \
 && groupadd --system --gid "${UID}" canvas-tui \
 && useradd --system --uid "${UID}" --gid "${UID}" --home-dir /var/lib/canvas-tui \
      --no-create-home --shell /usr/sbin/nologin canvas-tui \
 && install -d -o "${UID}" -g "${UID}" -m 0700 /var/lib/canvas-tui

ENV PATH=/opt/canvas-tui/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/canvas-tui \
    XDG_STATE_HOME=/var/lib/canvas-tui/state \
    CANVAS_TUI_CONFIG=/etc/canvas-tui/canvas-tui.toml

USER ${UID}:${UID}
WORKDIR /var/lib/canvas-tui
VOLUME ["/var/lib/canvas-tui"]
ENTRYPOINT ["canvas-tui"]
CMD ["sync", "--log-format", "json"]
