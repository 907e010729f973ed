package io.loopline.feedback;

import org.apache.avro.generic.GenericRecord;
import org.apache.flink.types.Row;

import java.nio.ByteBuffer;

/** DeadLetter envelopes (the contract in schemas/avro/dead_letter.v1.avsc), keyed by source
 * coordinates so a replay overwrites rather than duplicates. */
final class DeadLetters {
    private DeadLetters() {}

    static Row row(SchemaBook book, String sinkTopic, byte[] raw, String topic, int partition, long offset,
                   Long kafkaTs, String stage, String errorType, String reason, String fingerprint, String runId) {
        GenericRecord letter = book.newRecord(Names.DEAD_LETTER);
        letter.put("raw", ByteBuffer.wrap(raw == null ? new byte[0] : raw));
        letter.put("topic", topic);
        letter.put("partition", partition);
        letter.put("offset", offset);
        letter.put("kafka_timestamp", kafkaTs);
        letter.put("stage", stage);
        letter.put("error_type", errorType);
        letter.put("reason", reason);
        letter.put("schema_fingerprint", fingerprint);
        letter.put("failed_at", System.currentTimeMillis());
        letter.put("job_run_id", runId);
        return SinkRows.of(topic + "/" + partition + "/" + offset, book.encode(Names.DEAD_LETTER, letter), sinkTopic,
                kafkaTs);
    }
}
