package io.loopline.feedback;

import java.util.Arrays;

/**
 * Everything {@link WindowFeatures} keeps for one entity, in one state value: one state
 * lookup per call instead of five, and the entity's due points kept here rather than as one
 * Flink timer each (the timer queue's sift and poll were an eighth of the job's CPU).
 * Sorted primitive arrays with sizes, not tree maps: deltas arrive nearly in time order, so
 * adding is an append and the watermark consumes a prefix (removed once per firing).
 */
public class FeatureState {
    private static final FeatureDelta[] NO_DELTAS = new FeatureDelta[0];

    /** Applied on arrival; what the online store gets. */
    public EntityState online;
    /** Event time the online value was last evaluated at (its newest event or a decay). */
    public long onlineAt = Long.MIN_VALUE;
    /** The online value changed since it was last emitted. */
    public boolean dirty;
    /** Applied in event-time order once the watermark passes: the offline feature log. */
    public EntityState offline;
    /** Deltas waiting for the watermark, by event time (pending[0..pendingSize)). */
    public FeatureDelta[] pending = NO_DELTAS;
    public int pendingSize;
    /** Distinct event times at which something is due, ascending (due[0..dueSize)): a
     * pending delta, or a bucket leaving a window. */
    public long[] due = new long[0];
    public int dueSize;
    /** The one event-time timer registered for these points (Long.MAX_VALUE: none). */
    public long armedAt = Long.MAX_VALUE;

    public FeatureState() {}

    FeatureState(byte kind) {
        online = new EntityState(kind);
    }

    void addPending(FeatureDelta d) {
        int at = pendingSize;
        while (at > 0 && pending[at - 1].ts > d.ts) at--;
        if (pendingSize == pending.length) {
            pending = Arrays.copyOf(pending, Math.max(4, 2 * pendingSize));
        }
        System.arraycopy(pending, at, pending, at + 1, pendingSize - at);
        pending[at] = d;
        pendingSize++;
        addDue(d.ts);
    }

    /** Apply `d` to `target` (online or offline); the buckets it starts are due to leave.
     * `scratch` holds the departures (one slot per window), reused across calls. */
    void apply(EntityState target, FeatureDelta d, long[] scratch) {
        int n = target.apply(d, scratch);
        for (int i = 0; i < n; i++) addDue(scratch[i]);
    }

    void addDue(long t) {
        int i = Arrays.binarySearch(due, 0, dueSize, t);
        if (i >= 0) return;
        int at = -i - 1;
        if (dueSize == due.length) {
            due = Arrays.copyOf(due, Math.max(4, 2 * dueSize));
        }
        System.arraycopy(due, at, due, at + 1, dueSize - at);
        due[at] = t;
        dueSize++;
    }

    /** Forget the first `dues` due points and `deltas` pending deltas (consumed in order). */
    void consumed(int dues, int deltas) {
        System.arraycopy(due, dues, due, 0, dueSize - dues);
        dueSize -= dues;
        System.arraycopy(pending, deltas, pending, 0, pendingSize - deltas);
        Arrays.fill(pending, pendingSize - deltas, pendingSize, null);
        pendingSize -= deltas;
        if (pendingSize == 0 && pending.length > 16) pending = NO_DELTAS;
        if (dueSize == 0 && due.length > 16) due = new long[0];
    }

    boolean idle() {
        return (online == null || online.isEmpty()) && offline == null && pendingSize == 0
                && dueSize == 0 && !dirty;
    }
}
