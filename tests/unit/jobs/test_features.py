from jobs.transforms.features import (
    ITEM,
    USER,
    FeatureAggregator,
    examination,
    feature_events,
)
from tests.unit.jobs.events import T0, env, interaction, serving

HOUR = 3_600_000
agg = FeatureAggregator(last_clicked_n=2)


def apply_all(events, key):
    states = {}
    for e in events:
        for fe in feature_events(e, eta=1.0):
            state = states.setdefault(fe.key, agg.new_state(fe.kind))
            agg.apply(state, fe)
    return states[key]


def test_serving_counts_impressions_for_user_and_items_with_examination():
    evs = feature_events(env(serving("r1", T0)), eta=1.0)
    assert evs[0].kind == USER and evs[0].deltas == {"impressions": 3.0}
    assert [(e.kind, e.entity_id, e.deltas["expected_clicks"]) for e in evs[1:]] == [
        (ITEM, "a", 1.0), (ITEM, "b", 0.5), (ITEM, "c", 1 / 3)]
    assert examination(3, 2.0) == 1 / 16


def test_item_ctr_and_position_debiased_ctr():
    events = [env(serving(f"r{i}", T0 + i)) for i in range(4)]
    events += [env(interaction("c1", T0 + 10, "b")), env(interaction("c2", T0 + 11, "c"))]
    state_b = apply_all(events, "i:b")
    row = agg.evaluate(state_b, "b", state_b.latest_ms)
    assert row.values["item_impressions_1h"] == 4
    assert row.values["item_clicks_1h"] == 1
    assert row.values["item_ctr_1h"] == 0.25
    # 1 click over 4 impressions at position 1 (examined half the time): 1 / (4 * 0.5)
    assert row.values["item_debiased_ctr_1h"] == 0.5


def test_windows_slide_and_out_of_order_events_land_in_their_bucket():
    events = [env(interaction("p1", T0, "a", "purchase", revenue=10.0)),
              env(interaction("p2", T0 + 2 * HOUR, "a", "purchase", revenue=5.0)),
              env(interaction("p3", T0 + 2 * HOUR - 1000, "b", "purchase", revenue=1.0))]
    state = apply_all(events, "u:u1")
    row = agg.evaluate(state, "u1", state.latest_ms)
    assert row.event_ms == T0 + 2 * HOUR  # newest event time, despite the late arrival
    assert row.values["user_purchases_1h"] == 2 and row.values["user_revenue_1h"] == 6.0
    assert row.values["user_purchases_24h"] == 3 and row.values["user_revenue_24h"] == 16.0


def test_last_clicked_is_distinct_newest_first_and_bounded():
    clicks = [env(interaction("c1", T0 + 1, "a")), env(interaction("c2", T0 + 2, "b")),
              env(interaction("c3", T0 + 3, "a")), env(interaction("c4", T0 + 4, "c"))]
    state = apply_all(clicks, "u:u1")
    assert agg.evaluate(state, "u1", state.latest_ms).values["user_last_clicked"] == "c,a"


def test_decay_drops_counts_after_the_window_and_expires_state():
    state = apply_all([env(interaction("c1", T0, "a"))], "i:a")
    one_hour, one_day = agg.decay_points(state)
    row, expired = agg.on_decay(state, "a", one_hour)
    assert row is not None and row.values["item_clicks_1h"] == 0
    assert row.values["item_clicks_24h"] == 1 and not expired
    row, expired = agg.on_decay(state, "a", one_day)
    assert row is not None and row.values["item_clicks_24h"] == 0 and expired
    assert agg.on_decay(state, "a", one_day + 5) == (None, False)
