# The image every component of the Kubeflow pipeline runs in
# (pipelines/kubeflow_runner.py --image ...). Build from the repository root:
#   docker build -t gcr.io/PROJECT/tfrec-dyn:0.1.0 . && docker push gcr.io/PROJECT/tfrec-dyn:0.1.0
# TFX 1.21 wheels need glibc >= 2.39 (Ubuntu 24.04 has 2.39), so the glibc
# compatibility step in tools/ detects it has nothing to do here.
FROM ubuntu:24.04

RUN apt-get update && apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv python3.11-dev g++ make ca-certificates \
    || (apt-get install -y --no-install-recommends software-properties-common \
        && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
        && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev g++ make) \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /pipeline
COPY . /pipeline
RUN make install PYTHON=python3.11
ENV PATH=/pipeline/.venv/bin:$PATH \
    PYTHONPATH=/pipeline \
    TF_USE_LEGACY_KERAS=1
# KubeflowV2DagRunner starts components with `python -m tfx.orchestration.kubeflow.v2.container...`.
ENTRYPOINT []
