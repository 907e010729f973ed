from jobs.transforms.label_join import (
    ITEM_NOT_IN_SLATE,
    NO_IMPRESSION,
    ORGANIC,
    OUTSIDE_WINDOW,
    LabelJoin,
    RequestState,
)
from jobs.transforms.slices import REFS_FIELD
from tests.unit.jobs.events import T0, env, interaction, serving

WINDOW = 30 * 60_000
join = LabelJoin(WINDOW, closed_ttl_ms=3_600_000)


def run(events, timers=()):
    """Feed events then fire timers; collect every output."""
    state, outs = RequestState(), []
    for e in events:
        outs.append(join.on_event(state, e))
    for t in timers:
        outs.append(join.on_timer(state, t, end_of_input=False))
    return state, outs


def test_slate_is_labelled_at_window_end_with_outcomes_per_item():
    _state, outs = run(
        [env(serving("r1", T0), 1),
         env(interaction("e1", T0 + 1000, "b"), 5),
         env(interaction("e2", T0 + 2000, "b", "purchase", revenue=9.5), 6),
         env(interaction("e3", T0 + 3000, "c", "view", dwell_ms=1200), 7)],
        timers=[T0 + WINDOW],
    )
    labelled = outs[-1].labelled
    assert [r["item_id"] for r in labelled] == ["a", "b", "c"]
    a, b, c = labelled
    assert (a["clicked"], a["purchased"], a["revenue"], a["interaction_count"]) == (False, False,
                                                                                     0.0, 0)
    assert (b["clicked"], b["purchased"], b["revenue"], b["interaction_count"]) == (True, True,
                                                                                     9.5, 2)
    assert c["dwell_ms"] == 1200 and not c["clicked"]
    assert outs[-1].joined_serving == 1
    assert sum(o.joined_interactions for o in outs) == 3
    assert sorted(b[REFS_FIELD]) == [("loopline.interactions", 0, 5),
                                     ("loopline.interactions", 0, 6),
                                     ("loopline.serving", 0, 1)]


def test_timer_before_window_end_does_not_close():
    _, outs = run([env(serving("r1", T0))], timers=[T0 + WINDOW - 1])
    assert outs[-1].labelled == []


def test_interaction_before_serving_waits_and_is_matched():
    _state, outs = run([env(interaction("e1", T0 + 10, "a")), env(serving("r1", T0))],
                      timers=[T0 + WINDOW])
    assert outs[0].timers == [T0 + 10 + WINDOW]
    assert outs[1].joined_interactions == 1
    assert outs[-1].labelled[0]["clicked"]


def test_interaction_without_serving_expires_unmatched():
    _state, outs = run([env(interaction("e1", T0, "a"))], timers=[T0 + WINDOW])
    assert [(e.event["event_id"], r) for e, r in outs[-1].unmatched] == [("e1", NO_IMPRESSION)]
    assert outs[-1].clear


def test_unmatched_reasons():
    _, outs = run(
        [env(serving("r1", T0)),
         env(interaction("e1", T0 + WINDOW + 5, "a")),
         env(interaction("e2", T0 + 5, "zzz")),
         env(interaction("e3", T0 + 5, "a", request_id=None))],
    )
    reasons = [r for o in outs for _, r in o.unmatched]
    assert reasons == [OUTSIDE_WINDOW, ITEM_NOT_IN_SLATE, ORGANIC]


def test_duplicates_are_reported_once_each():
    _, outs = run([env(serving("r1", T0)), env(serving("r1", T0)),
                   env(interaction("e1", T0 + 1, "a")), env(interaction("e1", T0 + 1, "a"))])
    assert sum(len(o.duplicates) for o in outs) == 2
    assert sum(o.joined_interactions for o in outs) == 1
    assert len([e for o in outs for e in o.accepted]) == 2


def test_interaction_after_close_is_unmatched_and_state_expires():
    state, _outs = run([env(serving("r1", T0))], timers=[T0 + WINDOW])
    late_click = join.on_event(state, env(interaction("e9", T0 + WINDOW + 1, "a")))
    assert late_click.unmatched[0][1] == OUTSIDE_WINDOW
    done = join.on_timer(state, T0 + WINDOW + 3_600_000, end_of_input=False)
    assert done.clear


def test_end_of_input_closes_open_slates():
    state = RequestState()
    join.on_event(state, env(serving("r1", T0)))
    out = join.on_timer(state, 2**63 - 2, end_of_input=True)
    assert len(out.labelled) == 3 and out.clear


def test_a_redelivered_organic_interaction_is_a_duplicate_until_the_ttl():
    organic = env(interaction("o1", T0, "a", request_id=None))
    state, outs = run([organic, organic])
    assert [r for o in outs for _, r in o.unmatched] == [ORGANIC]
    assert sum(len(o.duplicates) for o in outs) == 1
    expired = join.on_timer(state, T0 + 3_600_000, end_of_input=False)
    assert expired.clear
