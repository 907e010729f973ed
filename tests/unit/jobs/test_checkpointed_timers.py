"""jobs/feedback/checkpointed_timers.py without a JVM: finding its jar (infra.jars) and what
gets swapped. (The swap itself and its effect run in tests/integration/
test_checkpointed_timers.py.)"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from infra.errors import MissingJarsError
from infra.jars import timers_operator_jar
from jobs.feedback import checkpointed_timers as ct
from loopline.paths import PathsConfig


class FakeJavaObject:
    def __init__(self, class_name: str) -> None:
        self.class_name = class_name

    def getClass(self) -> Any:  # the Java method names
        name = self.class_name

        class JavaClass:
            def getName(self) -> str:
                return name

        return JavaClass()


def test_operator_jar_is_the_one_jar_in_patches(tmp_path: Path) -> None:
    paths = PathsConfig(home=tmp_path, jars=tmp_path / "jars")
    with pytest.raises(MissingJarsError, match="run `make jars`"):
        timers_operator_jar(paths)
    (tmp_path / "jars" / "patches").mkdir(parents=True)
    jar = tmp_path / "jars" / "patches" / "loopline-flink-python-timers.jar"
    jar.write_bytes(b"")
    assert timers_operator_jar(paths) == jar


def test_operators_other_than_the_keyed_process_one_are_kept() -> None:
    stateless = FakeJavaObject("org.apache.flink...ExternalPythonProcessOperator")

    def build(*args: Any, **kwargs: Any) -> tuple[Any, str]:
        return stateless, "type-info"

    assert ct._substituting(build)("stream", "func", 1) == (stateless, "type-info")


def test_install_wraps_pyflink_once() -> None:
    from pyflink.datastream import data_stream

    before = data_stream._get_one_input_stream_operator  # maybe installed by an earlier job
    pyflinks_own = inspect.unwrap(before)
    try:
        data_stream._get_one_input_stream_operator = pyflinks_own
        ct.install()
        ct.install()
        wrapped = data_stream._get_one_input_stream_operator
        assert wrapped is not pyflinks_own and wrapped.__wrapped__ is pyflinks_own
    finally:
        data_stream._get_one_input_stream_operator = before
