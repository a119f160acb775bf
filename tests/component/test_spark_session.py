import contextlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from scorehouse.settings import load_settings


def test_session_is_utc_with_arrow_and_two_cores(spark: SparkSession) -> None:
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert spark.sparkContext.defaultParallelism == 2
    row = spark.sql("SELECT CAST(TIMESTAMP '2026-01-01 00:00:00' AS LONG) AS epoch").first()
    assert row is not None and row.epoch == 1767225600


# A session of the `local` profile in a process of its own (this one holds the `test`
# session); it prints the driver's conf and every TCP port its JVM listens on.
LOCAL_SESSION = """
import json, os
from scorehouse.settings import load_settings
from scorehouse.spark import get_spark
settings = load_settings(environ={"SCOREHOUSE_SPARK__PROFILE": "local",
                                  "SCOREHOUSE_SPARK__MASTER": "local[1]"})
spark = get_spark(settings, app_name="scorehouse-loopback-check")
spark.range(10).repartition(2).count()  # a shuffle: the block manager serves blocks
jvm = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
conf = {k: spark.sparkContext.getConf().get(k) for k in ("spark.driver.host", "spark.driver.bindAddress")}
print(json.dumps({"conf": conf, "listening": listening(jvm)}))
spark.stop()
"""


def _listening(pid: int) -> list[str]:
    """host:port of every TCP socket in LISTEN state that process `pid` holds (Linux /proc)."""
    import ipaddress

    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word of the address in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(raw)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            found.append(f"{ip}:{int(port, 16)}")
    return found


def test_local_profile_driver_listens_on_loopback_only(tmp_path: Path) -> None:
    script = tmp_path / "local_session.py"
    script.write_text(
        "import contextlib, os\nfrom pathlib import Path\n"
        + inspect.getsource(_listening).replace("def _listening", "def listening")
        + LOCAL_SESSION
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCOREHOUSE_", "SPARK_"))}
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["conf"] == {
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
    }
    assert report["listening"], "the driver JVM listens on no port at all?"
    assert [a for a in report["listening"] if not a.startswith("127.")] == []


# A job whose task is over Spark's 1000 KiB warning size, run quiet (the default level),
# then once more after the level is lowered to WARN: the second run proves the job warns.
QUIET_SESSION = """
import sys
from scorehouse.settings import load_settings
from scorehouse.spark import get_spark
settings = load_settings(environ={"SCOREHOUSE_SPARK__PROFILE": "test"})
spark = get_spark(settings, app_name="scorehouse-quiet-check")
big = [bytes(1_500_000)]
assert spark.sparkContext.parallelize(big, 1).map(len).sum() == 1_500_000
print("MARK lowered to warn", file=sys.stderr, flush=True)
spark.sparkContext.setLogLevel("WARN")
assert spark.sparkContext.parallelize(big, 1).map(len).sum() == 1_500_000
spark.stop()
"""


def test_a_session_prints_no_spark_warnings_by_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCOREHOUSE_", "SPARK_"))}
    done = subprocess.run(
        [sys.executable, "-c", QUIET_SESSION],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    quiet, _, lowered = done.stderr.partition("MARK lowered to warn")
    assert lowered, done.stderr[-3000:]
    # Nothing at all: no log4j WARN line, no "Setting default log level" banner, no JVM
    # notice; the lines after the mark prove the JVM's stderr still reaches ours.
    assert quiet.strip() == ""
    assert "WARN TaskSetManager: Stage" in lowered and "very large size" in lowered


def test_the_session_runs_the_log4j2_profile_of_spark_conf(spark: SparkSession) -> None:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    system = jvm.java.lang.System
    assert system.getProperty("log4j2.configurationFile").endswith("spark_conf/log4j2.properties")
    assert system.getProperty("user.timezone") == "UTC"
    root = jvm.org.apache.logging.log4j.LogManager.getRootLogger()
    assert root.getLevel().toString() == "ERROR"


def test_the_driver_jvm_is_started_once_with_its_stderr_relayed(spark: SparkSession) -> None:
    # Pins SparkContext._gateway, the private attribute scorehouse.spark reads to know
    # the process's JVM is running (pyspark has no public accessor for it).
    from pyspark import SparkContext

    from scorehouse.spark import get_spark

    gateway = SparkContext._gateway
    assert gateway is not None and gateway.proc.stderr is not None
    settings = load_settings(environ={"SCOREHOUSE_SPARK__PROFILE": "test"})
    assert get_spark(settings).sparkContext._gateway is gateway
