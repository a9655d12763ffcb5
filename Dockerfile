# syntax=docker/dockerfile:1
# The node image: Python 3.11, the dependencies pinned in uv.lock, and the project code.
# It holds no keys: Numerai keys reach a flow run at run time, from Secrets Manager (ECS) or
# Secret Manager (Cloud Run). Fargate and Cloud Run run amd64, so build for it even on an ARM laptop:
#   docker buildx build --platform linux/amd64 -t numerai-nodes:latest .
# The base images are build arguments only so that a machine without a registry can build from
# stand-ins (the container tests do); the defaults are the images the node runs on.
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE}

# LightGBM's wheel links against OpenMP, which the slim image lacks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

COPY --from=uv /uv /uvx /bin/

RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin numerai \
    && mkdir /app \
    && chown numerai:numerai /app

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    PYTHONUNBUFFERED=1 \
    PATH="/app/.venv/bin:$PATH"

# Install as the runtime user, so the flow can write its data cache under /app.
USER numerai
WORKDIR /app

# Dependencies first: this layer survives code changes.
COPY --chown=numerai:numerai pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY --chown=numerai:numerai . .
RUN uv sync --frozen --no-dev

# Workers replace this with `prefect flow-run execute`.
CMD ["numerai-nodes", "--help"]
