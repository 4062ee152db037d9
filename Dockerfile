# One image, two commands:
#   operator: python -m wfclock.controller
#   launcher: python -m launcher_job        (the command of every fire's pod)
# Migrations: wfclock db upgrade
#
# The base is the official python image, or where no image registry is reachable a base made from
# Debian's packages (python3.11 in /usr/lib instead of /usr/local/lib): scripts/build-image.sh,
# docs/image.md. Both build with this file.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# PIP_CERT: the build machine's CA bundle, for networks whose proxy re-signs TLS (build-image.sh
# mounts it read-only during RUN steps and passes its path); empty uses pip's own trust store.
ARG PIP_CERT=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY launcher_job ./launcher_job
# Wheels only (psycopg[binary] ships its libpq), so the final image needs no compiler.
RUN python -m venv /opt/wfclock \
 && /opt/wfclock/bin/pip install --only-binary=:all: pip==25.2 \
 && /opt/wfclock/bin/pip install --only-binary=:all: --no-compile . \
 && /opt/wfclock/bin/python -m compileall -q /opt/wfclock/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="wfclock" \
      org.opencontainers.image.description="Clock triggers for Workflow V2: operator and launcher"
# The base's own pip and ensurepip go, wherever the base keeps them (the official image: under
# /usr/local/lib/python3.11; Debian's python: /usr/lib/python3.11 and /usr/share/python-wheels).
RUN set -eu; \
    for dir in $(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"), sysconfig.get_path("purelib"))'); do \
      rm -rf "$dir/ensurepip" "$dir"/pip "$dir"/pip-*; \
    done; \
    rm -rf /usr/share/python-wheels
# MALLOC_ARENA_MAX: glibc gives each thread that allocates an arena of its own, up to 8 a core;
# with them the operator's 50-odd threads kept about 13 MiB more resident, free but not returned
# (bench/operator_memory.py, docs/scale.md, "Operator memory").
ENV PATH=/opt/wfclock/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MALLOC_ARENA_MAX=2
COPY --from=build /opt/wfclock /opt/wfclock
# A name for uid 65532 (distroless calls it nonroot): the operator's kopf asks for its user's
# name (getpass) to name itself, and an anonymous uid makes it fail at start.
RUN echo 'wfclock:x:65532:65532:wfclock:/tmp:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'wfclock:x:65532:' >> /etc/group
USER 65532:65532
WORKDIR /tmp
CMD ["python", "-m", "wfclock.controller"]
