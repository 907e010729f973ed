package io.loopline.feedback;

/**
 * One row of the offline feature log: an entity's values as of `ts`, the event time at which
 * they became true. Primitive arrays in a fixed column order ({@link FeatureColumns}), so
 * moving and buffering a row costs a few copies, not text.
 */
public class FeatureLogRow {
    public byte kind;
    public String entityId;
    public long ts;
    public long[] longs;
    public double[] doubles;
    /** The one text feature (user_last_clicked), or null for items. */
    public String text;

    public FeatureLogRow() {}

    public String view() {
        return kind == FeatureDelta.USER ? Names.USER_ACTIVITY : Names.ITEM_PERFORMANCE;
    }
}
