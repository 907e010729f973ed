package io.loopline.feedback;

import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.util.Collector;

/** One contribution of one accepted input event to one entity's counters. Integers only
 * (revenue in micro-units), so sums do not depend on the order events arrive in. */
public class FeatureDelta {
    public static final byte USER = 0;
    public static final byte ITEM = 1;

    public byte kind;
    public String entityId;
    public long ts;
    public int impressions;
    public int clicks;
    public int purchases;
    public int addToCart;
    public long revenueMicros;
    /** Slate position of an item impression (examination model), else -1. */
    public int position = -1;
    public String clickedItem;

    public FeatureDelta() {}

    FeatureDelta(byte kind, String entityId, long ts) {
        this.kind = kind;
        this.entityId = entityId;
        this.ts = ts;
    }

    public String key() {
        return (kind == USER ? "u:" : "i:") + entityId;
    }

    static long micros(double amount) {
        return Math.round(amount * 1_000_000.0);
    }

    /** Split an accepted input event into per-entity deltas (as jobs/transforms/features.py). */
    public static class FromEvents implements FlatMapFunction<InputEvent, FeatureDelta> {
        private static final long serialVersionUID = 1L;

        @Override
        public void flatMap(InputEvent e, Collector<FeatureDelta> out) {
            if (e.kind == InputEvent.SERVING) {
                FeatureDelta user = new FeatureDelta(USER, e.userId, e.eventTime);
                user.impressions = e.itemIds.length;
                out.collect(user);
                for (int i = 0; i < e.itemIds.length; i++) {
                    FeatureDelta item = new FeatureDelta(ITEM, e.itemIds[i], e.eventTime);
                    item.impressions = 1;
                    item.position = e.positions[i];
                    out.collect(item);
                }
                return;
            }
            FeatureDelta user = new FeatureDelta(USER, e.userId, e.eventTime);
            FeatureDelta item = new FeatureDelta(ITEM, e.itemId, e.eventTime);
            switch (e.type) {
                case "click":
                    user.clicks = 1;
                    user.clickedItem = e.itemId;
                    item.clicks = 1;
                    out.collect(user);
                    out.collect(item);
                    break;
                case "purchase":
                    user.purchases = 1;
                    user.revenueMicros = micros(e.revenue);
                    item.purchases = 1;
                    out.collect(user);
                    out.collect(item);
                    break;
                case "add_to_cart":
                    item.addToCart = 1;
                    out.collect(item);
                    break;
                default:
                    break; // views feed labels (dwell), not these counters
            }
        }
    }
}
