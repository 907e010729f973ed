package io.loopline.feedback;

import org.apache.flink.api.common.typeutils.SimpleTypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.TypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.base.TypeSerializerSingleton;
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
            writeLongs(o.refs, out);
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
            o.refs = readLongs(in);
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
        writeBytes(e.raw, out);
        StringValue.writeString(e.userId, out);
        StringValue.writeString(e.sessionId, out);
        StringValue.writeString(e.requestId, out);
        StringValue.writeString(e.modelVersion, out);
        StringValue.writeString(e.arm, out);
        StringValue.writeString(e.policy, out);
        out.writeBoolean(e.fallback);
        writeStrings(e.itemIds, out);
        writeInts(e.positions, out);
        writeDoubles(e.scores, out);
        writeDoubles(e.propensities, out);
        StringValue.writeString(e.eventId, out);
        StringValue.writeString(e.itemId, out);
        StringValue.writeString(e.type, out);
        out.writeDouble(e.revenue);
        out.writeBoolean(e.dwellMs != null);
        if (e.dwellMs != null) out.writeLong(e.dwellMs);
        out.writeBoolean(e.position != null);
        if (e.position != null) out.writeInt(e.position);
        LoggedVectors v = e.log;
        out.writeBoolean(v != null);
        if (v == null) return;
        StringValue.writeString(v.featureServiceVersion, out);
        out.writeDouble(v.sampleRate);
        out.writeLong(v.userFeatureTime);
        writeDoubles(v.userValues, out);
        writeStrings(v.itemIds, out);
        writeLongs(v.itemFeatureTimes, out);
        out.writeInt(v.itemValues == null ? -1 : v.itemValues.length);
        if (v.itemValues != null) {
            for (double[] values : v.itemValues) writeDoubles(values, out);
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
        e.raw = readBytes(in);
        e.userId = StringValue.readString(in);
        e.sessionId = StringValue.readString(in);
        e.requestId = StringValue.readString(in);
        e.modelVersion = StringValue.readString(in);
        e.arm = StringValue.readString(in);
        e.policy = StringValue.readString(in);
        e.fallback = in.readBoolean();
        e.itemIds = readStrings(in);
        e.positions = readInts(in);
        e.scores = readDoubles(in);
        e.propensities = readDoubles(in);
        e.eventId = StringValue.readString(in);
        e.itemId = StringValue.readString(in);
        e.type = StringValue.readString(in);
        e.revenue = in.readDouble();
        e.dwellMs = in.readBoolean() ? in.readLong() : null;
        e.position = in.readBoolean() ? in.readInt() : null;
        if (!in.readBoolean()) return e;
        LoggedVectors v = new LoggedVectors();
        v.featureServiceVersion = StringValue.readString(in);
        v.sampleRate = in.readDouble();
        v.userFeatureTime = in.readLong();
        v.userValues = readDoubles(in);
        v.itemIds = readStrings(in);
        v.itemFeatureTimes = readLongs(in);
        int n = in.readInt();
        if (n >= 0) {
            v.itemValues = new double[n][];
            for (int i = 0; i < n; i++) v.itemValues[i] = readDoubles(in);
        }
        e.log = v;
        return e;
    }

    private static void writeBytes(byte[] v, DataOutputView out) throws IOException {
        out.writeInt(v == null ? -1 : v.length);
        if (v != null) out.write(v);
    }

    private static byte[] readBytes(DataInputView in) throws IOException {
        int n = in.readInt();
        if (n < 0) return null;
        byte[] v = new byte[n];
        in.readFully(v);
        return v;
    }

    private static void writeStrings(String[] v, DataOutputView out) throws IOException {
        out.writeInt(v == null ? -1 : v.length);
        if (v != null) {
            for (String s : v) StringValue.writeString(s, out);
        }
    }

    private static String[] readStrings(DataInputView in) throws IOException {
        int n = in.readInt();
        if (n < 0) return null;
        String[] v = new String[n];
        for (int i = 0; i < n; i++) v[i] = StringValue.readString(in);
        return v;
    }

    private static void writeInts(int[] v, DataOutputView out) throws IOException {
        out.writeInt(v == null ? -1 : v.length);
        if (v != null) {
            for (int x : v) out.writeInt(x);
        }
    }

    private static int[] readInts(DataInputView in) throws IOException {
        int n = in.readInt();
        if (n < 0) return null;
        int[] v = new int[n];
        for (int i = 0; i < n; i++) v[i] = in.readInt();
        return v;
    }

    private static void writeLongs(long[] v, DataOutputView out) throws IOException {
        out.writeInt(v == null ? -1 : v.length);
        if (v != null) {
            for (long x : v) out.writeLong(x);
        }
    }

    private static long[] readLongs(DataInputView in) throws IOException {
        int n = in.readInt();
        if (n < 0) return null;
        long[] v = new long[n];
        for (int i = 0; i < n; i++) v[i] = in.readLong();
        return v;
    }

    private static void writeDoubles(double[] v, DataOutputView out) throws IOException {
        out.writeInt(v == null ? -1 : v.length);
        if (v != null) {
            for (double x : v) out.writeDouble(x);
        }
    }

    private static double[] readDoubles(DataInputView in) throws IOException {
        int n = in.readInt();
        if (n < 0) return null;
        double[] v = new double[n];
        for (int i = 0; i < n; i++) v[i] = in.readDouble();
        return v;
    }
}
