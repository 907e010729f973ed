package io.loopline.feedback;

import org.apache.avro.generic.GenericRecord;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

import java.time.Instant;
import java.util.List;

/**
 * Decode (Avro single-object, writer→reader resolution) and validate every source record;
 * undecodable or invalid ones become dead letters, events behind their partition's watermark
 * go to the late output. Keyed by topic|partition so lateness is judged per partition, in
 * partition order: deterministic, and never looser than Flink's watermark (the minimum over
 * partitions), so a non-late event is never behind a downstream operator's watermark.
 * Decoding never throws: every failure is data.
 */
public class DecodeValidate extends KeyedProcessFunction<String, Row, InputEvent> {
    private static final long serialVersionUID = 1L;
    public static final OutputTag<Row> DEAD_LETTERS = new OutputTag<>("dead-letters", SinkRows.TYPE);
    public static final OutputTag<Row> LATE = new OutputTag<>("late", SinkRows.TYPE);

    private final FeedbackSettings settings;
    private transient SchemaBook book;
    private transient SchemaTopic registry;
    private transient ValueState<Long> partitionMax;
    private transient Counter input;
    private transient Counter deadLettered;
    private transient Counter late;

    public DecodeValidate(FeedbackSettings settings) {
        this.settings = settings;
    }

    @Override
    public void open(OpenContext context) {
        book = new SchemaBook(settings.writerSchemas, settings.readerSchemas);
        registry = settings.schemasTopic == null ? null : new SchemaTopic(settings.schemasTopic, settings.kafkaProperties);
        partitionMax = getRuntimeContext().getState(new ValueStateDescriptor<>("partition_max_ts", Types.LONG));
        MetricGroup group = getRuntimeContext().getMetricGroup().addGroup("loopline");
        input = group.counter("input");
        deadLettered = group.counter("dead_lettered");
        late = group.counter("late");
    }

    @Override
    public void processElement(Row row, Context ctx, Collector<InputEvent> out) throws Exception {
        input.inc();
        byte[] raw = (byte[]) row.getField(0);
        String topic = (String) row.getField(1);
        int partition = (Integer) row.getField(2);
        long offset = (Long) row.getField(3);
        Instant kafkaTs = (Instant) row.getField(4);
        Long kafkaMs = kafkaTs == null ? null : kafkaTs.toEpochMilli();
        if (raw == null) {
            raw = new byte[0];
        }
        InputEvent event;
        // Hex only for a record that becomes a dead letter: formatting it for every record was
        // 3 % of the job's CPU.
        long fp = 0;
        boolean framed = false;
        try {
            String reader = readerFor(topic);
            if (!SchemaBook.hasHeader(raw)) {
                throw new SchemaBook.DecodeFailure("DecodeError", "no Avro single-object header: expected C3 01 + "
                        + "8-byte fingerprint, got " + (raw.length == 0 ? "empty value" : hexPrefix(raw)));
            }
            fp = SchemaBook.fingerprintOf(raw);
            framed = true;
            if (!book.knows(fp) && (registry == null || !registry.refresh(book, fp))) {
                throw new SchemaBook.DecodeFailure("UnknownSchemaError", "unknown writer schema fingerprint " + SchemaBook.hex(fp));
            }
            GenericRecord record = book.decode(raw, reader);
            event = reader.equals(Names.SERVING_EVENT) ? serving(record)
                    : reader.equals(Names.INTERACTION_EVENT) ? interaction(record) : featureLog(record);
        } catch (SchemaBook.DecodeFailure failure) {
            deadLettered.inc();
            ctx.output(DEAD_LETTERS, DeadLetters.row(book, settings.deadLetterTopic, raw, topic, partition, offset,
                    kafkaMs, "decode", failure.errorType, failure.getMessage(), framed ? SchemaBook.hex(fp) : null, settings.runId));
            return;
        } catch (RuntimeException e) {
            // Avro's resolution of a well-framed but nonsensical body can fail in many ways.
            deadLettered.inc();
            ctx.output(DEAD_LETTERS, DeadLetters.row(book, settings.deadLetterTopic, raw, topic, partition, offset,
                    kafkaMs, "decode", "DecodeError", e.getClass().getSimpleName() + ": " + e.getMessage(),
                    framed ? SchemaBook.hex(fp) : null, settings.runId));
            return;
        }
        event.raw = raw;
        event.topic = topic;
        event.partition = partition;
        event.offset = offset;
        String problem = event.kind == InputEvent.SERVING ? Validation.serving(event)
                : event.kind == InputEvent.INTERACTION ? Validation.interaction(event) : Validation.featureLog(event);
        if (problem == null) {
            long now = System.currentTimeMillis();
            if (event.eventTime > now + settings.maxFutureMs) {
                problem = "event_time " + event.eventTime + " is " + (event.eventTime - now) / 1000 + " s in the future "
                        + "(more than " + settings.maxFutureMs / 1000 + " s ahead of the clock)";
            } else if (kafkaMs != null && kafkaMs != event.eventTime) {
                problem = "event_time " + event.eventTime + " differs from the Kafka record timestamp " + kafkaMs
                        + "; producers must stamp records with the event time";
            }
        }
        if (problem != null) {
            deadLettered.inc();
            ctx.output(DEAD_LETTERS, DeadLetters.row(book, settings.deadLetterTopic, raw, topic, partition, offset,
                    kafkaMs, "validate", "InvalidEvent", problem, SchemaBook.hex(fp), settings.runId));
            return;
        }
        Long max = partitionMax.value();
        if (max != null && event.eventTime < max - settings.outOfOrdernessMs) {
            late.inc();
            ctx.output(LATE, DeadLetters.row(book, settings.lateTopic, raw, topic, partition, offset, kafkaMs, "late",
                    "LateEvent", "event_time " + event.eventTime + " is behind partition watermark "
                            + (max - settings.outOfOrdernessMs), null, settings.runId));
            return;
        }
        if (max == null || event.eventTime > max) {
            partitionMax.update(event.eventTime);
        }
        out.collect(event);
    }

    private String readerFor(String topic) throws SchemaBook.DecodeFailure {
        if (topic.equals(settings.servingTopic)) return Names.SERVING_EVENT;
        if (topic.equals(settings.interactionsTopic)) return Names.INTERACTION_EVENT;
        if (topic.equals(settings.featureLogTopic)) return Names.FEATURE_LOG;
        throw new SchemaBook.DecodeFailure("UnexpectedTopic", "no decoder for topic " + topic);
    }

    private static String hexPrefix(byte[] raw) {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < Math.min(raw.length, SchemaBook.HEADER_LEN); i++) {
            out.append(String.format("%02x", raw[i]));
        }
        return out.toString();
    }

    private static String str(Object value) {
        return value == null ? null : value.toString();
    }

    static InputEvent serving(GenericRecord r) {
        InputEvent e = new InputEvent();
        e.kind = InputEvent.SERVING;
        e.requestId = str(r.get("request_id"));
        e.eventTime = (Long) r.get("event_time");
        e.userId = str(r.get("user_id"));
        e.sessionId = str(r.get("session_id"));
        e.modelVersion = str(r.get("model_version"));
        e.arm = str(r.get("arm"));
        e.policy = str(r.get("policy"));
        e.fallback = Boolean.TRUE.equals(r.get("fallback"));
        @SuppressWarnings("unchecked")
        List<GenericRecord> slate = (List<GenericRecord>) r.get("slate");
        int n = slate.size();
        e.itemIds = new String[n];
        e.positions = new int[n];
        e.scores = new double[n];
        e.propensities = new double[n];
        for (int i = 0; i < n; i++) {
            GenericRecord item = slate.get(i);
            e.itemIds[i] = str(item.get("item_id"));
            e.positions[i] = (Integer) item.get("position");
            e.scores[i] = (Double) item.get("score");
            e.propensities[i] = (Double) item.get("propensity");
        }
        return e;
    }

    static InputEvent featureLog(GenericRecord r) {
        InputEvent e = new InputEvent();
        e.kind = InputEvent.FEATURE_LOG;
        e.requestId = str(r.get("request_id"));
        e.eventTime = (Long) r.get("event_time");
        e.userId = str(r.get("user_id"));
        e.modelVersion = str(r.get("model_version"));
        e.log = LoggedVectors.of(r);
        return e;
    }

    static InputEvent interaction(GenericRecord r) {
        InputEvent e = new InputEvent();
        e.kind = InputEvent.INTERACTION;
        e.eventId = str(r.get("event_id"));
        e.eventTime = (Long) r.get("event_time");
        e.userId = str(r.get("user_id"));
        e.sessionId = str(r.get("session_id"));
        e.requestId = str(r.get("request_id"));
        if (e.requestId != null && e.requestId.isEmpty()) {
            e.requestId = null; // an empty link is no link (as `event.get("request_id") or ...`)
        }
        e.itemId = str(r.get("item_id"));
        e.type = str(r.get("type"));
        Object revenue = r.get("revenue");
        e.revenue = revenue == null ? 0.0 : (Double) revenue;
        e.dwellMs = (Long) r.get("dwell_ms");
        e.position = (Integer) r.get("position");
        return e;
    }
}
