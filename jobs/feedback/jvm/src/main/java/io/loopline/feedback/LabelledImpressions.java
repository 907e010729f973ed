package io.loopline.feedback;

import org.apache.avro.Schema;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;

/**
 * A slate item's LabelledImpression, written straight from the request's state in its two
 * forms: the Kafka record (single-object encoding of the shipped schema) and the slice row
 * (one line of JSON, fields in schema order). The label join writes about three of these per
 * input event; building a GenericRecord of boxed values for each and walking it twice
 * (GenericDatumWriter, then a reflective JSON pass) was a quarter of the job's CPU.
 *
 * The fields are listed once ({@link #write}) for both forms; the constructor runs the same
 * list against the shipped schema (names and types, in order) and refuses to start on any
 * difference, so a schema change cannot silently produce records that readers decode into
 * the wrong fields.
 */
final class LabelledImpressions {
    /** One form of the record, fed the fields in schema order. */
    private interface Fields {
        void string(String name, String v) throws IOException;

        void bool(String name, boolean v) throws IOException;

        void int32(String name, int v) throws IOException;

        void int64(String name, long v) throws IOException;

        void float64(String name, double v) throws IOException;

        void optionalInt32(String name, Integer v) throws IOException;

        void optionalInt64(String name, Long v) throws IOException;
    }

    /** Item `i` of the slate `s` with its outcome, field by field in the shipped schema's order. */
    private static void write(Fields f, InputEvent s, int i, RequestState.Outcome o, long windowMs,
                              Integer logPartition, Long logOffset) throws IOException {
        f.string("request_id", s.requestId);
        f.string("item_id", s.itemIds[i]);
        f.string("user_id", s.userId);
        f.string("session_id", s.sessionId);
        f.string("model_version", s.modelVersion);
        f.string("arm", s.arm);
        f.string("policy", s.policy);
        f.bool("fallback", s.fallback);
        f.int32("position", s.positions[i]);
        f.float64("score", s.scores[i]);
        f.float64("propensity", s.propensities[i]);
        f.int64("served_at", s.eventTime);
        f.bool("clicked", o.clicked);
        f.bool("added_to_cart", o.addedToCart);
        f.bool("purchased", o.purchased);
        f.float64("revenue", o.revenue);
        f.int64("dwell_ms", o.dwellMs);
        f.int32("interaction_count", o.interactions);
        f.int64("label_window_ms", windowMs);
        f.string("source_topic", s.topic);
        f.int32("source_partition", s.partition);
        f.int64("source_offset", s.offset);
        f.optionalInt32("feature_log_partition", logPartition);
        f.optionalInt64("feature_log_offset", logOffset);
    }

    private final byte[] header;
    private final ByteArrayOutputStream buffer = new ByteArrayOutputStream(256);
    private final AvroFields avro = new AvroFields();

    LabelledImpressions(SchemaBook book) {
        List<String> shipped = describe(book.reader(Names.LABELLED_IMPRESSION));
        List<String> written = written();
        if (!shipped.equals(written)) {
            throw new IllegalStateException("LabelledImpression schema changed: the job writes "
                    + written + " but the shipped schema has " + shipped
                    + "; update LabelledImpressions with the schema");
        }
        header = book.header(Names.LABELLED_IMPRESSION);
    }

    /** The schema's fields as name:type, unions as null|type. */
    static List<String> describe(Schema schema) {
        List<String> out = new ArrayList<>();
        for (Schema.Field f : schema.getFields()) {
            Schema type = f.schema();
            String name;
            if (type.getType() == Schema.Type.UNION) {
                List<String> branches = new ArrayList<>();
                for (Schema b : type.getTypes()) branches.add(b.getType().getName());
                name = String.join("|", branches);
            } else {
                name = type.getType().getName();
            }
            out.add(f.name() + ":" + name);
        }
        return out;
    }

    /** What {@link #write} writes, in the same terms. */
    static List<String> written() {
        List<String> out = new ArrayList<>();
        Fields names = new Fields() {
            public void string(String name, String v) { out.add(name + ":string"); }
            public void bool(String name, boolean v) { out.add(name + ":boolean"); }
            public void int32(String name, int v) { out.add(name + ":int"); }
            public void int64(String name, long v) { out.add(name + ":long"); }
            public void float64(String name, double v) { out.add(name + ":double"); }
            public void optionalInt32(String name, Integer v) { out.add(name + ":null|int"); }
            public void optionalInt64(String name, Long v) { out.add(name + ":null|long"); }
        };
        InputEvent slate = new InputEvent();
        slate.itemIds = new String[1];
        slate.positions = new int[1];
        slate.scores = new double[1];
        slate.propensities = new double[1];
        try {
            write(names, slate, 0, new RequestState.Outcome(), 0, null, null);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out;
    }

    /** Item `i` of the slate with its outcome, as the Kafka record's value. */
    byte[] avro(InputEvent s, int i, RequestState.Outcome o, long windowMs, Integer logPartition, Long logOffset) {
        buffer.reset();
        buffer.write(header, 0, header.length);
        avro.encoder = EncoderFactory.get().directBinaryEncoder(buffer, avro.encoder);
        try {
            write(avro, s, i, o, windowMs, logPartition, logOffset);
            avro.encoder.flush();
        } catch (IOException ex) {
            throw new UncheckedIOException(ex);
        }
        return buffer.toByteArray();
    }

    /** The same impression as the slice row's JSON object (left open for the logged columns). */
    static Json json(InputEvent s, int i, RequestState.Outcome o, long windowMs, Integer logPartition, Long logOffset) {
        JsonFields row = new JsonFields();
        try {
            write(row, s, i, o, windowMs, logPartition, logOffset);
        } catch (IOException ex) {
            throw new UncheckedIOException(ex); // a JSON builder does no I/O
        }
        return row.json;
    }

    /** Avro binary encoding; unions as branch index (0: null) then the value. */
    private static final class AvroFields implements Fields {
        BinaryEncoder encoder;

        public void string(String name, String v) throws IOException { encoder.writeString(v); }
        public void bool(String name, boolean v) throws IOException { encoder.writeBoolean(v); }
        public void int32(String name, int v) throws IOException { encoder.writeInt(v); }
        public void int64(String name, long v) throws IOException { encoder.writeLong(v); }
        public void float64(String name, double v) throws IOException { encoder.writeDouble(v); }

        public void optionalInt32(String name, Integer v) throws IOException {
            encoder.writeIndex(v == null ? 0 : 1);
            if (v != null) encoder.writeInt(v);
        }

        public void optionalInt64(String name, Long v) throws IOException {
            encoder.writeIndex(v == null ? 0 : 1);
            if (v != null) encoder.writeLong(v);
        }
    }

    private static final class JsonFields implements Fields {
        final Json json = new Json();

        public void string(String name, String v) { json.put(name, v); }
        public void bool(String name, boolean v) { json.put(name, v); }
        public void int32(String name, int v) { json.put(name, (long) v); }
        public void int64(String name, long v) { json.put(name, v); }
        public void float64(String name, double v) { json.put(name, v); }
        public void optionalInt32(String name, Integer v) { json.put(name, v); }
        public void optionalInt64(String name, Long v) { json.put(name, v); }
    }
}
