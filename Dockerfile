# One image for every Airflow component (api-server, scheduler, dag-processor, triggerer, Celery
# workers) and for serving. It installs from the same lock file as `make setup`
# (constraints.txt), torch as the CPU wheel named below (the default index would pull the CUDA
# build, several GB). The wheel is x86_64: on an arm64 host build with `--platform linux/amd64`
# (or pass the aarch64 wheel as --build-arg TORCH_WHEEL=...). Build from the repository root:
#   docker build -t shoprec:0.1.0 .
FROM python:3.11-slim-bookworm

ARG TORCH_WHEEL=https://download.pytorch.org/whl/cpu/torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    SHOPREC_HOME=/data/shoprec \
    AIRFLOW_HOME=/data/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/shoprec/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

RUN useradd --create-home --uid 50000 --gid 0 shoprec \
 && mkdir -p /data/shoprec /data/airflow && chown -R 50000:0 /data

WORKDIR /opt/shoprec
# torch first, as the CPU wheel (constraints.txt pins torch==2.13.0, which 2.13.0+cpu satisfies)
COPY pyproject.toml constraints.txt ./
RUN pip install "${TORCH_WHEEL}"
COPY . .
RUN pip install -c constraints.txt -e ".[scale]" \
 && pip check \
 && chown -R 50000:0 /opt/shoprec

USER 50000
EXPOSE 8000 8080
# serving by default; compose / Kubernetes give each Airflow component its command
CMD ["shoprec", "serve", "--host", "0.0.0.0", "--port", "8000"]
