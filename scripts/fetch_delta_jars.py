"""Download the delta-spark jars that match the installed pyspark and delta-spark into
pyspark's jars/ folder (run at Docker image build; needs Maven Central or a mirror).

    python scripts/fetch_delta_jars.py [--repo https://repo1.maven.org/maven2] [--dest DIR]

Delta publishes one artifact per Spark minor version (delta-spark_<spark x.y>_<scala>),
the same coordinate delta-spark's own configure_spark_with_delta_pip asks Maven for.
"""

from __future__ import annotations

import argparse
import urllib.request
from importlib import metadata
from pathlib import Path

SCALA = "2.13"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"


def jar_coordinates(spark_version: str, delta_version: str) -> list[tuple[str, str, str]]:
    """(group, artifact, version) of the jars format("delta") needs."""
    spark_minor = ".".join(spark_version.split(".")[:2])
    return [
        ("io.delta", f"delta-spark_{spark_minor}_{SCALA}", delta_version),
        ("io.delta", "delta-storage", delta_version),
    ]


def jar_url(repo: str, group: str, artifact: str, version: str) -> str:
    return f"{repo.rstrip('/')}/{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=MAVEN_CENTRAL, help="Maven repository base URL")
    parser.add_argument("--dest", type=Path, help="default: the installed pyspark's jars/")
    args = parser.parse_args(argv)
    if args.dest is None:
        import pyspark

        args.dest = Path(pyspark.__file__).parent / "jars"
    coordinates = jar_coordinates(metadata.version("pyspark"), metadata.version("delta-spark"))
    for group, artifact, version in coordinates:
        url = jar_url(args.repo, group, artifact, version)
        target = args.dest / f"{artifact}-{version}.jar"
        with urllib.request.urlopen(url, timeout=120) as response:
            target.write_bytes(response.read())
        print(f"{url} -> {target} ({target.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
