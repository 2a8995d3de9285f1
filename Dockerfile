# The sarsweep worker/dashboard image: a CUDA build of PyTorch, sarsweep installed from this repo.
#   docker build -t sarsweep:latest .
# The base's torch (2.7.1) satisfies sarsweep's "torch>=2.4,<3", so pip keeps it.
FROM pytorch/pytorch:2.7.1-cuda12.6-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SARSWEEP_ARTIFACTS=/artifacts \
    SARSWEEP_CACHE=/cache \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /opt/sarsweep
COPY pyproject.toml README.md ./
COPY errors ./errors
COPY models ./models
COPY training ./training
COPY storage ./storage
COPY search ./search
RUN pip install . && sarsweep --version

RUN useradd --create-home --uid 1000 sarsweep \
    && mkdir -p /artifacts /cache /config /data \
    && chown sarsweep /artifacts /cache
USER sarsweep
WORKDIR /home/sarsweep
CMD ["sarsweep", "--help"]
