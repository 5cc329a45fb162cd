# The hardmine image: the CLI, the flows (for Prefect workers) and the dashboard.
FROM python:3.11-slim

WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120

# torch first: its layer is the big one and changes least.
RUN pip install torch==2.14.1 torchvision==0.29.1

COPY pyproject.toml README.md ./
COPY hardmine ./hardmine
COPY prefect.yaml ./
RUN pip install .

CMD ["hardmine", "--help"]
