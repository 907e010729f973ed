"""The embedded job's JVM starts with the job's jit_options (jobs/feedback/environment.py).

Run in a fresh interpreter: the options only count when they are set before the gateway JVM
starts, and this test session's gateway may already be running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_embedded_jvm_starts_with_the_jobs_jit_options(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import json, sys
        from jobs.config import JobConfig
        from jobs.feedback import environment
        from loopline.paths import load_paths
        from pyflink.java_gateway import get_gateway

        job = JobConfig(jit_options="-XX:FreqInlineSize=77 -XX:InlineSmallCode=777")
        environment.create(job, load_paths(), embedded=True)
        bean = get_gateway().jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
        print(json.dumps([str(a) for a in bean.getInputArguments()]))
    """)
    env = {k: v for k, v in os.environ.items() if k != "JVM_ARGS"}
    env["LOOPLINE_PATHS_HOME"] = str(tmp_path / "home")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    arguments = json.loads(done.stdout.strip().splitlines()[-1])
    assert "-XX:FreqInlineSize=77" in arguments
    assert "-XX:InlineSmallCode=777" in arguments
