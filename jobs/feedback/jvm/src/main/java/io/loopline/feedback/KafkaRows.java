package io.loopline.feedback;

import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.types.Row;

import java.time.Instant;
import java.util.Properties;

/**
 * The job's one Kafka sink: every output row ({@link SinkRows}: key, value, topic, record
 * timestamp) goes to its own topic, at least once (with the checkpoints). Flink's KafkaSink
 * directly, not a SQL sink table: the table path converted each of ~3 rows per input event
 * to internal rows, copied them and ran a projection before the producer saw them (half of
 * the sink's CPU).
 */
final class KafkaRows {
    private KafkaRows() {}

    static void sink(DataStream<Row> rows, FeedbackSettings s, String name) {
        Properties producer = new Properties();
        producer.putAll(s.sinkProperties);
        KafkaSink<Row> sink = KafkaSink.<Row>builder()
                .setBootstrapServers(producer.getProperty("bootstrap.servers"))
                .setKafkaProducerConfig(producer)
                .setRecordSerializer(new ByTopic())
                .setDeliveryGuarantee(DeliveryGuarantee.AT_LEAST_ONCE)
                .build();
        rows.sinkTo(sink).name(name).uid(name);
    }

    /** A row as a record of its own topic; no partition, so Kafka's partitioner keys it. */
    static final class ByTopic implements KafkaRecordSerializationSchema<Row> {
        private static final long serialVersionUID = 1L;

        @Override
        public ProducerRecord<byte[], byte[]> serialize(Row row, KafkaSinkContext context, Long timestamp) {
            Instant ts = (Instant) row.getField(3);
            return new ProducerRecord<>((String) row.getField(2), null,
                    ts == null ? null : ts.toEpochMilli(), (byte[]) row.getField(0), (byte[]) row.getField(1));
        }
    }
}
