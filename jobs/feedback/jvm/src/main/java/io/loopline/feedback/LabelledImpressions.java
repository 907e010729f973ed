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
 * The field list below is the schema's, in order: the constructor checks it against the
 * shipped schema (names and types) and refuses to start on any difference, so a schema
 * change cannot silently produce records that readers decode into the wrong fields.
 */
final class LabelledImpressions {
    /** The shipped schema's fields, in order, as name:type (unions as null|type). */
    static final String[] FIELDS = {
        "request_id:string", "item_id:string", "user_id:string", "session_id:string",
        "model_version:string", "arm:string", "policy:string", "fallback:boolean",
        "position:int", "score:double", "propensity:double", "served_at:long",
        "clicked:boolean", "added_to_cart:boolean", "purchased:boolean", "revenue:double",
        "dwell_ms:long", "interaction_count:int", "label_window_ms:long", "source_topic:string",
        "source_partition:int", "source_offset:long", "feature_log_partition:null|int",
        "feature_log_offset:null|long",
    };

    private final byte[] header;
    private final ByteArrayOutputStream buffer = new ByteArrayOutputStream(256);
    private BinaryEncoder encoder;

    LabelledImpressions(SchemaBook book) {
        List<String> shipped = describe(book.reader(Names.LABELLED_IMPRESSION));
        if (!shipped.equals(List.of(FIELDS))) {
            throw new IllegalStateException("LabelledImpression schema changed: the job writes "
                    + List.of(FIELDS) + " but the shipped schema has " + shipped
                    + "; update LabelledImpressions with the schema");
        }
        header = book.header(Names.LABELLED_IMPRESSION);
    }

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

    /** Item `i` of the slate with its outcome, as the Kafka record's value. */
    byte[] avro(InputEvent s, int i, RequestState.Outcome o, long windowMs, Integer logPartition, Long logOffset) {
        buffer.reset();
        buffer.write(header, 0, header.length);
        encoder = EncoderFactory.get().directBinaryEncoder(buffer, encoder);
        try {
            BinaryEncoder e = encoder;
            e.writeString(s.requestId);
            e.writeString(s.itemIds[i]);
            e.writeString(s.userId);
            e.writeString(s.sessionId);
            e.writeString(s.modelVersion);
            e.writeString(s.arm);
            e.writeString(s.policy);
            e.writeBoolean(s.fallback);
            e.writeInt(s.positions[i]);
            e.writeDouble(s.scores[i]);
            e.writeDouble(s.propensities[i]);
            e.writeLong(s.eventTime);
            e.writeBoolean(o.clicked);
            e.writeBoolean(o.addedToCart);
            e.writeBoolean(o.purchased);
            e.writeDouble(o.revenue);
            e.writeLong(o.dwellMs);
            e.writeInt(o.interactions);
            e.writeLong(windowMs);
            e.writeString(s.topic);
            e.writeInt(s.partition);
            e.writeLong(s.offset);
            if (logPartition == null) {
                e.writeIndex(0);
            } else {
                e.writeIndex(1);
                e.writeInt(logPartition);
            }
            if (logOffset == null) {
                e.writeIndex(0);
            } else {
                e.writeIndex(1);
                e.writeLong(logOffset);
            }
            e.flush();
        } catch (IOException ex) {
            throw new UncheckedIOException(ex);
        }
        return buffer.toByteArray();
    }

    /** The same impression as the slice row's JSON object (left open for the logged columns). */
    static Json json(InputEvent s, int i, RequestState.Outcome o, long windowMs, Integer logPartition, Long logOffset) {
        return new Json()
                .put("request_id", s.requestId).put("item_id", s.itemIds[i]).put("user_id", s.userId)
                .put("session_id", s.sessionId).put("model_version", s.modelVersion).put("arm", s.arm)
                .put("policy", s.policy).put("fallback", s.fallback).put("position", s.positions[i])
                .put("score", s.scores[i]).put("propensity", s.propensities[i]).put("served_at", s.eventTime)
                .put("clicked", o.clicked).put("added_to_cart", o.addedToCart).put("purchased", o.purchased)
                .put("revenue", o.revenue).put("dwell_ms", o.dwellMs).put("interaction_count", o.interactions)
                .put("label_window_ms", windowMs).put("source_topic", s.topic)
                .put("source_partition", s.partition).put("source_offset", s.offset)
                .put("feature_log_partition", logPartition).put("feature_log_offset", logOffset);
    }
}
