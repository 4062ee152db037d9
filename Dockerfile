# One image, two commands:
#   operator: python -m wfclock.controller
#   launcher: python -m launcher_job        (the command of every fire's pod)
# Migrations: wfclock db upgrade
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
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
ENV PATH=/opt/wfclock/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/wfclock /opt/wfclock
RUN rm -rf /usr/local/lib/python3.11/ensurepip /usr/local/lib/python3.11/site-packages/pip*
USER 65532:65532
WORKDIR /tmp
CMD ["python", "-m", "wfclock.controller"]
