package io.loopline.feedback;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

/**
 * The compacted schemas topic (schemas/registry.py): a producer publishes its writer schema
 * before its first record with it, so a decoder that meets an unknown fingerprint re-reads
 * the topic once and finds it. Rate-limited per fingerprint so garbage cannot make every
 * record reload the topic.
 */
final class SchemaTopic {
    private static final long MIN_REFRESH_MS = 5_000;
    private final String topic;
    private final Map<String, String> properties;
    private final Map<Long, Long> attempts = new HashMap<>();

    SchemaTopic(String topic, Map<String, String> properties) {
        this.topic = topic;
        this.properties = properties;
    }

    /** Reload into `book` unless this fingerprint was tried recently; true if it is known now. */
    boolean refresh(SchemaBook book, long fingerprint) {
        long now = System.currentTimeMillis();
        Long last = attempts.get(fingerprint);
        if (last != null && now - last < MIN_REFRESH_MS) {
            return false;
        }
        attempts.put(fingerprint, now);
        for (String json : readAll()) {
            try {
                book.addWriter(json);
            } catch (RuntimeException e) {
                // A schema Avro cannot parse was never usable by a producer either: skip it.
            }
        }
        return book.knows(fingerprint);
    }

    private List<String> readAll() {
        Properties props = new Properties();
        props.putAll(properties);
        props.put("enable.auto.commit", "false");
        props.put("key.deserializer", ByteArrayDeserializer.class.getName());
        props.put("value.deserializer", ByteArrayDeserializer.class.getName());
        List<String> schemas = new ArrayList<>();
        ClassLoader previous = Thread.currentThread().getContextClassLoader();
        // kafka-clients loads its classes through the context loader: make it ours.
        Thread.currentThread().setContextClassLoader(SchemaTopic.class.getClassLoader());
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> partitions = new ArrayList<>();
            List<PartitionInfo> infos = consumer.partitionsFor(topic, Duration.ofSeconds(10));
            if (infos == null) {
                return schemas;
            }
            for (PartitionInfo info : infos) {
                partitions.add(new TopicPartition(topic, info.partition()));
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            Map<TopicPartition, Long> end = consumer.endOffsets(partitions);
            long deadline = System.currentTimeMillis() + 10_000;
            while (System.currentTimeMillis() < deadline && behind(consumer, end)) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    if (r.value() != null) {
                        schemas.add(new String(r.value(), StandardCharsets.UTF_8));
                    }
                }
            }
        } catch (RuntimeException e) {
            // The registry is an aid: unreachable, the record is dead-lettered as unknown.
        } finally {
            Thread.currentThread().setContextClassLoader(previous);
        }
        return schemas;
    }

    private static boolean behind(KafkaConsumer<byte[], byte[]> consumer, Map<TopicPartition, Long> end) {
        for (Map.Entry<TopicPartition, Long> e : end.entrySet()) {
            if (consumer.position(e.getKey()) < e.getValue()) {
                return true;
            }
        }
        return false;
    }
}
