"""Models: LightGBM training on feedback slices, registry with lineage, off-policy evaluation,
rollout, serving (Feast lookup → score → explore → log) and retrain triggers.

One module per concept: slices (what a training slice is), features (point-in-time and
online feature frames), ranker (a loaded model), training, registry, lineage, policy
(Plackett-Luce exploration and its propensities), ope, rollout, triggers, serving/.
"""
