"""A minimal job for test_checkpointed_timers.py, run as a script in a process of its own.

Keys 0..n-1 arrive at a steady rate from a checkpointed source (datagen sequence); a slow keyed
Python function stores a flag and registers one event-time timer per key, so bundles are
still in flight when checkpoint barriers arrive. The first attempt fails on key `fail_at`;
Flink restores the last checkpoint and replays from there. At the end of the input every
registered timer fires and writes its key to `out/<pid>.txt`. Nothing is lost iff every key
is written. The environment is the feedback job's own (jobs/feedback/environment.py).
"""

from __future__ import annotations

import argparse
import inspect
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from jobs.config import JobConfig
from jobs.feedback import environment
from loopline.paths import PathsConfig

TIMER_AT = 1_000  # any event time: only the end of input (the final watermark) fires them


class SlowKeyedTimers(KeyedProcessFunction):
    def __init__(self, out: str, fail_at: int) -> None:
        self.out, self.fail_at = out, fail_at

    def open(self, runtime_context: RuntimeContext) -> None:
        self.seen = runtime_context.get_state(ValueStateDescriptor("seen", Types.BOOLEAN()))
        self.attempt = runtime_context.get_attempt_number()
        (Path(self.out) / f"attempt-{self.attempt}").touch()

    def process_element(self, row: Any, ctx: KeyedProcessFunction.Context):
        time.sleep(0.003)  # slower than the Java side: elements queue up inside the bundle
        self.seen.update(True)
        ctx.timer_service().register_event_time_timer(TIMER_AT)
        if self.attempt == 0 and row[0] == self.fail_at:
            raise RuntimeError(f"planned failure at key {self.fail_at}")
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        with open(Path(self.out) / f"{os.getpid()}.txt", "a") as handle:
            handle.write(f"{ctx.get_current_key()}\n")
        return iter(())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--keys", type=int, default=3000)
    parser.add_argument("--fail-at", type=int, default=2500)
    parser.add_argument("--rate", type=int, default=250, help="keys per second")
    parser.add_argument("--without-fix", action="store_true",
                        help="PyFlink's own keyed operator (shows the loss)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    job = replace(JobConfig(), parallelism=1, checkpoint_interval_ms=300,
                  python_bundle_time_ms=1_000, restart_attempts=1, restart_delay_ms=500)
    env, t_env = environment.create(job, PathsConfig(home=args.home).resolved())
    if args.without_fix:
        from pyflink.datastream import data_stream

        data_stream._get_one_input_stream_operator = inspect.unwrap(  # type: ignore[attr-defined]
            data_stream._get_one_input_stream_operator  # type: ignore[attr-defined]
        )
    t_env.execute_sql(
        "CREATE TEMPORARY TABLE keys_in (k BIGINT) WITH ('connector' = 'datagen', "
        f"'rows-per-second' = '{args.rate}', 'fields.k.kind' = 'sequence', "
        f"'fields.k.start' = '0', 'fields.k.end' = '{args.keys - 1}')"
    )
    keys = t_env.to_data_stream(t_env.from_path("keys_in"))
    keys.key_by(lambda row: row[0], key_type=Types.LONG()).process(
        SlowKeyedTimers(str(args.out), args.fail_at)
    ).name("slow-keyed-timers").uid("slow-keyed-timers")
    env.execute("timer-restore")


if __name__ == "__main__":
    main()
