"""The features' Python definition (jobs/transforms/features.py), which the JVM operator is
checked against in the integration tests."""

from jobs.transforms.features import (
    ITEM,
    USER,
    examination,
    feature_events,
    final_values,
    micros,
    values_at,
)
from tests.unit.jobs.events import T0, env, interaction, serving

HOUR = 3_600_000
MIN = 60_000


def events_of(envs, key):
    return [fe for e in envs for fe in feature_events(e) if fe.key == key]


def test_serving_counts_impressions_for_user_and_items_with_positions():
    evs = feature_events(env(serving("r1", T0)))
    assert evs[0].kind == USER and evs[0].impressions == 3
    assert [(e.kind, e.entity_id, e.position) for e in evs[1:]] == [
        (ITEM, "a", 0), (ITEM, "b", 1), (ITEM, "c", 2)]
    assert examination(1, 1.0) == 0.5 and examination(3, 2.0) == 1 / 16


def test_item_ctr_and_position_debiased_ctr():
    envs = [env(serving(f"r{i}", T0 + i)) for i in range(4)]
    envs += [env(interaction("c1", T0 + 10, "b")), env(interaction("c2", T0 + 11, "c"))]
    values = values_at(ITEM, events_of(envs, "i:b"), T0 + 11)
    assert values["item_impressions_1h"] == 4
    assert values["item_clicks_1h"] == 1
    assert values["item_ctr_1h"] == 0.25
    # 1 click over 4 impressions at position 1 (examined half the time): 1 / (4 * 0.5)
    assert values["item_debiased_ctr_1h"] == 0.5


def test_values_at_a_time_see_only_events_at_or_before_it():
    envs = [env(serving("r1", T0)), env(interaction("c1", T0 + 5, "a"))]
    events = events_of(envs, "i:a")
    assert values_at(ITEM, events, T0 + 4)["item_clicks_1h"] == 0
    assert values_at(ITEM, events, T0 + 5)["item_clicks_1h"] == 1


def test_windows_slide_by_whole_buckets():
    envs = [env(interaction("p1", T0, "a", "purchase", revenue=10.0)),
            env(interaction("p2", T0 + 2 * HOUR, "a", "purchase", revenue=5.0)),
            env(interaction("p3", T0 + 2 * HOUR - 1000, "b", "purchase", revenue=1.0))]
    events = events_of(envs, "u:u1")
    now = values_at(USER, events, T0 + 2 * HOUR)
    assert now["user_purchases_1h"] == 2 and now["user_revenue_1h"] == 6.0
    assert now["user_purchases_24h"] == 3 and now["user_revenue_24h"] == 16.0
    # p1's 1-min bucket [T0, T0+1min) counts until T0 + 1 min + 1 h, then leaves the window.
    assert values_at(USER, events, T0 + HOUR + MIN - 1)["user_purchases_1h"] == 1
    assert values_at(USER, events, T0 + HOUR + MIN)["user_purchases_1h"] == 0


def test_revenue_sums_in_integer_micro_units_whatever_the_order():
    amounts = [0.1, 0.2, 0.3, 19.99, 5.005]
    envs = [env(interaction(f"p{i}", T0 + i, "a", "purchase", revenue=a))
            for i, a in enumerate(amounts)]
    forward = values_at(USER, events_of(envs, "u:u1"), T0 + 10)
    backward = values_at(USER, list(reversed(events_of(envs, "u:u1"))), T0 + 10)
    assert forward == backward
    assert forward["user_revenue_1h"] == sum(micros(a) for a in amounts) / 1_000_000 == 25.595


def test_last_clicked_is_distinct_newest_first_bounded_and_windowed():
    clicks = [env(interaction("c1", T0 + 1, "a")), env(interaction("c2", T0 + 2, "b")),
              env(interaction("c3", T0 + 3, "a")), env(interaction("c4", T0 + 4, "c"))]
    events = events_of(clicks, "u:u1")
    assert values_at(USER, events, T0 + 4, last_clicked_n=2)["user_last_clicked"] == "c,a"
    assert values_at(USER, events, T0 + 2, last_clicked_n=5)["user_last_clicked"] == "b,a"
    assert values_at(USER, events, T0 + 25 * HOUR)["user_last_clicked"] == ""


def test_final_values_are_at_each_entitys_newest_event():
    envs = [env(serving("r1", T0)), env(interaction("c1", T0 + 5, "a"))]
    final = final_values(envs)
    assert final["item_performance"]["a"]["item_clicks_1h"] == 1
    assert final["item_performance"]["b"]["item_clicks_1h"] == 0
    assert final["user_activity"]["u1"]["user_last_clicked"] == "a"
