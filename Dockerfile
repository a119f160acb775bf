# scorehouse image: Python 3.11, Java 17 JRE, the package with the `cluster` extra and
# the Delta jars, for spark-submit jobs, Prefect workers and the lookup service.
# (No Docker engine runs on the development machines: this file is linted, not built, there.)
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    SCOREHOUSE_DELTA_JARS=1 \
    SCOREHOUSE_REPO=/opt/scorehouse/app \
    SCOREHOUSE_SERVING__HOST=0.0.0.0

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/scorehouse/app
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN python -m venv /opt/scorehouse/venv \
 && /opt/scorehouse/venv/bin/pip install --no-cache-dir -c constraints.txt '.[cluster]'
ENV PATH=/opt/scorehouse/venv/bin:$PATH

# Delta jars into pyspark's jar folder, so format("delta") works without Maven at run time.
# The artifact follows the installed pair (pyspark 4.2 + delta-spark 4.4.1 from
# constraints.txt): io.delta:delta-spark_4.2_2.13:4.4.1 and io.delta:delta-storage:4.4.1.
COPY scripts/fetch_delta_jars.py /tmp/fetch_delta_jars.py
RUN python /tmp/fetch_delta_jars.py && rm /tmp/fetch_delta_jars.py

COPY sql ./sql
COPY spark_conf ./spark_conf
COPY jobs ./jobs
COPY flows ./flows
COPY prefect.yaml ./

RUN useradd --create-home --uid 10001 scorehouse && mkdir -p /data && chown scorehouse /data
USER 10001
WORKDIR /data
EXPOSE 8080
# Exec form, no curl in the image: urlopen raises (exit 1) unless /healthz answers 200.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["scorehouse", "serve"]
