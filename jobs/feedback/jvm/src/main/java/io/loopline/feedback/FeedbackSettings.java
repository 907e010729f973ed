package io.loopline.feedback;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The job's settings as the Python side built them (jobs/feedback/jvm_settings.py): one JSON
 * document, so the two sides share one frozen config rather than a long constructor.
 */
public final class FeedbackSettings implements Serializable {
    private static final long serialVersionUID = 1L;

    public final String runId;
    public final String servingTopic;
    public final String interactionsTopic;
    /** Serving's FeatureLog topic, or null: the job does not join logged features. */
    public final String featureLogTopic;
    public final String labelledTopic;
    public final String unmatchedTopic;
    public final String lateTopic;
    public final String deadLetterTopic;
    public final String featureUpdatesTopic;
    public final long outOfOrdernessMs;
    public final long maxFutureMs;
    public final long maturityWindowMs;
    public final long closedRequestTtlMs;
    public final double positionBiasEta;
    public final int lastClickedN;
    public final long slicePartitionMs;
    public final long onlineFlushMs;
    public final int partitionChunkRows;
    public final long featureLogSliceMs;
    public final boolean offlineFeatureLog;
    /** Every writer schema known when the job was built (shipped files + the schemas topic). */
    public final List<String> writerSchemas;
    /** Reader schema per full name (the newest shipped version). */
    public final Map<String, String> readerSchemas;
    /** Schemas topic and Kafka client properties, or null: no refresh on unknown fingerprints. */
    public final String schemasTopic;
    public final Map<String, String> kafkaProperties;
    /** The Kafka sink's producer properties (the connector's shaded client). */
    public final Map<String, String> sinkProperties;

    private FeedbackSettings(JsonNode n) {
        runId = n.path("run_id").asText();
        servingTopic = n.path("serving_topic").asText();
        interactionsTopic = n.path("interactions_topic").asText();
        featureLogTopic = n.path("feature_log_topic").asText("").isEmpty() ? null : n.path("feature_log_topic").asText();
        labelledTopic = n.path("labelled_topic").asText();
        unmatchedTopic = n.path("unmatched_topic").asText();
        lateTopic = n.path("late_topic").asText();
        deadLetterTopic = n.path("dead_letter_topic").asText();
        featureUpdatesTopic = n.path("feature_updates_topic").asText();
        outOfOrdernessMs = n.path("out_of_orderness_ms").asLong();
        maxFutureMs = n.path("max_future_ms").asLong();
        maturityWindowMs = n.path("maturity_window_ms").asLong();
        closedRequestTtlMs = n.path("closed_request_ttl_ms").asLong();
        positionBiasEta = n.path("position_bias_eta").asDouble();
        lastClickedN = n.path("last_clicked_n").asInt();
        slicePartitionMs = n.path("slice_partition_ms").asLong();
        onlineFlushMs = n.path("online_flush_ms").asLong();
        partitionChunkRows = n.path("partition_chunk_rows").asInt();
        featureLogSliceMs = n.path("feature_log_slice_ms").asLong(slicePartitionMs);
        offlineFeatureLog = n.path("offline_feature_log").asBoolean(true);
        writerSchemas = new ArrayList<>();
        n.path("writer_schemas").forEach(s -> writerSchemas.add(s.asText()));
        readerSchemas = new HashMap<>();
        n.path("reader_schemas").fields().forEachRemaining(e -> readerSchemas.put(e.getKey(), e.getValue().asText()));
        schemasTopic = n.path("schemas_topic").isTextual() ? n.path("schemas_topic").asText() : null;
        kafkaProperties = new HashMap<>();
        n.path("kafka_properties").fields().forEachRemaining(e -> kafkaProperties.put(e.getKey(), e.getValue().asText()));
        sinkProperties = new HashMap<>();
        n.path("sink_properties").fields().forEachRemaining(e -> sinkProperties.put(e.getKey(), e.getValue().asText()));
    }

    /** The topics the job reads, in a fixed order: {@link SourceRefs} index into it. */
    public String[] sourceTopics() {
        return featureLogTopic == null ? new String[] {servingTopic, interactionsTopic}
                : new String[] {servingTopic, interactionsTopic, featureLogTopic};
    }

    /** A source topic's index in {@link #sourceTopics()}. */
    public int topicIndex(String topic) {
        if (topic.equals(servingTopic)) return 0;
        if (topic.equals(interactionsTopic)) return 1;
        if (topic.equals(featureLogTopic)) return 2;
        throw new IllegalArgumentException("not a source topic: " + topic);
    }

    public static FeedbackSettings fromJson(String json) {
        try {
            return new FeedbackSettings(new ObjectMapper().readTree(json));
        } catch (IOException e) {
            throw new UncheckedIOException("feedback job settings are not valid JSON", e);
        }
    }
}
