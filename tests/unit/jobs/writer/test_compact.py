from hypothesis import given
from hypothesis import strategies as st

from feature_repo import names
from jobs.writer.compact import by_view, compact
from jobs.writer.updates import Update

U, ITEM = names.USER_ACTIVITY, names.ITEM_PERFORMANCE


def up(view: str, entity: str, ms: int, offset: int, partition: int = 0) -> Update:
    return Update(view, entity, ms, {"n": offset}, partition, offset, None)


def test_newest_event_time_wins_whatever_the_arrival_order():
    batch = [up(U, "a", 300, 0), up(U, "a", 100, 1), up(U, "a", 200, 2)]
    assert compact(batch) == [batch[0]]


def test_a_tie_goes_to_the_later_offset():
    first, later = up(U, "a", 100, 5), up(U, "a", 100, 9)
    assert compact([later, first]) == [later]
    assert compact([first, later]) == [later]


def test_views_are_separate_entities():
    # A user and an item may share an id string; they are different rows in Feast.
    out = compact([up(U, "x", 100, 0), up(ITEM, "x", 50, 1)])
    assert {(u.view, u.event_ms) for u in out} == {(U, 100), (ITEM, 50)}
    assert by_view(out) == {U: [out[0]], ITEM: [out[1]]}


def test_output_keeps_first_seen_entity_order():
    out = compact([up(U, "b", 1, 0), up(U, "a", 1, 1), up(U, "b", 2, 2)])
    assert [u.entity_id for u in out] == ["b", "a"]


updates = st.lists(
    st.builds(up, st.sampled_from([U, ITEM]), st.sampled_from("abcd"),
              st.integers(0, 5), st.integers(0, 50)),
    max_size=40)


@given(updates)
def test_matches_a_brute_force_newest_per_entity(batch):
    out = compact(batch)
    keys = {(u.view, u.entity_id) for u in batch}
    assert len(out) == len(keys)
    for winner in out:
        rivals = [u for u in batch if (u.view, u.entity_id) == (winner.view, winner.entity_id)]
        assert (winner.event_ms, winner.offset) == max((u.event_ms, u.offset) for u in rivals)
