# syntax=docker/dockerfile:1
# The platform image: the RayService and RayJob pods, the Feast feature server, the monitoring
# CronJob and the Kubeflow components all run it (pipelines/components.py: IMAGE).
#
#   docker build -t ghcr.io/recsys-platform/recsys:0.1.0 .                        # CPU
#   docker build --build-arg VARIANT=cuda -t ghcr.io/recsys-platform/recsys:0.1.0-cuda .
#
# Both variants install the one resolution of `make test` (constraints.txt); they differ only
# in where torch==2.13.0 comes from: the CPU build, or the CUDA 12.8 build (its CUDA libraries
# come as wheels, so the base stays python-slim; the node brings the driver).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_CPU=https://download.pytorch.org/whl/cpu
ARG TORCH_INDEX_CUDA=https://download.pytorch.org/whl/cu128
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# OpenMP, for LightGBM's import check below (the runtime stage installs it too).
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY constraints.txt ./
RUN case "$VARIANT" in \
      cpu) index="$TORCH_INDEX_CPU" ;; \
      cuda) index="$TORCH_INDEX_CUDA" ;; \
      *) echo "VARIANT=$VARIANT: expected cpu or cuda" >&2; exit 2 ;; \
    esac \
 && pip install --prefix=/install -c constraints.txt --index-url "$index" \
      --extra-index-url https://pypi.org/simple "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY recsys ./recsys
COPY serving ./serving
COPY pipelines ./pipelines
# Into /install, copied to /usr/local: KubeRay starts Ray through `bash -l`, whose login PATH
# keeps /usr/local/bin (a venv's bin would be dropped).
RUN pip install --prefix=/install -c constraints.txt . \
 && PYTHONPATH=$(echo /install/lib/python3*/site-packages) python -c \
      "import recsys, recsys.cli.main, serving.app, pipelines.client, feast, ray, kfp, evidently, faiss, lightgbm, lleaves, pyspark"

FROM ${PYTHON_IMAGE} AS runtime
ARG VARIANT=cpu
LABEL org.opencontainers.image.source="https://github.com/recsys-platform/recsys" \
      org.opencontainers.image.description="recsys-platform (${VARIANT})"
# Ray's containers need no more than the slim base (KubeRay runs `ray start` through bash),
# OpenMP for LightGBM, the multi-stage model's ranker, HAProxy, Serve's fast proxy, and a
# Java 17 runtime for the chart's Spark Connect server (pyspark's spark-submit and jars: the
# Feast offline store's point-in-time join); the slim base lacks the man directory the JRE's
# install links into.
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 haproxy openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 recsys \
 && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/recsys recsys \
 && mkdir -p /var/lib/recsys && chown 1000:1000 /var/lib/recsys
COPY --from=build /install /usr/local
COPY --chown=root:root feature_repo/*.py feature_repo/*.yaml /app/feature_repo/
ENV PYTHONUNBUFFERED=1 \
    RECSYS_HOME=/var/lib/recsys \
    RECSYS_FEATURE_REPO=/var/lib/recsys/feature_repo \
    FEAST_USAGE=False \
    RAY_USAGE_STATS_ENABLED=0 \
    RAY_TRAIN_V2_ENABLED=1
WORKDIR /app
USER 1000:1000
ENTRYPOINT ["recsys"]
CMD ["--help"]
