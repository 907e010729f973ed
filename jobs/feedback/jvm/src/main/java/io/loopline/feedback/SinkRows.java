package io.loopline.feedback;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.types.Row;

import java.nio.charset.StandardCharsets;
import java.time.Instant;

/** Rows of the job's one Kafka sink table: key, value, topic (metadata), record timestamp. */
public final class SinkRows {
    public static final RowTypeInfo TYPE = new RowTypeInfo(
            new TypeInformation<?>[] {
                Types.PRIMITIVE_ARRAY(Types.BYTE), Types.PRIMITIVE_ARRAY(Types.BYTE), Types.STRING, Types.INSTANT
            },
            new String[] {"k", "v", "topic", "ts"});

    private SinkRows() {}

    static Row of(String key, byte[] value, String topic, Long timestampMs) {
        return Row.of(key == null ? null : key.getBytes(StandardCharsets.UTF_8), value, topic,
                timestampMs == null ? null : Instant.ofEpochMilli(timestampMs));
    }
}
