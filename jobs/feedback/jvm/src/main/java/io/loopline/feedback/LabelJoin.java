package io.loopline.feedback;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * The label join (as jobs/transforms/label_join.py): each served slate meets the interactions
 * it caused within the maturity window, in event time. A serving event opens the request and
 * closes it at served_at + window; interactions arriving first wait up to one window. At
 * close every slate item becomes one LabelledImpression. Every input ends in one place:
 * joined, unmatched (organic / no_impression / outside_window / item_not_in_slate) or a
 * duplicate (dead-lettered) — for organic interactions too: their event id is remembered for
 * the closed-request TTL, so a redelivered organic click is counted once.
 *
 * Serving's FeatureLog of a request (when the job reads that topic) waits in the request's
 * state and is joined when the slate is labelled: every impression of the slate carries its
 * item's logged vectors into the slice (the LabelledImpression record names the log's
 * partition/offset). The first log counts; another is a duplicate. A log whose serving event
 * does not arrive within a window of its event time, or that arrives after the request
 * closed, is unmatched (no_serving_event / after_close): a DeadLetter envelope with that
 * reason on the unmatched topic, as it has no slice of its own. Requests without a log pay
 * one null field.
 *
 * Main output: rows for the feedback-slice partitions. Side outputs: Kafka rows (labelled,
 * unmatched, duplicates) and accepted first sightings, which feed the features.
 */
public class LabelJoin extends KeyedProcessFunction<String, InputEvent, PartitionRow> {
    private static final long serialVersionUID = 1L;
    public static final OutputTag<Row> KAFKA = new OutputTag<>("join-kafka", SinkRows.TYPE);
    public static final OutputTag<InputEvent> ACCEPTED =
            new OutputTag<>("accepted", TypeInformation.of(InputEvent.class));

    static final String ORGANIC = "organic";
    static final String NO_IMPRESSION = "no_impression";
    static final String OUTSIDE_WINDOW = "outside_window";
    static final String ITEM_NOT_IN_SLATE = "item_not_in_slate";
    static final String NO_SERVING_EVENT = "no_serving_event";
    static final String AFTER_CLOSE = "after_close";

    private final FeedbackSettings settings;
    /** The outcome of a slate item nobody interacted with (read only). */
    private static final RequestState.Outcome NO_OUTCOME = new RequestState.Outcome();

    private transient SchemaBook book;
    private transient LabelledImpressions impressions;
    private transient ValueState<RequestState> state;
    /** Requests checkpointed by an older job (a POJO serializer): moved over when touched. */
    private transient ValueState<RequestState> legacy;
    private transient Counter joined;
    private transient Counter unmatched;
    private transient Counter deadLettered;

    public LabelJoin(FeedbackSettings settings) {
        this.settings = settings;
    }

    @Override
    public void open(OpenContext context) {
        book = new SchemaBook(List.of(), settings.readerSchemas);
        impressions = new LabelledImpressions(book);
        state = getRuntimeContext().getState(new ValueStateDescriptor<>("request-v2", RequestStateSerializer.INSTANCE));
        legacy = getRuntimeContext().getState(new ValueStateDescriptor<>("request", TypeInformation.of(RequestState.class)));
        MetricGroup group = getRuntimeContext().getMetricGroup().addGroup("loopline");
        joined = group.counter("joined");
        unmatched = group.counter("unmatched");
        deadLettered = group.counter("dead_lettered");
    }

    @Override
    public void processElement(InputEvent e, Context ctx, Collector<PartitionRow> out) throws Exception {
        RequestState s = load();
        if (s == null) {
            s = new RequestState();
        }
        if (e.kind == InputEvent.FEATURE_LOG) {
            featureLog(s, e, ctx);
            return;
        }
        if (e.kind == InputEvent.SERVING) {
            if (s.serving != null || s.closedAt != null) {
                duplicate(e, ctx);
                return;
            }
            s.serving = e;
            // A serving event is never an envelope's payload once accepted (a redelivery's
            // envelope carries the redelivered bytes): its bytes would only weigh on state.
            e.raw = null;
            if (s.featureLog != null) {
                s.featureLog.raw = null; // joined for certain now: its bytes would only weigh on state
            }
            ctx.output(ACCEPTED, e);
            ctx.timerService().registerEventTimeTimer(e.eventTime + settings.maturityWindowMs);
            List<InputEvent> waiting = s.pending;
            s.pending = new ArrayList<>();
            waiting.sort(Comparator.comparingLong((InputEvent i) -> i.eventTime).thenComparingLong(i -> i.offset));
            for (InputEvent interaction : waiting) {
                match(s, interaction, ctx, out);
            }
            state.update(s);
            return;
        }
        if (!s.seenEventIds.add(e.eventId)) {
            duplicate(e, ctx);
            return;
        }
        ctx.output(ACCEPTED, e);
        if (e.requestId == null) {
            unmatched(e, ORGANIC, ctx, out);
            // Remember the event id for the TTL: a redelivery must be a duplicate, not a second
            // organic interaction.
            if (s.closedAt == null && s.serving == null && s.pending.isEmpty()) {
                s.closedAt = e.eventTime;
                ctx.timerService().registerEventTimeTimer(e.eventTime + settings.closedRequestTtlMs);
            }
        } else if (s.closedAt != null) {
            unmatched(e, OUTSIDE_WINDOW, ctx, out);
        } else if (s.serving != null) {
            match(s, e, ctx, out);
        } else {
            s.pending.add(e);
            ctx.timerService().registerEventTimeTimer(e.eventTime + settings.maturityWindowMs);
        }
        state.update(s);
    }

    /** The request's state, from an older checkpoint's POJO state if only that has it. */
    private RequestState load() throws Exception {
        RequestState s = state.value();
        if (s == null) {
            s = legacy.value();
            if (s != null) {
                legacy.clear();
                state.update(s);
            }
        }
        return s;
    }

    private void featureLog(RequestState s, InputEvent e, Context ctx) throws Exception {
        if (s.featureLogSeen) {
            duplicate(e, ctx);
            return;
        }
        s.featureLogSeen = true;
        if (s.closedAt != null) {
            unmatchedLog(e, AFTER_CLOSE, "the request was labelled at " + s.closedAt + " without it", ctx);
        } else {
            s.featureLog = e;
            if (s.serving != null) {
                // It will be joined when the request closes: no envelope will need its bytes.
                e.raw = null;
            } else {
                // Waits as an interaction does: its serving event may still be on its way.
                ctx.timerService().registerEventTimeTimer(e.eventTime + settings.maturityWindowMs);
            }
        }
        state.update(s);
    }

    private void match(RequestState s, InputEvent e, Context ctx, Collector<PartitionRow> out) {
        long servedAt = s.serving.eventTime;
        if (!(servedAt <= e.eventTime && e.eventTime < servedAt + settings.maturityWindowMs)) {
            unmatched(e, OUTSIDE_WINDOW, ctx, out);
            return;
        }
        boolean inSlate = false;
        for (String item : s.serving.itemIds) {
            if (item.equals(e.itemId)) {
                inSlate = true;
                break;
            }
        }
        if (!inSlate) {
            unmatched(e, ITEM_NOT_IN_SLATE, ctx, out);
            return;
        }
        s.outcomes.computeIfAbsent(e.itemId, k -> new RequestState.Outcome()).add(e, settings.topicIndex(e.topic));
        joined.inc();
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<PartitionRow> out) throws Exception {
        RequestState s = load();
        if (s == null) {
            return;
        }
        boolean end = ctx.timerService().currentWatermark() == Long.MAX_VALUE;
        InputEvent log = s.featureLog;
        if (s.serving == null && log != null && (end || timestamp >= log.eventTime + settings.maturityWindowMs)) {
            unmatchedLog(log, NO_SERVING_EVENT, "no serving event within " + settings.maturityWindowMs + " ms", ctx);
            s.featureLog = null;
        }
        InputEvent serving = s.serving;
        if (serving != null && s.closedAt == null && (end || timestamp >= serving.eventTime + settings.maturityWindowMs)) {
            label(serving, s, ctx, out);
            joined.inc();
            if (s.featureLog != null) {
                joined.inc();
                s.featureLog = null; // its vectors are in the labelled rows now
            }
            s.closedAt = serving.eventTime + settings.maturityWindowMs;
            // A closed request is remembered for the TTL by what tells a redelivery or a late
            // interaction apart (closedAt, the event ids seen): the slate itself would be most
            // of the state held for those hours.
            s.serving = null;
            s.outcomes.clear();
            ctx.timerService().registerEventTimeTimer(s.closedAt + settings.closedRequestTtlMs);
        }
        boolean clear;
        if (s.serving == null && !s.pending.isEmpty()) {
            List<InputEvent> keep = new ArrayList<>();
            for (InputEvent e : s.pending) {
                if (end || timestamp >= e.eventTime + settings.maturityWindowMs) {
                    unmatched(e, NO_IMPRESSION, ctx, out);
                } else {
                    keep.add(e);
                }
            }
            s.pending = keep;
            clear = keep.isEmpty() && s.closedAt == null && s.featureLog == null;
        } else {
            clear = s.empty() || (s.closedAt != null && (end || timestamp >= s.closedAt + settings.closedRequestTtlMs));
        }
        if (clear) {
            state.clear();
        } else {
            state.update(s);
        }
    }

    private void duplicate(InputEvent e, Context ctx) {
        deadLettered.inc();
        String what = e.kind == InputEvent.SERVING ? "serving" : e.kind == InputEvent.INTERACTION ? "interaction"
                : "feature log of";
        ctx.output(KAFKA, DeadLetters.row(book, settings.deadLetterTopic, e.raw, e.topic, e.partition, e.offset,
                e.eventTime, "duplicate", "DuplicateEvent", what + " " + e.joinKey() + " was already received",
                null, settings.runId));
    }

    /** A FeatureLog no slate used: an envelope with the reason (raw log inside), keyed by its
     * coordinates like every unmatched input. */
    private void unmatchedLog(InputEvent e, String reason, String detail, Context ctx) {
        unmatched.inc();
        ctx.output(KAFKA, DeadLetters.row(book, settings.unmatchedTopic, e.raw, e.topic, e.partition, e.offset,
                e.eventTime, "unmatched", "UnmatchedFeatureLog", reason + ": " + detail, null, settings.runId));
    }

    private void unmatched(InputEvent e, String reason, Context ctx, Collector<PartitionRow> out) {
        unmatched.inc();
        String coords = e.topic + "/" + e.partition + "/" + e.offset;
        ctx.output(KAFKA, SinkRows.of(coords, e.raw, settings.unmatchedTopic, e.eventTime));
        byte[] json = new Json()
                .put("event_id", e.eventId).put("event_time", e.eventTime).put("user_id", e.userId)
                .put("session_id", e.sessionId).put("request_id", e.requestId).put("item_id", e.itemId)
                .put("type", e.type).put("revenue", e.revenue).put("dwell_ms", e.dwellMs)
                .put("position", e.position).put("reason", reason).put("source_topic", e.topic)
                .put("source_partition", e.partition).put("source_offset", e.offset).bytes();
        out.collect(new PartitionRow(Names.UNMATCHED_DATASET, e.eventTime, settings.slicePartitionMs,
                settings.maturityWindowMs, e.eventId, json,
                SourceRefs.of(settings.topicIndex(e.topic), e.partition, e.offset)));
    }

    private void label(InputEvent serving, RequestState s, Context ctx, Collector<PartitionRow> out) {
        Integer[] order = new Integer[serving.itemIds.length];
        for (int i = 0; i < order.length; i++) order[i] = i;
        java.util.Arrays.sort(order, Comparator.comparingInt(i -> serving.positions[i]));
        long[] servingRef = SourceRefs.of(settings.topicIndex(serving.topic), serving.partition, serving.offset);
        InputEvent log = s.featureLog;
        Integer logPartition = null;
        Long logOffset = null;
        if (log != null) {
            servingRef = SourceRefs.append(servingRef, settings.topicIndex(log.topic), log.partition, log.offset);
            logPartition = log.partition;
            logOffset = log.offset;
        }
        for (int i : order) {
            String item = serving.itemIds[i];
            RequestState.Outcome o = s.outcomes.getOrDefault(item, NO_OUTCOME);
            String key = serving.requestId + "/" + item;
            ctx.output(KAFKA, SinkRows.of(key, impressions.avro(serving, i, o, settings.maturityWindowMs, logPartition,
                    logOffset), settings.labelledTopic, serving.eventTime));
            Json row = LabelledImpressions.json(serving, i, o, settings.maturityWindowMs, logPartition, logOffset);
            if (log != null) {
                log.log.putColumns(row, item);
            }
            out.collect(new PartitionRow(Names.LABELLED_DATASET, serving.eventTime, settings.slicePartitionMs,
                    settings.maturityWindowMs, key, row.bytes(), SourceRefs.concat(servingRef, o.refs)));
        }
    }
}
