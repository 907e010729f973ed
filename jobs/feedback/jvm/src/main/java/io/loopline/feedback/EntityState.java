package io.loopline.feedback;

import java.util.Arrays;
import java.util.Map;

/**
 * Bucketed window counters of one entity. A value at time `at` counts every bucket any part
 * of which lies in (at - window, at]: exact up to one bucket at the old edge of the window
 * (1 min for the 1 h window, 15 min for the 24 h one). The value can only change at an event
 * or when a bucket leaves a window (start + bucket + window): the departures {@link #apply}
 * reports.
 *
 * Buckets are kept per window as an array in start order (at most 61 and 97 of them), not a
 * sorted map: events arrive nearly in time order, so a delta almost always lands in the
 * newest bucket, and boxed-key tree maps were a tenth of the job's CPU. Plain arrays of
 * plain objects also let Flink's POJO serializer checkpoint the state without Kryo.
 */
public class EntityState {
    static final long[] WINDOW_MS = {3_600_000L, 86_400_000L};
    static final long[] BUCKET_MS = {60_000L, 900_000L};
    static final String[] WINDOW_NAME = {"1h", "24h"};
    /** The last-clicked list keeps distinct items whose click is still in the 24 h window. */
    static final int CLICK_WINDOW = 1;

    public byte kind;
    /** Per window, its buckets in start order. */
    public Bucket[][] windows;
    /**
     * Per window, the sum of its buckets, kept by apply and evict: row() reads it instead of
     * adding up to 96 buckets for every row. Integer sums, so it is exactly the loop's result.
     */
    public Bucket[] sums;
    /** Distinct clicked items, each with its newest click time (parallel arrays). */
    public String[] clickedItems = new String[0];
    public long[] clickedTs = new long[0];
    /** No click leaves the window before this time: evict looks at clicks only from then. */
    public long clickEvictAt = Long.MAX_VALUE;
    public long latestMs = Long.MIN_VALUE;

    public EntityState() {}

    EntityState(byte kind) {
        this.kind = kind;
        windows = new Bucket[WINDOW_MS.length][];
        sums = new Bucket[WINDOW_MS.length];
        for (int w = 0; w < WINDOW_MS.length; w++) {
            windows[w] = new Bucket[0];
            sums[w] = new Bucket();
        }
    }

    /** Counters of one time bucket. */
    public static class Bucket {
        public long start;
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
                    byPosition = Arrays.copyOf(byPosition, d.position + 1);
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
                byPosition = Arrays.copyOf(byPosition, other.byPosition.length);
            }
            for (int p = 0; p < other.byPosition.length; p++) byPosition[p] += sign * other.byPosition[p];
        }
    }

    /**
     * Apply a delta; writes the departure times of the buckets it created into `created`
     * (room for one per window) and returns how many.
     */
    int apply(FeatureDelta d, long[] created) {
        int n = 0;
        for (int w = 0; w < WINDOW_MS.length; w++) {
            long start = d.ts - Math.floorMod(d.ts, BUCKET_MS[w]);
            Bucket[] buckets = windows[w];
            int i = find(buckets, start);
            Bucket b;
            if (i >= 0) {
                b = buckets[i];
            } else {
                b = new Bucket();
                b.start = start;
                windows[w] = insert(buckets, -i - 1, b);
                created[n++] = start + BUCKET_MS[w] + WINDOW_MS[w];
            }
            b.add(d);
            sums[w].add(d);
        }
        if (d.clickedItem != null) {
            click(d.clickedItem, d.ts);
        }
        latestMs = Math.max(latestMs, d.ts);
        return n;
    }

    /** Index of the bucket starting at `start`, else -(insertion point) - 1. The newest bucket
     * is checked first: nearly every delta lands there or after it. */
    private static int find(Bucket[] buckets, long start) {
        int last = buckets.length - 1;
        if (last < 0 || buckets[last].start < start) return -buckets.length - 1;
        if (buckets[last].start == start) return last;
        int lo = 0, hi = last - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            long s = buckets[mid].start;
            if (s < start) lo = mid + 1;
            else if (s > start) hi = mid - 1;
            else return mid;
        }
        return -lo - 1;
    }

    private static Bucket[] insert(Bucket[] buckets, int at, Bucket b) {
        Bucket[] out = new Bucket[buckets.length + 1];
        System.arraycopy(buckets, 0, out, 0, at);
        out[at] = b;
        System.arraycopy(buckets, at, out, at + 1, buckets.length - at);
        return out;
    }

    private void click(String item, long ts) {
        for (int i = 0; i < clickedItems.length; i++) {
            if (clickedItems[i].equals(item)) {
                clickedTs[i] = Math.max(clickedTs[i], ts);
                return;
            }
        }
        clickedItems = Arrays.copyOf(clickedItems, clickedItems.length + 1);
        clickedTs = Arrays.copyOf(clickedTs, clickedTs.length + 1);
        clickedItems[clickedItems.length - 1] = item;
        clickedTs[clickedTs.length - 1] = ts;
        clickEvictAt = Math.min(clickEvictAt, clickDeparture(ts));
    }

    /** When a click at `ts` stops counting: its 24 h bucket leaves the window. */
    private static long clickDeparture(long ts) {
        long bucket = BUCKET_MS[CLICK_WINDOW];
        return ts - Math.floorMod(ts, bucket) + bucket + WINDOW_MS[CLICK_WINDOW];
    }

    /** Drop buckets (and clicks) that no longer count at `at`. */
    void evict(long at) {
        for (int w = 0; w < WINDOW_MS.length; w++) {
            Bucket[] buckets = windows[w];
            int k = 0;
            while (k < buckets.length && buckets[k].start + BUCKET_MS[w] <= at - WINDOW_MS[w]) {
                sums[w].add(buckets[k], -1);
                k++;
            }
            if (k > 0) {
                windows[w] = Arrays.copyOfRange(buckets, k, buckets.length);
            }
        }
        if (at >= clickEvictAt) {
            int kept = 0;
            long next = Long.MAX_VALUE;
            for (int i = 0; i < clickedItems.length; i++) {
                long departure = clickDeparture(clickedTs[i]);
                if (at >= departure) continue;
                clickedItems[kept] = clickedItems[i];
                clickedTs[kept] = clickedTs[i];
                kept++;
                next = Math.min(next, departure);
            }
            clickedItems = Arrays.copyOf(clickedItems, kept);
            clickedTs = Arrays.copyOf(clickedTs, kept);
            clickEvictAt = next;
        }
    }

    boolean isEmpty() {
        for (Bucket[] w : windows) {
            if (w.length > 0) return false;
        }
        return clickedItems.length == 0;
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
        Bucket[] buckets = windows[w];
        if (buckets.length == 0
                || (buckets[buckets.length - 1].start <= at && buckets[0].start + BUCKET_MS[w] > at - WINDOW_MS[w])) {
            return sums[w];
        }
        Bucket total = new Bucket();
        for (Bucket b : buckets) {
            if (b.start > at || b.start + BUCKET_MS[w] <= at - WINDOW_MS[w]) continue;
            total.add(b, 1);
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

    /** Up to n distinct items clicked in the window before `at`, newest first; a tie in time
     * is broken by item id (descending), so the order never depends on arrival. */
    private String lastClicked(long at, int lastClickedN) {
        long bucket = BUCKET_MS[CLICK_WINDOW];
        long window = WINDOW_MS[CLICK_WINDOW];
        Integer[] live = new Integer[clickedItems.length];
        int n = 0;
        for (int i = 0; i < clickedItems.length; i++) {
            long ts = clickedTs[i];
            long start = ts - Math.floorMod(ts, bucket);
            if (ts <= at && start + bucket > at - window) live[n++] = i;
        }
        Arrays.sort(live, 0, n, (a, b) -> clickedTs[a] == clickedTs[b]
                ? clickedItems[b].compareTo(clickedItems[a]) : Long.compare(clickedTs[b], clickedTs[a]));
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < Math.min(n, lastClickedN); i++) {
            if (i > 0) out.append(',');
            out.append(clickedItems[live[i]]);
        }
        return out.toString();
    }
}
