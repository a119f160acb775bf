# scorehouse image: Python 3.11, Java 17 JRE and the package, for spark-submit jobs,
# Prefect workers and the lookup service. No Delta jars: Spark writes Parquet and the
# driver commits the Delta tables with deltalake (docs/tables.md), as in the tests.
# (No Docker engine runs on the development machines: this file is linted, not built, there.)
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    SCOREHOUSE_REPO=/opt/scorehouse/app \
    SCOREHOUSE_SERVING__HOST=0.0.0.0

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/scorehouse/app
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN python -m venv /opt/scorehouse/venv \
 && /opt/scorehouse/venv/bin/pip install --no-cache-dir -c constraints.txt .
ENV PATH=/opt/scorehouse/venv/bin:$PATH

COPY sql ./sql
COPY examples ./examples
COPY spark_conf ./spark_conf
COPY jobs ./jobs
COPY prefect.yaml ./

RUN useradd --create-home --uid 10001 scorehouse && mkdir -p /data && chown scorehouse /data
USER 10001
WORKDIR /data
EXPOSE 8080
# Exec form, no curl in the image: urlopen raises (exit 1) unless /healthz answers 200.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["scorehouse", "serve"]
