"""Locate the Java runtime the Kafka broker and Flink run on, and check it is new enough."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from infra.errors import JavaMissingError

MIN_JAVA = 17  # Kafka 4.x brokers require Java 17; Flink 2.x supports 11+, 17 recommended.
# C2 inlining limits for the JVMs that run the feedback job's operators (why: jobs/config.py
# JobConfig.jit_options).
SMALL_MACHINE_JIT = "-XX:FreqInlineSize=100 -XX:InlineSmallCode=1000"


def gateway_jvm_args(options: str) -> bool:
    """Put `options` into JVM_ARGS, which PyFlink passes to the JVM it starts for this
    process (the embedded mini-cluster), before the user's own JVM_ARGS so theirs win.
    False when that JVM is already running (too late: it keeps the options it started with).
    """
    from pyflink import java_gateway

    if not options or getattr(java_gateway, "_gateway", None) is not None:
        return False
    own = os.environ.get("JVM_ARGS", "")
    if options not in own:
        os.environ["JVM_ARGS"] = f"{options} {own}".strip()
    return True


@lru_cache(maxsize=1)
def java_binary() -> Path:
    """$JAVA_HOME/bin/java if set, else `java` on PATH; verified to be Java 17 or newer."""
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "java" if home else None
    if candidate is None or not os.access(candidate, os.X_OK):
        found = shutil.which("java")
        candidate = Path(found) if found else None
    if candidate is None:
        raise JavaMissingError(
            f"expected a Java {MIN_JAVA}+ runtime in $JAVA_HOME or on PATH, found none; "
            "install one, e.g. `apt-get install openjdk-17-jre-headless`"
        )
    version = java_major_version(candidate)
    if version < MIN_JAVA:
        raise JavaMissingError(
            f"expected Java {MIN_JAVA} or newer, got Java {version} at {candidate}; "
            "point JAVA_HOME at a newer runtime"
        )
    return candidate


def java_major_version(java: Path) -> int:
    try:
        out = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise JavaMissingError(f"cannot run {java}: {exc}") from exc
    # `java -version` prints e.g. 'openjdk version "17.0.15" 2025-04-15' (or "1.8.0_392").
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise JavaMissingError(
            f"expected `{java} -version` to print a version, got {out.stderr.strip()[:200]!r}"
        )
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major
