# scorehouse image: Python 3.11, Java 17 JRE, the package with the `cluster` extra and
# the Delta jars, for spark-submit jobs, Prefect workers and the lookup service.
# (No Docker engine runs on the development machines: this file is linted, not built, there.)
FROM python:3.11-slim-bookworm

ARG DELTA_VERSION=4.0.0
ARG SCALA_VERSION=2.13
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    SCOREHOUSE_DELTA_JARS=1 \
    SCOREHOUSE_REPO=/opt/scorehouse/app \
    SCOREHOUSE_SERVING__HOST=0.0.0.0

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/scorehouse/app
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN python -m venv /opt/scorehouse/venv \
 && /opt/scorehouse/venv/bin/pip install --no-cache-dir -c constraints.txt '.[cluster]'
ENV PATH=/opt/scorehouse/venv/bin:$PATH

# Delta jars into pyspark's jar folder, so format("delta") works without Maven at run time.
RUN jars="$(python -c 'import pyspark, os; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')" \
 && curl -fsSL -o "$jars/delta-spark_${SCALA_VERSION}-${DELTA_VERSION}.jar" \
      "https://repo1.maven.org/maven2/io/delta/delta-spark_${SCALA_VERSION}/${DELTA_VERSION}/delta-spark_${SCALA_VERSION}-${DELTA_VERSION}.jar" \
 && curl -fsSL -o "$jars/delta-storage-${DELTA_VERSION}.jar" \
      "https://repo1.maven.org/maven2/io/delta/delta-storage/${DELTA_VERSION}/delta-storage-${DELTA_VERSION}.jar"

COPY sql ./sql
COPY spark_conf ./spark_conf
COPY jobs ./jobs
COPY flows ./flows

RUN useradd --create-home --uid 10001 scorehouse && mkdir -p /data && chown scorehouse /data
USER scorehouse
WORKDIR /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
CMD ["scorehouse", "serve"]
