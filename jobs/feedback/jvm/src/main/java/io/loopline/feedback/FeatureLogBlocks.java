package io.loopline.feedback;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The open rows of one view in one slice of the offline feature log: sealed into byte
 * blocks of {@link #BLOCK_ROWS} rows as they come, plus a tail of row objects. A checkpoint
 * copies the blocks (arrays, memcpy) instead of every row object field by field, and the
 * blocks weigh a fraction of the objects on the heap. Rows come back as objects only when
 * the partition is released.
 *
 * Block layout (big-endian, ByteBuffer's default): int32 version (1), byte kind, int64
 * slice end (an hour's end in blocks from before slices), int32 rows; per row: int32-length UTF-8 entity id, int64 ts, the kind's
 * longs and doubles ({@link FeatureColumns}), int32 text length (-1: null) + UTF-8 text.
 */
final class FeatureLogBlocks {
    static final int VERSION = 1;
    static final int BLOCK_ROWS = 1024;
    /** version, kind, partition end, rows. */
    private static final int HEADER_BYTES = 4 + 1 + 8 + 4;

    private final byte kind;
    private final long end;
    private final List<byte[]> sealed = new ArrayList<>();
    private final List<FeatureLogRow> tail = new ArrayList<>();
    private int size;

    FeatureLogBlocks(byte kind, long end) {
        this.kind = kind;
        this.end = end;
    }

    void add(FeatureLogRow row) {
        size++;
        tail.add(row);
        if (tail.size() == BLOCK_ROWS) {
            sealed.add(encode(kind, end, tail));
            tail.clear();
        }
    }

    void addBlock(byte[] block) {
        size += header(block).rows;
        sealed.add(block);
    }

    /** Rows of this view and slice. */
    int size() {
        return size;
    }

    /** Appends every row of this view and partition to `out`, as blocks. */
    void blocks(List<byte[]> out) {
        out.addAll(sealed);
        if (!tail.isEmpty()) {
            out.add(encode(kind, end, tail));
        }
    }

    /** Every row, in the order added (blocks first: a restored tail was sealed as a block). */
    List<FeatureLogRow> rows() {
        List<FeatureLogRow> all = new ArrayList<>(sealed.size() * BLOCK_ROWS + tail.size());
        for (byte[] block : sealed) decode(block, all);
        all.addAll(tail);
        return all;
    }

    static final class Header {
        final byte kind;
        final long end;
        final int rows;

        Header(byte kind, long end, int rows) {
            this.kind = kind;
            this.end = end;
            this.rows = rows;
        }
    }

    static Header header(byte[] block) {
        return header(ByteBuffer.wrap(block));
    }

    /** Reads the header at the buffer's position, leaving it at the first row. */
    private static Header header(ByteBuffer in) {
        int version = in.getInt();
        if (version != VERSION) {
            throw new IllegalStateException("feature-log block version " + version + ", expected " + VERSION);
        }
        return new Header(in.get(), in.getLong(), in.getInt());
    }

    static byte[] encode(byte kind, long end, List<FeatureLogRow> rows) {
        int longs = FeatureColumns.longs(kind).length;
        int doubles = FeatureColumns.doubles(kind).length;
        byte[][] ids = new byte[rows.size()][];
        byte[][] texts = new byte[rows.size()][];
        int size = HEADER_BYTES;
        for (int i = 0; i < ids.length; i++) {
            FeatureLogRow r = rows.get(i);
            ids[i] = r.entityId.getBytes(StandardCharsets.UTF_8);
            texts[i] = r.text == null ? null : r.text.getBytes(StandardCharsets.UTF_8);
            size += 4 + ids[i].length + 8 + 8 * (longs + doubles) + 4 + (texts[i] == null ? 0 : texts[i].length);
        }
        ByteBuffer out = ByteBuffer.allocate(size);
        out.putInt(VERSION).put(kind).putLong(end).putInt(rows.size());
        for (int i = 0; i < ids.length; i++) {
            FeatureLogRow r = rows.get(i);
            out.putInt(ids[i].length).put(ids[i]).putLong(r.ts);
            for (int j = 0; j < longs; j++) out.putLong(r.longs[j]);
            for (int j = 0; j < doubles; j++) out.putDouble(r.doubles[j]);
            if (texts[i] == null) {
                out.putInt(-1);
            } else {
                out.putInt(texts[i].length).put(texts[i]);
            }
        }
        return out.array();
    }

    static void decode(byte[] block, List<FeatureLogRow> out) {
        ByteBuffer in = ByteBuffer.wrap(block);
        Header h = header(in);
        int longs = FeatureColumns.longs(h.kind).length;
        int doubles = FeatureColumns.doubles(h.kind).length;
        for (int i = 0; i < h.rows; i++) {
            FeatureLogRow r = new FeatureLogRow();
            r.kind = h.kind;
            r.entityId = text(in, in.getInt());
            r.ts = in.getLong();
            r.longs = new long[longs];
            for (int j = 0; j < longs; j++) r.longs[j] = in.getLong();
            r.doubles = new double[doubles];
            for (int j = 0; j < doubles; j++) r.doubles[j] = in.getDouble();
            int length = in.getInt();
            r.text = length < 0 ? null : text(in, length);
            out.add(r);
        }
    }

    private static String text(ByteBuffer in, int length) {
        String s = new String(in.array(), in.position(), length, StandardCharsets.UTF_8);
        in.position(in.position() + length);
        return s;
    }
}
