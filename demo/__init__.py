"""The closed-loop demo: simulated shoppers, the real serving path, the streaming job,
retraining, a rollout and attribution, checked against the simulator's ground truth.

`loopline demo` runs `phases.run(DemoConfig)`; each module is one concern: config, the demo
folder (home), local services and topics (stack), the serving side the simulator talks to
(serving), waiting for the streaming job's final slices (feedback), the timeline (phases),
and the closing summary (summary).
"""
