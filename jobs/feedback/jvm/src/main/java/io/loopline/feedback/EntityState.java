package io.loopline.feedback;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Bucketed window counters of one entity. A value at time `at` counts every bucket any part
 * of which lies in (at - window, at]: exact up to one bucket at the old edge of the window
 * (1 min for the 1 h window, 15 min for the 24 h one). The value can only change at an event
 * or when a bucket leaves a window (start + bucket + window): {@link #departures}.
 */
public class EntityState {
    static final long[] WINDOW_MS = {3_600_000L, 86_400_000L};
    static final long[] BUCKET_MS = {60_000L, 900_000L};
    static final String[] WINDOW_NAME = {"1h", "24h"};
    /** The last-clicked list keeps distinct items whose click is still in the 24 h window. */
    static final int CLICK_WINDOW = 1;

    public byte kind;
    public List<TreeMap<Long, Bucket>> windows = new ArrayList<>();
    /**
     * Per window, the sum of its buckets, kept by apply and evict: row() reads it instead of
     * adding up to 96 buckets for every row (that loop was a fifth of the job's CPU). Integer
     * sums, so it is exactly the loop's result.
     */
    public List<Bucket> sums = new ArrayList<>();
    /** Distinct clicked items, each with its newest click time. */
    public Map<String, Long> clicked = new HashMap<>();
    public long latestMs = Long.MIN_VALUE;

    public EntityState() {}

    EntityState(byte kind) {
        this.kind = kind;
        for (int w = 0; w < WINDOW_MS.length; w++) {
            windows.add(new TreeMap<>());
            sums.add(new Bucket());
        }
    }

    /** State written before the sums existed: rebuild them from the buckets. */
    private void ensureSums() {
        if (sums.size() == windows.size()) return;
        sums = new ArrayList<>();
        for (TreeMap<Long, Bucket> w : windows) {
            Bucket sum = new Bucket();
            for (Bucket b : w.values()) sum.add(b, 1);
            sums.add(sum);
        }
    }

    /** Counters of one time bucket. */
    public static class Bucket {
        public long impressions;
        public long clicks;
        public long purchases;
        public long addToCart;
        public long revenueMicros;
        /** Item impressions by slate position (expected clicks are computed from these). */
        public long[] byPosition = new long[0];

        public Bucket() {}

        void add(FeatureDelta d) {
            impressions += d.impressions;
            clicks += d.clicks;
            purchases += d.purchases;
            addToCart += d.addToCart;
            revenueMicros += d.revenueMicros;
            if (d.position >= 0 && d.impressions > 0) {
                if (byPosition.length <= d.position) {
                    byPosition = java.util.Arrays.copyOf(byPosition, d.position + 1);
                }
                byPosition[d.position] += d.impressions;
            }
        }

        /** this += sign * other */
        void add(Bucket other, int sign) {
            impressions += sign * other.impressions;
            clicks += sign * other.clicks;
            purchases += sign * other.purchases;
            addToCart += sign * other.addToCart;
            revenueMicros += sign * other.revenueMicros;
            if (byPosition.length < other.byPosition.length) {
                byPosition = java.util.Arrays.copyOf(byPosition, other.byPosition.length);
            }
            for (int p = 0; p < other.byPosition.length; p++) byPosition[p] += sign * other.byPosition[p];
        }
    }

    /** Apply a delta; returns the departure times of buckets this delta created. */
    List<Long> apply(FeatureDelta d) {
        ensureSums();
        List<Long> created = new ArrayList<>(2);
        for (int w = 0; w < WINDOW_MS.length; w++) {
            long start = d.ts - Math.floorMod(d.ts, BUCKET_MS[w]);
            Bucket b = windows.get(w).get(start);
            if (b == null) {
                b = new Bucket();
                windows.get(w).put(start, b);
                created.add(start + BUCKET_MS[w] + WINDOW_MS[w]);
            }
            b.add(d);
            sums.get(w).add(d);
        }
        if (d.clickedItem != null) {
            clicked.merge(d.clickedItem, d.ts, Math::max);
        }
        latestMs = Math.max(latestMs, d.ts);
        return created;
    }

    /** Drop buckets (and clicks) that no longer count at `at`. */
    void evict(long at) {
        ensureSums();
        for (int w = 0; w < WINDOW_MS.length; w++) {
            Iterator<Map.Entry<Long, Bucket>> it = windows.get(w).entrySet().iterator();
            while (it.hasNext()) {
                Map.Entry<Long, Bucket> e = it.next();
                if (e.getKey() + BUCKET_MS[w] > at - WINDOW_MS[w]) {
                    break; // sorted by start: the rest still count
                }
                sums.get(w).add(e.getValue(), -1);
                it.remove();
            }
        }
        long bucket = BUCKET_MS[CLICK_WINDOW];
        long window = WINDOW_MS[CLICK_WINDOW];
        clicked.values().removeIf(ts -> ts - Math.floorMod(ts, bucket) + bucket <= at - window);
    }

    boolean isEmpty() {
        for (TreeMap<Long, Bucket> w : windows) {
            if (!w.isEmpty()) return false;
        }
        return clicked.isEmpty();
    }

    /** Feature values at `at` (call evict(at) first), in {@link FeatureColumns} order. */
    FeatureLogRow row(String entityId, long at, double eta, int lastClickedN) {
        FeatureLogRow row = new FeatureLogRow();
        row.kind = kind;
        row.entityId = entityId;
        row.ts = at;
        boolean user = kind == FeatureDelta.USER;
        row.longs = new long[user ? 6 : 8];
        row.doubles = new double[user ? 2 : 6];
        ensureSums();
        for (int w = 0; w < WINDOW_MS.length; w++) {
            Bucket total = inWindow(w, at);
            long imp = total.impressions, clk = total.clicks, pur = total.purchases;
            long atc = total.addToCart, rev = total.revenueMicros;
            long[] byPos = total.byPosition;
            if (user) {
                row.longs[3 * w] = imp;
                row.longs[3 * w + 1] = clk;
                row.longs[3 * w + 2] = pur;
                row.doubles[w] = rev / 1_000_000.0; // the nearest double to the exact sum
            } else {
                double expected = 0.0;
                for (int p = 0; p < byPos.length; p++) {
                    if (byPos[p] > 0) expected += byPos[p] * examination(p, eta);
                }
                row.longs[4 * w] = imp;
                row.longs[4 * w + 1] = clk;
                row.longs[4 * w + 2] = atc;
                row.longs[4 * w + 3] = pur;
                row.doubles[3 * w] = imp > 0 ? (double) clk / imp : 0.0;
                row.doubles[3 * w + 1] = imp > 0 ? (double) pur / imp : 0.0;
                row.doubles[3 * w + 2] = expected > 0 ? clk / expected : 0.0;
            }
        }
        if (user) {
            row.text = lastClicked(at, lastClickedN);
        }
        return row;
    }

    /** The buckets of window `w` that count at `at`: the running sum when every bucket does
     * (always, after evict(at) with no bucket newer than `at`), else added up. */
    private Bucket inWindow(int w, long at) {
        TreeMap<Long, Bucket> buckets = windows.get(w);
        if (buckets.isEmpty()
                || (buckets.lastKey() <= at && buckets.firstKey() + BUCKET_MS[w] > at - WINDOW_MS[w])) {
            return sums.get(w);
        }
        Bucket total = new Bucket();
        for (Map.Entry<Long, Bucket> e : buckets.entrySet()) {
            long start = e.getKey();
            if (start > at || start + BUCKET_MS[w] <= at - WINDOW_MS[w]) continue;
            total.add(e.getValue(), 1);
        }
        return total;
    }

    /** The same values by feature name (the online FeatureUpdate's map). */
    static Map<String, Object> values(FeatureLogRow row) {
        Map<String, Object> out = new java.util.HashMap<>();
        String[] longs = FeatureColumns.longs(row.kind);
        String[] doubles = FeatureColumns.doubles(row.kind);
        for (int i = 0; i < longs.length; i++) out.put(longs[i], row.longs[i]);
        for (int i = 0; i < doubles.length; i++) out.put(doubles[i], row.doubles[i]);
        if (row.text != null) out.put(FeatureColumns.USER_TEXT, row.text);
        return out;
    }

    /** As jobs/transforms/features.examination: a plain division for eta = 1, so the two agree
     * to the last bit. */
    static double examination(int position, double eta) {
        return eta == 1.0 ? 1.0 / (1.0 + position) : Math.pow(1.0 + position, -eta);
    }

    private String lastClicked(long at, int lastClickedN) {
        long bucket = BUCKET_MS[CLICK_WINDOW];
        long window = WINDOW_MS[CLICK_WINDOW];
        List<Map.Entry<String, Long>> live = new ArrayList<>();
        for (Map.Entry<String, Long> e : clicked.entrySet()) {
            long start = e.getValue() - Math.floorMod(e.getValue(), bucket);
            if (e.getValue() <= at && start + bucket > at - window) live.add(e);
        }
        // Newest first; a tie in time is broken by item id, so the order never depends on arrival.
        live.sort((a, b) -> a.getValue().equals(b.getValue()) ? b.getKey().compareTo(a.getKey())
                : Long.compare(b.getValue(), a.getValue()));
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < Math.min(live.size(), lastClickedN); i++) {
            if (i > 0) out.append(',');
            out.append(live.get(i).getKey());
        }
        return out.toString();
    }
}
