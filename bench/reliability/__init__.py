"""Fault-injection harness and known workloads, shared by tests/integration/reliability and
the soak benchmark (`loopline bench soak`)."""
