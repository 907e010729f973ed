package io.loopline.feedback;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * Collects one event-time partition (an hour) of one view's offline feature log and releases
 * it when the watermark passes its end: rows in (entity, time) order, in chunks, each encoded
 * as columns (below) for the Python writer, which maps them onto Arrow without parsing text.
 * Key order makes the chunks, and so the files and their fingerprints, the same whenever the
 * partition is released again after a recovery.
 *
 * Chunk layout, little-endian: int32 version (1), int32 rows, int32 columns; per column an
 * int16-length UTF-8 name, a type byte ('S' text: int32 offsets[rows + 1], int32 length,
 * bytes — Arrow's string layout; 'L' int64[rows]; 'D' float64[rows]), then its data.
 */
public class FeatureLogBuffer extends KeyedProcessFunction<String, FeatureLogRow, Row> {
    private static final long serialVersionUID = 1L;
    static final int VERSION = 1;

    private final long partitionMs;
    private final int chunkRows;
    private transient ListState<FeatureLogRow> rows;
    private transient ValueState<Boolean> armed;

    public FeatureLogBuffer(long partitionMs, int chunkRows) {
        this.partitionMs = partitionMs;
        this.chunkRows = chunkRows;
    }

    /** view|partition name: the buffer's key. */
    public static String keyOf(FeatureLogRow row, long partitionMs) {
        return row.view() + "|" + PartitionRow.hourName(row.ts, partitionMs);
    }

    @Override
    public void open(OpenContext context) {
        rows = getRuntimeContext().getListState(
                new ListStateDescriptor<>("rows", TypeInformation.of(FeatureLogRow.class)));
        armed = getRuntimeContext().getState(new ValueStateDescriptor<>("armed", Types.BOOLEAN));
    }

    @Override
    public void processElement(FeatureLogRow row, Context ctx, Collector<Row> out) throws Exception {
        rows.add(row);
        if (!Boolean.TRUE.equals(armed.value())) {
            armed.update(true);
            ctx.timerService().registerEventTimeTimer(row.ts - Math.floorMod(row.ts, partitionMs) + partitionMs);
        }
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        List<FeatureLogRow> all = new ArrayList<>();
        for (FeatureLogRow r : rows.get()) {
            all.add(r);
        }
        rows.clear();
        armed.clear();
        if (all.isEmpty()) {
            return;
        }
        all.sort(Comparator.comparing((FeatureLogRow r) -> r.entityId).thenComparingLong(r -> r.ts));
        String[] key = ctx.getCurrentKey().split("\\|", 2);
        int chunks = (all.size() + chunkRows - 1) / chunkRows;
        for (int c = 0; c < chunks; c++) {
            List<FeatureLogRow> chunk = all.subList(c * chunkRows, Math.min(all.size(), (c + 1) * chunkRows));
            out.collect(Row.of(Names.FEATURE_LOG_DATASET + "/" + key[0], key[1], c, chunks, null, encode(chunk)));
        }
    }

    static byte[] encode(List<FeatureLogRow> rows) {
        int n = rows.size();
        byte kind = rows.get(0).kind;
        String[] longs = FeatureColumns.longs(kind);
        String[] doubles = FeatureColumns.doubles(kind);
        byte[][] entity = utf8(rows, r -> r.entityId);
        byte[][] text = kind == FeatureDelta.USER ? utf8(rows, r -> r.text) : null;
        int size = 12 + column("entity_id", entity) + fixed("event_ms", n);
        for (String name : longs) size += fixed(name, n);
        for (String name : doubles) size += fixed(name, n);
        if (text != null) size += column(FeatureColumns.USER_TEXT, text);
        ByteBuffer out = ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
        int columns = 2 + longs.length + doubles.length + (text == null ? 0 : 1);
        out.putInt(VERSION).putInt(n).putInt(columns);
        putText(out, "entity_id", entity);
        header(out, "event_ms", (byte) 'L');
        for (FeatureLogRow r : rows) out.putLong(r.ts);
        for (int i = 0; i < longs.length; i++) {
            header(out, longs[i], (byte) 'L');
            for (FeatureLogRow r : rows) out.putLong(r.longs[i]);
        }
        for (int i = 0; i < doubles.length; i++) {
            header(out, doubles[i], (byte) 'D');
            for (FeatureLogRow r : rows) out.putDouble(r.doubles[i]);
        }
        if (text != null) putText(out, FeatureColumns.USER_TEXT, text);
        return out.array();
    }

    private static byte[][] utf8(List<FeatureLogRow> rows, java.util.function.Function<FeatureLogRow, String> f) {
        byte[][] out = new byte[rows.size()][];
        for (int i = 0; i < out.length; i++) {
            String s = f.apply(rows.get(i));
            out[i] = (s == null ? "" : s).getBytes(StandardCharsets.UTF_8);
        }
        return out;
    }

    private static int fixed(String name, int n) {
        return 2 + name.length() + 1 + 8 * n;
    }

    private static int column(String name, byte[][] values) {
        int bytes = 0;
        for (byte[] v : values) bytes += v.length;
        return 2 + name.length() + 1 + 4 * (values.length + 1) + 4 + bytes;
    }

    private static void header(ByteBuffer out, String name, byte type) {
        byte[] b = name.getBytes(StandardCharsets.UTF_8);
        out.putShort((short) b.length).put(b).put(type);
    }

    private static void putText(ByteBuffer out, String name, byte[][] values) {
        header(out, name, (byte) 'S');
        int offset = 0;
        out.putInt(0);
        for (byte[] v : values) {
            offset += v.length;
            out.putInt(offset);
        }
        out.putInt(offset);
        for (byte[] v : values) out.put(v);
    }
}
