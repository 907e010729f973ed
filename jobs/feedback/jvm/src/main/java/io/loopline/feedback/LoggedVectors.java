package io.loopline.feedback;

import org.apache.avro.generic.GenericRecord;

import java.util.List;

/**
 * The vectors of one FeatureLog (schemas/avro/feature_log.v1.avsc) as serving scored a slate
 * with them: the user's once, each slate item's in slate order. A Flink POJO hanging off
 * {@link InputEvent#log}, so serving events and interactions carry one null field, not eight.
 * Values are kept as logged (NaN = the store had none); their order and length are checked
 * where they are used (training, against the feature service version), not per event here.
 */
public class LoggedVectors {
    /** A feature_time the store did not have (null in the record). */
    public static final long NO_TIME = Long.MIN_VALUE;

    public String featureServiceVersion;
    public double sampleRate;
    public long userFeatureTime = NO_TIME;
    public double[] userValues;
    public String[] itemIds;
    public long[] itemFeatureTimes;
    public double[][] itemValues;

    public LoggedVectors() {}

    static LoggedVectors of(GenericRecord r) {
        LoggedVectors v = new LoggedVectors();
        v.featureServiceVersion = r.get("feature_service_version").toString();
        v.sampleRate = (Double) r.get("sample_rate");
        GenericRecord user = (GenericRecord) r.get("user");
        v.userFeatureTime = time(user.get("feature_time"));
        v.userValues = values(user);
        @SuppressWarnings("unchecked")
        List<GenericRecord> items = (List<GenericRecord>) r.get("items");
        int n = items.size();
        v.itemIds = new String[n];
        v.itemFeatureTimes = new long[n];
        v.itemValues = new double[n][];
        for (int i = 0; i < n; i++) {
            GenericRecord item = items.get(i);
            v.itemIds[i] = item.get("entity_id").toString();
            v.itemFeatureTimes[i] = time(item.get("feature_time"));
            v.itemValues[i] = values(item);
        }
        return v;
    }

    /** The slate position of `item` in the log, or -1 (a slate item serving did not log). */
    int indexOf(String item) {
        for (int i = 0; i < itemIds.length; i++) {
            if (itemIds[i].equals(item)) return i;
        }
        return -1;
    }

    /** The slice columns of one labelled impression (jobs/transforms/slices.LOGGED_COLUMNS; the
     * log's partition and offset are in the LabelledImpression record itself). */
    void putColumns(Json json, String item) {
        int i = indexOf(item);
        json.put("feature_service_version", featureServiceVersion)
                .put("feature_log_sample_rate", sampleRate)
                .put("logged_user_feature_time", userFeatureTime == NO_TIME ? null : (Long) userFeatureTime)
                .put("logged_item_feature_time", i < 0 || itemFeatureTimes[i] == NO_TIME ? null : (Long) itemFeatureTimes[i])
                .putDoubles("logged_user_values", userValues)
                .putDoubles("logged_item_values", i < 0 ? null : itemValues[i]);
    }

    private static long time(Object value) {
        return value == null ? NO_TIME : (Long) value;
    }

    private static double[] values(GenericRecord entity) {
        @SuppressWarnings("unchecked")
        List<Double> list = (List<Double>) entity.get("values");
        double[] out = new double[list.size()];
        for (int i = 0; i < out.length; i++) out[i] = list.get(i);
        return out;
    }
}
