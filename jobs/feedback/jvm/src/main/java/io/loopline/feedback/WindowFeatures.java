package io.loopline.feedback;

import org.apache.avro.generic.GenericRecord;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.ListTypeInfo;
import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Per-entity window features with two outputs and two promises.
 *
 * Online (side output, Kafka FeatureUpdate rows): applied on arrival, evaluated at the
 * entity's newest event time, compacted to at most one update per entity per flush tick
 * (processing time), and re-emitted when the watermark passes a point where a window empties
 * out (decay). Newest event time wins downstream.
 *
 * Offline (main output, rows of the offline feature log, FeatureLogRow): deltas wait in state until the
 * watermark passes their event time and are applied in event-time order, so each row carries
 * the event time at which its values became true and depends only on events at or before it,
 * whatever order or speed the topics are read at. A row is also written where a bucket leaves
 * a window, so the log is exact between rows (point-in-time joins read it as of any time).
 *
 * At the end of a bounded input (watermark = MAX) no decay beyond the entity's own newest
 * event is applied: the end of a replay is not the passage of time.
 */
public class WindowFeatures extends KeyedProcessFunction<String, FeatureDelta, FeatureLogRow> {
    private static final long serialVersionUID = 1L;
    /** Fires only when a bounded input is exhausted (watermark MAX). */
    static final long END_OF_INPUT = Long.MAX_VALUE - 1;
    public static final OutputTag<Row> ONLINE = new OutputTag<>("online-updates", SinkRows.TYPE);

    private final FeedbackSettings settings;
    private transient SchemaBook book;
    private transient ValueState<EntityState> online;
    private transient ValueState<EntityState> offline;
    private transient MapState<Long, List<FeatureDelta>> pending;
    private transient ValueState<Long> onlineEvaluatedAt;
    private transient ValueState<Boolean> dirty;
    private transient Counter updates;
    private transient Counter logged;

    public WindowFeatures(FeedbackSettings settings) {
        this.settings = settings;
    }

    @Override
    public void open(OpenContext context) {
        book = new SchemaBook(List.of(), settings.readerSchemas);
        TypeInformation<EntityState> entity = TypeInformation.of(EntityState.class);
        online = getRuntimeContext().getState(new ValueStateDescriptor<>("online", entity));
        offline = getRuntimeContext().getState(new ValueStateDescriptor<>("offline", entity));
        pending = getRuntimeContext().getMapState(new MapStateDescriptor<>("pending", Types.LONG,
                new ListTypeInfo<>(TypeInformation.of(FeatureDelta.class))));
        onlineEvaluatedAt = getRuntimeContext().getState(new ValueStateDescriptor<>("online_at", Types.LONG));
        dirty = getRuntimeContext().getState(new ValueStateDescriptor<>("dirty", Types.BOOLEAN));
        updates = getRuntimeContext().getMetricGroup().addGroup("loopline").counter("feature_updates");
        logged = getRuntimeContext().getMetricGroup().addGroup("loopline").counter("feature_log_rows");
    }

    @Override
    public void processElement(FeatureDelta d, Context ctx, Collector<FeatureLogRow> out) throws Exception {
        EntityState on = online.value();
        if (on == null) {
            on = new EntityState(d.kind);
        }
        for (long departure : on.apply(d)) {
            ctx.timerService().registerEventTimeTimer(departure);
        }
        on.evict(on.latestMs);
        online.update(on);
        onlineEvaluatedAt.update(on.latestMs);
        if (!Boolean.TRUE.equals(dirty.value())) {
            dirty.update(true);
            long now = ctx.timerService().currentProcessingTime();
            ctx.timerService().registerProcessingTimeTimer(now - now % settings.onlineFlushMs + settings.onlineFlushMs);
            // Processing-time timers do not fire once a bounded input has ended: flush then too.
            ctx.timerService().registerEventTimeTimer(END_OF_INPUT);
        }
        if (settings.offlineFeatureLog) {
            List<FeatureDelta> at = pending.get(d.ts);
            if (at == null) {
                at = new ArrayList<>(2);
            }
            at.add(d);
            pending.put(d.ts, at);
            ctx.timerService().registerEventTimeTimer(d.ts);
        }
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<FeatureLogRow> out) throws Exception {
        if (ctx.timeDomain() == org.apache.flink.streaming.api.TimeDomain.PROCESSING_TIME) {
            flushOnline(ctx);
            return;
        }
        boolean end = ctx.timerService().currentWatermark() == Long.MAX_VALUE;
        if (timestamp == END_OF_INPUT) {
            flushOnline(ctx);
            return;
        }
        if (settings.offlineFeatureLog) {
            offlineAt(timestamp, end, ctx, out);
        }
        EntityState on = online.value();
        Long at = onlineEvaluatedAt.value();
        if (on != null && at != null && timestamp > at && !end) {
            // Decay: a window of a quiet entity moved on; its online value is due again.
            on.evict(timestamp);
            emitOnline(on, timestamp, ctx);
            dirty.clear();
            if (on.isEmpty()) {
                online.clear();
                onlineEvaluatedAt.clear();
            } else {
                online.update(on);
                onlineEvaluatedAt.update(timestamp);
            }
        }
    }

    private void flushOnline(Context ctx) throws Exception {
        if (Boolean.TRUE.equals(dirty.value())) {
            EntityState on = online.value();
            Long at = onlineEvaluatedAt.value();
            if (on != null && at != null) {
                emitOnline(on, at, ctx);
            }
            dirty.clear();
        }
    }

    private void offlineAt(long t, boolean end, OnTimerContext ctx, Collector<FeatureLogRow> out) throws Exception {
        List<FeatureDelta> deltas = pending.get(t);
        EntityState off = offline.value();
        if (deltas == null && off == null) {
            return;
        }
        if (end && deltas == null && (off == null || t > off.latestMs) && pending.isEmpty()) {
            return; // a decay point past the entity's newest event, at the end of the input
        }
        if (off == null) {
            off = new EntityState(deltas.get(0).kind);
        }
        if (deltas != null) {
            for (FeatureDelta d : deltas) {
                for (long departure : off.apply(d)) {
                    ctx.timerService().registerEventTimeTimer(departure);
                }
            }
            pending.remove(t);
        }
        off.evict(t);
        logged.inc();
        out.collect(off.row(ctx.getCurrentKey().substring(2), t, settings.positionBiasEta, settings.lastClickedN));
        if (off.isEmpty() && pending.isEmpty()) {
            offline.clear();
        } else {
            offline.update(off);
        }
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
}
