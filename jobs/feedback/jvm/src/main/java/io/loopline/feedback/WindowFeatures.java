package io.loopline.feedback;

import org.apache.avro.generic.GenericRecord;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.metrics.Counter;
import org.apache.flink.runtime.state.FunctionInitializationContext;
import org.apache.flink.runtime.state.FunctionSnapshotContext;
import org.apache.flink.streaming.api.checkpoint.CheckpointedFunction;
import org.apache.flink.streaming.api.operators.KeyedProcessOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

import java.util.List;

/**
 * Per-entity window features with two outputs and two promises.
 *
 * Online (side output, Kafka FeatureUpdate rows): applied on arrival, evaluated at the
 * entity's newest event time, compacted to at most one update per entity per flush tick
 * (processing time), and re-emitted when the watermark passes a point where a window empties
 * out (decay). Newest event time wins downstream.
 *
 * Offline (main output: chunks of the offline feature log, {@link FeatureLogChunks}): deltas
 * wait in state until the watermark passes their event time and are applied in event-time
 * order, so each row carries the event time at which its values became true and depends
 * only on events at or before it, whatever order or speed the topics are read at. A row is
 * also written where a bucket leaves a window, so the log is exact between rows
 * (point-in-time joins read it as of any time). An entity's due points live in its state
 * ({@link FeatureState}) behind one Flink timer, at the earliest.
 *
 * At the end of a bounded input (watermark = MAX) no decay beyond the entity's own newest
 * event is applied: the end of a replay is not the passage of time.
 */
public class WindowFeatures extends KeyedProcessFunction<String, FeatureDelta, Row>
        implements CheckpointedFunction {
    private static final long serialVersionUID = 1L;
    /** Fires only when a bounded input is exhausted (watermark MAX). */
    static final long END_OF_INPUT = Long.MAX_VALUE - 1;
    public static final OutputTag<Row> ONLINE = new OutputTag<>("online-updates", SinkRows.TYPE);

    private final FeedbackSettings settings;
    private transient SchemaBook book;
    private transient ValueState<FeatureState> state;
    private transient Counter updates;
    private transient Counter logged;
    /** The offline log's open partitions: operator state, not keyed (see FeatureLogChunks). */
    private transient FeatureLogChunks chunks;
    private transient ListState<byte[]> unreleased;
    /** Departures an apply created (at most one per window). */
    private transient long[] created;

    public WindowFeatures(FeedbackSettings settings) {
        this.settings = settings;
    }

    @Override
    public void open(OpenContext context) {
        book = new SchemaBook(List.of(), settings.readerSchemas);
        created = new long[EntityState.WINDOW_MS.length];
        state = getRuntimeContext().getState(
                new ValueStateDescriptor<>("entity", TypeInformation.of(FeatureState.class)));
        updates = getRuntimeContext().getMetricGroup().addGroup("loopline").counter("feature_updates");
        logged = getRuntimeContext().getMetricGroup().addGroup("loopline").counter("feature_log_rows");
    }

    @Override
    public void initializeState(FunctionInitializationContext context) throws Exception {
        chunks = new FeatureLogChunks(settings.slicePartitionMs, settings.featureLogSliceMs, settings.partitionChunkRows);
        unreleased = context.getOperatorStateStore().getListState(
                new ListStateDescriptor<>("feature-log-blocks", PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO));
        for (byte[] block : unreleased.get()) {
            chunks.addBlock(block);
        }
        // Checkpoints taken before the rows were kept as blocks: their rows, one by one.
        ListState<FeatureLogRow> before = context.getOperatorStateStore().getListState(
                new ListStateDescriptor<>("feature-log-unreleased", TypeInformation.of(FeatureLogRow.class)));
        for (FeatureLogRow row : before.get()) {
            chunks.add(row);
        }
        before.clear();
    }

    @Override
    public void snapshotState(FunctionSnapshotContext context) throws Exception {
        unreleased.update(chunks.blocks());
    }

    /** Partitions of the offline log the watermark has passed (see Operator). */
    List<Row> release(long watermark) {
        return chunks.release(watermark);
    }

    @Override
    public void processElement(FeatureDelta d, Context ctx, Collector<Row> out) throws Exception {
        FeatureState s = state.value();
        if (s == null) {
            s = new FeatureState(d.kind);
        } else if (s.online == null) {
            s.online = new EntityState(d.kind);
        }
        s.apply(s.online, d, created);
        s.online.evict(s.online.latestMs);
        s.onlineAt = s.online.latestMs;
        if (!s.dirty) {
            s.dirty = true;
            long now = ctx.timerService().currentProcessingTime();
            ctx.timerService().registerProcessingTimeTimer(now - now % settings.onlineFlushMs + settings.onlineFlushMs);
            // Processing-time timers do not fire once a bounded input has ended: flush then too.
            ctx.timerService().registerEventTimeTimer(END_OF_INPUT);
        }
        if (settings.offlineFeatureLog) {
            s.addPending(d);
        }
        arm(s, ctx);
        state.update(s);
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        FeatureState s = state.value();
        if (s == null) {
            return;
        }
        if (ctx.timeDomain() == org.apache.flink.streaming.api.TimeDomain.PROCESSING_TIME
                || timestamp == END_OF_INPUT) {
            flushOnline(s, ctx);
            save(s);
            return;
        }
        if (timestamp == s.armedAt) {
            s.armedAt = Long.MAX_VALUE;
        }
        // Every point due up to the watermark, in event-time order: what one Flink timer per
        // point did, as the timer service fires all timers up to the new watermark in order.
        long watermark = ctx.timerService().currentWatermark();
        boolean end = watermark == Long.MAX_VALUE;
        int dues = 0;
        int deltas = 0;
        // Decay: a window of a quiet entity moved on, so its online value is due again. One
        // watermark step can pass many such points (a replay moves it hours at a time); the
        // store keeps only the newest of them, so the value is emitted once, at the last one
        // (or where the state emptied out), as the last of one update per point would be.
        boolean decayed = false;
        while (dues < s.dueSize && s.due[dues] <= watermark) {
            long t = s.due[dues++];
            if (settings.offlineFeatureLog) {
                deltas = offlineAt(s, t, deltas, end, ctx);
            }
            if (s.online != null && t > s.onlineAt && !end && !(decayed && s.online.isEmpty())) {
                s.online.evict(t);
                s.onlineAt = t;
                decayed = true;
            }
        }
        if (decayed) {
            emitOnline(s.online, s.onlineAt, ctx);
            s.dirty = false;
            if (s.online.isEmpty()) {
                s.online = null;
                s.onlineAt = Long.MIN_VALUE;
            }
        }
        s.consumed(dues, deltas);
        arm(s, ctx);
        save(s);
    }

    /** One event-time timer for the entity: at its earliest due point. */
    private static void arm(FeatureState s, Context ctx) {
        if (s.dueSize == 0) {
            return;
        }
        long next = s.due[0];
        if (next < s.armedAt) {
            if (s.armedAt != Long.MAX_VALUE) {
                ctx.timerService().deleteEventTimeTimer(s.armedAt);
            }
            ctx.timerService().registerEventTimeTimer(next);
            s.armedAt = next;
        }
    }

    private void save(FeatureState s) throws Exception {
        if (s.idle()) {
            // A timer still armed finds no state and does nothing.
            state.clear();
        } else {
            state.update(s);
        }
    }

    private void flushOnline(FeatureState s, Context ctx) {
        if (s.dirty) {
            if (s.online != null && s.onlineAt != Long.MIN_VALUE) {
                emitOnline(s.online, s.onlineAt, ctx);
            }
            s.dirty = false;
        }
    }

    /**
     * The offline row at `t`: apply the pending deltas of `t` (pending[from..), the ones
     * before were consumed at earlier points) and log the values. Returns the index after
     * the deltas it consumed.
     */
    private int offlineAt(FeatureState s, long t, int from, boolean end, Context ctx) {
        int to = from;
        while (to < s.pendingSize && s.pending[to].ts == t) to++;
        boolean deltas = to > from;
        boolean morePending = to < s.pendingSize;
        EntityState off = s.offline;
        if (!deltas && off == null) {
            return to;
        }
        if (end && !deltas && (off == null || t > off.latestMs) && !morePending) {
            return to; // a decay point past the entity's newest event, at the end of the input
        }
        if (off == null) {
            off = new EntityState(s.pending[from].kind);
        }
        for (int i = from; i < to; i++) {
            s.apply(off, s.pending[i], created);
        }
        off.evict(t);
        logged.inc();
        chunks.add(off.row(ctx.getCurrentKey().substring(2), t, settings.positionBiasEta, settings.lastClickedN));
        s.offline = off.isEmpty() && !morePending ? null : off;
        return to;
    }

    private void emitOnline(EntityState s, long at, Context ctx) {
        String entity = ctx.getCurrentKey().substring(2);
        FeatureLogRow row = s.row(entity, at, settings.positionBiasEta, settings.lastClickedN);
        String view = row.view();
        GenericRecord r = book.newRecord(Names.FEATURE_UPDATE);
        r.put("view", view);
        r.put("entity_id", entity);
        r.put("event_time", at);
        r.put("values", EntityState.values(row));
        r.put("job_run_id", settings.runId);
        updates.inc();
        ctx.output(ONLINE, SinkRows.of(view + ":" + entity, book.encode(Names.FEATURE_UPDATE, r),
                settings.featureUpdatesTopic, at));
    }

    /**
     * Releases the offline log's finished partitions once every timer up to a watermark has
     * fired: only then is an hour's last row in. Timers fire synchronously here (this
     * operator does not opt in to interruptible timers), so the release sees all of them.
     */
    public static final class Operator extends KeyedProcessOperator<String, FeatureDelta, Row> {
        private static final long serialVersionUID = 1L;

        public Operator(WindowFeatures features) {
            super(features);
        }

        @Override
        public boolean useInterruptibleTimers() {
            return false;
        }

        @Override
        public void processWatermark(Watermark mark) throws Exception {
            if (timeServiceManager != null) {
                timeServiceManager.advanceWatermark(mark);
            }
            for (Row chunk : ((WindowFeatures) userFunction).release(mark.getTimestamp())) {
                output.collect(new StreamRecord<>(chunk));
            }
            output.emitWatermark(mark);
        }
    }
}
