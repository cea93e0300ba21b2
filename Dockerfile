# firemap CLI image. CPU by default:
#   docker build -t firemap .
#   docker run --rm -v "$PWD:/data" firemap predict /data/scene.tif --out /data/out
# CUDA: build on a CUDA runtime base and take torch's CUDA wheels:
#   docker build -t firemap:cuda --build-arg BASE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 .
#   docker run --gpus all ... firemap:cuda predict ...
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# CUDA bases ship no Python; slim images already have it (the install is then a no-op).
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
        && rm -rf /var/lib/apt/lists/*; fi \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, from the chosen index; the constraints file then keeps pip from replacing it.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY firemap ./firemap
# the dask extra: the image also serves as a Dask worker (firemap predict --scheduler, see the README)
RUN pip install -c constraints.txt ".[dask]" && useradd --create-home --uid 1000 firemap
USER 1000
WORKDIR /data
ENTRYPOINT ["firemap"]
CMD ["--help"]
