import os

import pytest
from pyflink import java_gateway

from infra import java


@pytest.fixture
def no_gateway(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(java_gateway, "_gateway", None)
    monkeypatch.delenv("JVM_ARGS", raising=False)
    return monkeypatch


def test_options_go_before_the_users_own_jvm_args(no_gateway: pytest.MonkeyPatch) -> None:
    no_gateway.setenv("JVM_ARGS", "-XX:FreqInlineSize=325")
    assert java.gateway_jvm_args(java.SMALL_MACHINE_JIT)
    assert os.environ["JVM_ARGS"] == f"{java.SMALL_MACHINE_JIT} -XX:FreqInlineSize=325"
    assert java.gateway_jvm_args(java.SMALL_MACHINE_JIT)  # a second job: not added twice
    assert os.environ["JVM_ARGS"].count("InlineSmallCode") == 1


def test_empty_options_change_nothing(no_gateway: pytest.MonkeyPatch) -> None:
    assert not java.gateway_jvm_args("")
    assert "JVM_ARGS" not in os.environ


def test_a_running_gateway_keeps_its_options(no_gateway: pytest.MonkeyPatch) -> None:
    no_gateway.setattr(java_gateway, "_gateway", object())
    assert not java.gateway_jvm_args(java.SMALL_MACHINE_JIT)
    assert "JVM_ARGS" not in os.environ
