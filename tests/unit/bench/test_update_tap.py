from bench.update_tap import split


def test_split_divides_each_probe_delay_at_the_topic():
    sent = {"p1": 10_000, "p2": 11_000, "early": 1_000, "lost": 12_000}
    on_topic = {"p1": 10.4, "p2": 11.1, "early": 1.2}
    visible = {"p1": 10.9, "p2": 11.3, "early": 2.0, "lost": 13.0}
    out = split(sent, on_topic, visible, t_from=5.0)
    # "early" was sent before the window; "lost" never showed on the topic
    assert out["probes"] == 2
    assert out["job"]["p50_s"] == 0.25 and out["job"]["p99_s"] == 0.397
    assert out["writer_and_poll"]["p50_s"] == 0.35
    assert out["series"] == [[5.0, 0.4, 0.5], [6.0, 0.1, 0.2]]


def test_split_without_probes_has_no_percentiles():
    assert split({}, {}, {}, 0.0) == {"probes": 0, "series": []}
