package io.loopline.feedback;

/**
 * A decoded, valid input event with its source coordinates (a Flink POJO: public fields, so
 * Flink's POJO serializer, not Kryo, moves it between operators).
 */
public class InputEvent {
    public static final byte SERVING = 0;
    public static final byte INTERACTION = 1;
    public static final byte FEATURE_LOG = 2;

    public byte kind;
    public long eventTime;
    public String topic;
    public int partition;
    public long offset;
    public byte[] raw;

    public String userId;
    public String sessionId;
    public String requestId; // null for organic interactions

    // Serving events.
    public String modelVersion;
    public String arm;
    public String policy;
    public boolean fallback;
    public String[] itemIds;
    public int[] positions;
    public double[] scores;
    public double[] propensities;

    // Interactions.
    public String eventId;
    public String itemId;
    public String type;
    public double revenue;
    public Long dwellMs;
    public Integer position;

    // FeatureLogs (null otherwise: one null field on the serving/interaction path).
    public LoggedVectors log;

    public InputEvent() {}

    /** Serving events, the interactions they caused and their FeatureLog meet under the
     * request id. */
    public String joinKey() {
        if (kind == SERVING || requestId != null) {
            return requestId;
        }
        return "organic:" + eventId;
    }
}
