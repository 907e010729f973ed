package io.loopline.feedback;

import org.apache.flink.api.common.typeutils.SimpleTypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.TypeSerializer;
import org.apache.flink.api.common.typeutils.TypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.base.IntSerializer;
import org.apache.flink.api.common.typeutils.base.LongSerializer;
import org.apache.flink.api.common.typeutils.base.TypeSerializerSingleton;
import org.apache.flink.api.common.typeutils.base.array.BytePrimitiveArraySerializer;
import org.apache.flink.api.common.typeutils.base.array.DoublePrimitiveArraySerializer;
import org.apache.flink.api.common.typeutils.base.array.IntPrimitiveArraySerializer;
import org.apache.flink.api.common.typeutils.base.array.LongPrimitiveArraySerializer;
import org.apache.flink.api.common.typeutils.base.array.StringArraySerializer;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataInputView;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.apache.flink.core.memory.DataOutputView;
import org.apache.flink.types.StringValue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.Arrays;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The label join's per-request state, written field by field. As a POJO its map, list and
 * set went through Kryo: every checkpoint of the heap backend spent seconds on it at a few
 * thousand events/s, the copy-on-write copies a checkpoint forces went through Kryo too, and
 * with RocksDB every access did. Layout version {@link #VERSION}; a change of layout is a new
 * version read alongside the old ones, or a new state name.
 */
public final class RequestStateSerializer extends TypeSerializerSingleton<RequestState> {
    private static final long serialVersionUID = 1L;
    private static final int VERSION = 1;
    private static final BytePrimitiveArraySerializer BYTES = BytePrimitiveArraySerializer.INSTANCE;
    private static final IntPrimitiveArraySerializer INTS = IntPrimitiveArraySerializer.INSTANCE;
    private static final LongPrimitiveArraySerializer LONGS = LongPrimitiveArraySerializer.INSTANCE;
    private static final DoublePrimitiveArraySerializer DOUBLES = DoublePrimitiveArraySerializer.INSTANCE;
    private static final StringArraySerializer STRINGS = StringArraySerializer.INSTANCE;
    /** The fields written below, per class: a field added to one of them without a place in
     * the layout would be lost at every checkpoint, so the job refuses to start instead. */
    private static final String[][] FIELDS = {
        {"RequestState", "serving", "outcomes", "pending", "seenEventIds", "featureLog", "featureLogSeen", "closedAt"},
        {"Outcome", "clicked", "addedToCart", "purchased", "revenue", "dwellMs", "interactions", "refs"},
        {"InputEvent", "kind", "eventTime", "topic", "partition", "offset", "raw", "userId", "sessionId",
            "requestId", "modelVersion", "arm", "policy", "fallback", "itemIds", "positions", "scores",
            "propensities", "eventId", "itemId", "type", "revenue", "dwellMs", "position", "log"},
        {"LoggedVectors", "featureServiceVersion", "sampleRate", "userFeatureTime", "userValues", "itemIds",
            "itemFeatureTimes", "itemValues"},
    };
    static final RequestStateSerializer INSTANCE = new RequestStateSerializer();

    private RequestStateSerializer() {
        check(RequestState.class, FIELDS[0]);
        check(RequestState.Outcome.class, FIELDS[1]);
        check(InputEvent.class, FIELDS[2]);
        check(LoggedVectors.class, FIELDS[3]);
    }

    private static void check(Class<?> type, String[] expected) {
        List<String> declared = new ArrayList<>();
        for (Field f : type.getDeclaredFields()) {
            if (!Modifier.isStatic(f.getModifiers())) declared.add(f.getName());
        }
        List<String> written = Arrays.asList(expected).subList(1, expected.length);
        if (!new HashSet<>(declared).equals(new HashSet<>(written))) {
            throw new IllegalStateException(type.getSimpleName() + " has fields " + declared
                    + " but RequestStateSerializer writes " + written + ": update its layout");
        }
    }

    @Override
    public boolean isImmutableType() {
        return false;
    }

    @Override
    public RequestState createInstance() {
        return new RequestState();
    }

    /** Through the bytes: one code path for checkpoints and the copies the heap backend makes
     * of entries touched while an asynchronous snapshot runs (each entry once per snapshot). */
    @Override
    public RequestState copy(RequestState from) {
        DataOutputSerializer out = new DataOutputSerializer(512);
        try {
            serialize(from, out);
            return deserialize(new DataInputDeserializer(out.getSharedBuffer(), 0, out.length()));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Override
    public RequestState copy(RequestState from, RequestState reuse) {
        return copy(from);
    }

    @Override
    public int getLength() {
        return -1;
    }

    @Override
    public void serialize(RequestState s, DataOutputView out) throws IOException {
        out.writeByte(VERSION);
        writeEvent(s.serving, out);
        out.writeInt(s.outcomes.size());
        for (Map.Entry<String, RequestState.Outcome> e : s.outcomes.entrySet()) {
            StringValue.writeString(e.getKey(), out);
            RequestState.Outcome o = e.getValue();
            out.writeBoolean(o.clicked);
            out.writeBoolean(o.addedToCart);
            out.writeBoolean(o.purchased);
            out.writeDouble(o.revenue);
            out.writeLong(o.dwellMs);
            out.writeInt(o.interactions);
            write(o.refs, LONGS, out);
        }
        out.writeInt(s.pending.size());
        for (InputEvent e : s.pending) writeEvent(e, out);
        out.writeInt(s.seenEventIds.size());
        for (String id : s.seenEventIds) StringValue.writeString(id, out);
        writeEvent(s.featureLog, out);
        out.writeBoolean(s.featureLogSeen);
        out.writeBoolean(s.closedAt != null);
        if (s.closedAt != null) out.writeLong(s.closedAt);
    }

    @Override
    public RequestState deserialize(DataInputView in) throws IOException {
        int version = in.readByte();
        if (version != VERSION) {
            throw new IOException("request state layout " + version + ", this job reads " + VERSION);
        }
        RequestState s = new RequestState();
        s.serving = readEvent(in);
        int outcomes = in.readInt();
        s.outcomes = new HashMap<>(Math.max(4, outcomes * 2));
        for (int i = 0; i < outcomes; i++) {
            String item = StringValue.readString(in);
            RequestState.Outcome o = new RequestState.Outcome();
            o.clicked = in.readBoolean();
            o.addedToCart = in.readBoolean();
            o.purchased = in.readBoolean();
            o.revenue = in.readDouble();
            o.dwellMs = in.readLong();
            o.interactions = in.readInt();
            o.refs = read(LONGS, in);
            s.outcomes.put(item, o);
        }
        int pending = in.readInt();
        s.pending = new ArrayList<>(pending);
        for (int i = 0; i < pending; i++) s.pending.add(readEvent(in));
        int seen = in.readInt();
        s.seenEventIds = new HashSet<>(Math.max(4, seen * 2));
        for (int i = 0; i < seen; i++) s.seenEventIds.add(StringValue.readString(in));
        s.featureLog = readEvent(in);
        s.featureLogSeen = in.readBoolean();
        s.closedAt = in.readBoolean() ? in.readLong() : null;
        return s;
    }

    @Override
    public RequestState deserialize(RequestState reuse, DataInputView in) throws IOException {
        return deserialize(in);
    }

    @Override
    public void copy(DataInputView in, DataOutputView out) throws IOException {
        serialize(deserialize(in), out);
    }

    @Override
    public TypeSerializerSnapshot<RequestState> snapshotConfiguration() {
        return new Snapshot();
    }

    /** Restores the serializer from a checkpoint (Flink instantiates it by name). */
    public static final class Snapshot extends SimpleTypeSerializerSnapshot<RequestState> {
        public Snapshot() {
            super(() -> INSTANCE);
        }
    }

    // ---- the parts -------------------------------------------------------------------------

    static void writeEvent(InputEvent e, DataOutputView out) throws IOException {
        out.writeBoolean(e != null);
        if (e == null) return;
        out.writeByte(e.kind);
        out.writeLong(e.eventTime);
        StringValue.writeString(e.topic, out);
        out.writeInt(e.partition);
        out.writeLong(e.offset);
        write(e.raw, BYTES, out);
        StringValue.writeString(e.userId, out);
        StringValue.writeString(e.sessionId, out);
        StringValue.writeString(e.requestId, out);
        StringValue.writeString(e.modelVersion, out);
        StringValue.writeString(e.arm, out);
        StringValue.writeString(e.policy, out);
        out.writeBoolean(e.fallback);
        write(e.itemIds, STRINGS, out);
        write(e.positions, INTS, out);
        write(e.scores, DOUBLES, out);
        write(e.propensities, DOUBLES, out);
        StringValue.writeString(e.eventId, out);
        StringValue.writeString(e.itemId, out);
        StringValue.writeString(e.type, out);
        out.writeDouble(e.revenue);
        write(e.dwellMs, LongSerializer.INSTANCE, out);
        write(e.position, IntSerializer.INSTANCE, out);
        LoggedVectors v = e.log;
        out.writeBoolean(v != null);
        if (v == null) return;
        StringValue.writeString(v.featureServiceVersion, out);
        out.writeDouble(v.sampleRate);
        out.writeLong(v.userFeatureTime);
        write(v.userValues, DOUBLES, out);
        write(v.itemIds, STRINGS, out);
        write(v.itemFeatureTimes, LONGS, out);
        out.writeInt(v.itemValues == null ? -1 : v.itemValues.length);
        if (v.itemValues != null) {
            for (double[] values : v.itemValues) write(values, DOUBLES, out);
        }
    }

    static InputEvent readEvent(DataInputView in) throws IOException {
        if (!in.readBoolean()) return null;
        InputEvent e = new InputEvent();
        e.kind = in.readByte();
        e.eventTime = in.readLong();
        e.topic = StringValue.readString(in);
        e.partition = in.readInt();
        e.offset = in.readLong();
        e.raw = read(BYTES, in);
        e.userId = StringValue.readString(in);
        e.sessionId = StringValue.readString(in);
        e.requestId = StringValue.readString(in);
        e.modelVersion = StringValue.readString(in);
        e.arm = StringValue.readString(in);
        e.policy = StringValue.readString(in);
        e.fallback = in.readBoolean();
        e.itemIds = read(STRINGS, in);
        e.positions = read(INTS, in);
        e.scores = read(DOUBLES, in);
        e.propensities = read(DOUBLES, in);
        e.eventId = StringValue.readString(in);
        e.itemId = StringValue.readString(in);
        e.type = StringValue.readString(in);
        e.revenue = in.readDouble();
        e.dwellMs = read(LongSerializer.INSTANCE, in);
        e.position = read(IntSerializer.INSTANCE, in);
        if (!in.readBoolean()) return e;
        LoggedVectors v = new LoggedVectors();
        v.featureServiceVersion = StringValue.readString(in);
        v.sampleRate = in.readDouble();
        v.userFeatureTime = in.readLong();
        v.userValues = read(DOUBLES, in);
        v.itemIds = read(STRINGS, in);
        v.itemFeatureTimes = read(LONGS, in);
        int n = in.readInt();
        if (n >= 0) {
            v.itemValues = new double[n][];
            for (int i = 0; i < n; i++) v.itemValues[i] = read(DOUBLES, in);
        }
        e.log = v;
        return e;
    }

    /** A value that may be null: a presence flag, then Flink's own serializer of its type. */
    private static <T> void write(T v, TypeSerializer<T> serializer, DataOutputView out) throws IOException {
        out.writeBoolean(v != null);
        if (v != null) serializer.serialize(v, out);
    }

    private static <T> T read(TypeSerializer<T> serializer, DataInputView in) throws IOException {
        return in.readBoolean() ? serializer.deserialize(in) : null;
    }
}
