# SMG, the SGLang model gateway, for the local node test bed, where no registry can be reached: the
# `smg` wheel from PyPI (it carries the Rust router) laid out as the published lightseekorg/smg image
# lays it out (a venv at /opt/venv on PATH, `python3 -m smg.launch_router` as the entrypoint), so the
# Deployment the operator renders for that image (command `smg launch ...`) runs here unchanged.
# Built by tests/cluster/images.sh with SMG_VERSION from operator/sglang_operator/api/router.py.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG SMG_VERSION
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN --mount=type=cache,target=/root/.cache/pip \
    test -n "$SMG_VERSION" && python3 -m venv /opt/venv && PIP_CACHE_DIR=/root/.cache/pip pip install "smg==$SMG_VERSION"
ENTRYPOINT ["python3", "-m", "smg.launch_router"]
