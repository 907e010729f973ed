package io.loopline.feedback;

import org.apache.flink.types.Row;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The open event-time slices of the offline feature log in one window-features subtask: rows
 * are added as the watermark makes them final, and leave in groups of slices of an hour
 * (see {@link #release}), per view, in (entity, time) order and in chunks, each
 * encoded as columns (below) for the Python writer, which maps them onto Arrow without
 * parsing text. Kept beside the features rather than behind a shuffle: moving 5–6 rows per
 * input event to a keyed buffer operator cost more than computing them. Order makes the
 * chunks, and so the files and their content fingerprints, the same whenever a partition is
 * released again after a recovery (the buffer is operator state, checkpointed with the
 * entities). With several subtasks each writes its own files for an hour; readers read a
 * view's folder, whatever the number of files.
 *
 * Chunk layout, little-endian: int32 version (1), int32 rows, int32 columns; per column an
 * int16-length UTF-8 name, a type byte ('S' text: int32 offsets[rows + 1], int32 length,
 * bytes — Arrow's string layout; 'L' int64[rows]; 'D' float64[rows]), then its data.
 */
final class FeatureLogChunks {
    static final int VERSION = 1;
    private static final Comparator<FeatureLogRow> ORDER =
            Comparator.comparing((FeatureLogRow r) -> r.entityId).thenComparingLong(r -> r.ts);

    private final long partitionMs;
    private final long sliceMs;
    private final int chunkRows;
    /** Open rows by slice end, then by kind (view). */
    private final TreeMap<Long, TreeMap<Byte, FeatureLogBlocks>> open = new TreeMap<>();

    FeatureLogChunks(long partitionMs, long sliceMs, int chunkRows) {
        this.partitionMs = partitionMs;
        this.sliceMs = sliceMs;
        this.chunkRows = chunkRows;
    }

    void add(FeatureLogRow row) {
        long end = row.ts - Math.floorMod(row.ts, sliceMs) + sliceMs;
        open.computeIfAbsent(end, e -> new TreeMap<>())
                .computeIfAbsent(row.kind, k -> new FeatureLogBlocks(k, end)).add(row);
    }

    /** A block from a checkpoint (see {@link #blocks()}); one from before slices ends with
     * its hour, and is released as that hour's last slice. */
    void addBlock(byte[] block) {
        FeatureLogBlocks.Header h = FeatureLogBlocks.header(block);
        open.computeIfAbsent(h.end, e -> new TreeMap<>())
                .computeIfAbsent(h.kind, k -> new FeatureLogBlocks(k, h.end)).addBlock(block);
    }

    /**
     * Every row not yet released, as encoded blocks: what a checkpoint keeps. Operator state
     * is deep-copied in the synchronous part of every checkpoint, which stalls the operator;
     * a few hundred byte arrays copy in milliseconds, where row objects (copied field by
     * field) stalled it for a second every checkpoint at 5,000 events/s.
     */
    List<byte[]> blocks() {
        List<byte[]> all = new ArrayList<>();
        for (TreeMap<Byte, FeatureLogBlocks> views : open.values()) {
            for (FeatureLogBlocks rows : views.values()) rows.blocks(all);
        }
        return all;
    }

    /**
     * Chunks of the slices the watermark has passed, as partition-writer rows (dataset
     * feature_log/&lt;view&gt;, partition (hour), chunk, chunks, no summary, data). An hour's
     * final slices are walked in order and cut into groups once a group holds chunkRows rows;
     * the hour's last group goes when the watermark passes the hour's end. Where the cuts fall
     * depends only on the rows of final slices, never on how far the watermark has got, so a
     * replay cuts (and writes) the same files.
     */
    List<Row> release(long watermark) {
        List<Row> out = new ArrayList<>();
        while (!open.isEmpty() && open.firstKey() <= watermark) {
            long first = open.firstKey();
            long hourStart = (first - 1) - Math.floorMod(first - 1, partitionMs);
            long hourEnd = hourStart + partitionMs;
            List<Long> group = new ArrayList<>();
            long rows = 0;
            for (Map.Entry<Long, TreeMap<Byte, FeatureLogBlocks>> slice
                    : new ArrayList<>(open.headMap(Math.min(watermark, hourEnd), true).entrySet())) {
                group.add(slice.getKey());
                for (FeatureLogBlocks b : slice.getValue().values()) rows += b.size();
                if (rows >= chunkRows) {
                    emit(group, hourStart, out);
                    group.clear();
                    rows = 0;
                }
            }
            if (group.isEmpty()) {
                continue;
            }
            if (watermark < hourEnd) {
                break; // the hour's remaining rows wait for more rows or for its end
            }
            emit(group, hourStart, out);
        }
        return out;
    }

    /** One group of slices of an hour, per view in (entity, time) order and in chunks. */
    private void emit(List<Long> slices, long hourStart, List<Row> out) {
        TreeMap<Byte, List<FeatureLogRow>> byKind = new TreeMap<>();
        for (long end : slices) {
            for (Map.Entry<Byte, FeatureLogBlocks> view : open.remove(end).entrySet()) {
                byKind.computeIfAbsent(view.getKey(), k -> new ArrayList<>()).addAll(view.getValue().rows());
            }
        }
        // Chunk numbers say which slice the group starts at (file names stay readable).
        int base = (int) ((slices.get(0) - sliceMs - hourStart) / sliceMs) * 1000;
        for (List<FeatureLogRow> all : byKind.values()) {
            all.sort(ORDER);
            FeatureLogRow first = all.get(0);
            String dataset = Names.FEATURE_LOG_DATASET + "/" + first.view();
            String name = PartitionRow.hourName(first.ts, partitionMs);
            int chunks = (all.size() + chunkRows - 1) / chunkRows;
            for (int c = 0; c < chunks; c++) {
                List<FeatureLogRow> chunk = all.subList(c * chunkRows, Math.min(all.size(), (c + 1) * chunkRows));
                out.add(Row.of(dataset, name, base + c, chunks, null, encode(chunk)));
            }
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
