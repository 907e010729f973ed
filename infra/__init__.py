"""Local infrastructure: start, stop and inspect Kafka (KRaft), Redis and a Flink session cluster.

One module per service (`kafka_broker`, `redis_server`, `flink_cluster`), composed by
`stack`; configuration comes from ServicesConfig ([services] / LOOPLINE_SERVICES_*) and all
state lives under the Loopline home (`<home>/services/<name>`). JVM artifacts are described by
the Maven poms in infra/jvm and resolved by `make jars`.
"""
