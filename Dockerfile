# syntax=docker/dockerfile:1
# The one oracle-sidecar image. Its command picks the role: serve (the default), dashboard, alert,
# demo-oracle, demo, load.
#   docker build -t oracle-sidecar:0.1.0 .
#   docker run --rm oracle-sidecar:0.1.0 --help

# Builder stage: makes /opt/venv with the dependencies, then with the project's own wheel.
# Both stages use the same base image, so the venv's python link points at the same interpreter.
FROM python:3.12-slim AS builder

# A virtual environment without pip of its own: the base image's pip installs into it, so the
# final image carries no installer.
RUN python -m venv --without-pip /opt/venv

# The source tree's place in the builder; nothing of it reaches the final image.
WORKDIR /src

# The dependency list alone first, so that the dependency layer is rebuilt only when it changes.
# README.m[d] copies the package's long description when there is one and nothing otherwise.
COPY pyproject.toml README.m[d] ./

# The image runs every role, so it carries both extras: `sidecar` (serve, dashboard, alert) and
# `demo` (the demo Oracle the chart runs by default); the extras naming the project itself are
# left out, the project comes as a wheel below.
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; extras = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']; print('\n'.join(r for e in ('sidecar', 'demo') for r in extras[e] if not r.startswith('oracle-sidecar')))" \
        > /tmp/requirements.txt \
 && pip --disable-pip-version-check --python /opt/venv/bin/python install --requirement /tmp/requirements.txt

# The package's source.
COPY sidecar/ sidecar/

# The project as a wheel, as a release would ship it, installed without touching the dependencies.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip --disable-pip-version-check wheel --no-deps --wheel-dir /tmp/dist . \
 && pip --disable-pip-version-check --python /opt/venv/bin/python install --no-deps /tmp/dist/*.whl

# Final stage: the slim base image plus the virtual environment, nothing else.
FROM python:3.12-slim

# The package version this image is built from (sidecar.__version__); --build-arg VERSION=... for releases.
ARG VERSION=0.1.0

# OCI image metadata.
LABEL org.opencontainers.image.title="oracle-sidecar" \
      org.opencontainers.image.description="Monitoring sidecar, dashboard and Telegram alerter for a Python gRPC service" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# A system user and group for the numeric ids, so that tools which look the user up find one;
# no home directory, no login shell.
RUN groupadd --system --gid 10001 oracle \
 && useradd --system --uid 10001 --gid oracle --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin oracle

# Only the virtual environment comes from the builder.
COPY --from=builder /opt/venv /opt/venv

# The venv's commands first on PATH; logs unbuffered; no .pyc writes on a read-only root filesystem.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# The sidecar's HTTP port and the dashboard's.
EXPOSE 9090 9000

# Numeric user and group, so that Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001

# One entry point for every role.
ENTRYPOINT ["oracle-sidecar"]

# The default role is the sidecar; the chart passes the role as args.
CMD ["serve"]
