package io.loopline.feedback;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

import java.io.ByteArrayOutputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Collects one event-time partition of a dataset in Flink state (so it is exactly-once with
 * the checkpoints) and releases it once it can no longer change: rows in key order, in
 * chunks, each one element for the Python partition writer. Key order makes the chunks, and
 * so the files and their fingerprints, the same whenever the partition is released again (a
 * replay after recovery): the writer then finds the file already there.
 *
 * A chunk is newline-delimited JSON (`data`, UTF-8), which the writer hands to Arrow's C++
 * reader with the dataset's schema, plus a JSON summary (`rows`) of what the manifest and
 * lineage need: row count, event-time range and the Kafka offset ranges of the inputs. So
 * Python never touches a row: it was the job's bottleneck while it parsed, de-duplicated and
 * fingerprinted them one by one (the MapState below already de-duplicates by row key).
 */
public class PartitionBuffer extends KeyedProcessFunction<String, PartitionRow, Row> {
    private static final long serialVersionUID = 1L;
    public static final RowTypeInfo TYPE = new RowTypeInfo(
            new TypeInformation<?>[] {
                Types.STRING, Types.STRING, Types.INT, Types.INT, Types.STRING, Types.PRIMITIVE_ARRAY(Types.BYTE)
            },
            new String[] {"dataset", "partition", "chunk", "chunks", "rows", "data"});

    private final int chunkRows;
    private final String[] topics;
    private transient MapState<String, PartitionRow> rows;
    private transient ValueState<Boolean> armed;

    public PartitionBuffer(int chunkRows, String[] topics) {
        this.chunkRows = chunkRows;
        this.topics = topics;
    }

    @Override
    public void open(OpenContext context) {
        rows = getRuntimeContext().getMapState(new MapStateDescriptor<>(
                "partition-rows", Types.STRING, TypeInformation.of(PartitionRow.class)));
        armed = getRuntimeContext().getState(new ValueStateDescriptor<>("armed", Types.BOOLEAN));
    }

    @Override
    public void processElement(PartitionRow row, Context ctx, Collector<Row> out) throws Exception {
        rows.put(row.sortKey, row);
        if (!Boolean.TRUE.equals(armed.value())) {
            armed.update(true);
            ctx.timerService().registerEventTimeTimer(row.finalAt);
        }
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        List<Map.Entry<String, PartitionRow>> all = new ArrayList<>();
        for (Map.Entry<String, PartitionRow> e : rows.entries()) {
            all.add(Map.entry(e.getKey(), e.getValue()));
        }
        rows.clear();
        armed.clear();
        if (all.isEmpty()) {
            return;
        }
        all.sort(Map.Entry.comparingByKey());
        String[] key = ctx.getCurrentKey().split("\\|", 2);
        int chunks = (all.size() + chunkRows - 1) / chunkRows;
        for (int c = 0; c < chunks; c++) {
            List<Map.Entry<String, PartitionRow>> chunk =
                    all.subList(c * chunkRows, Math.min(all.size(), (c + 1) * chunkRows));
            ByteArrayOutputStream lines = new ByteArrayOutputStream(chunk.size() * 512);
            long min = Long.MAX_VALUE, max = Long.MIN_VALUE;
            Map<String, Map<Integer, long[]>> sources = new TreeMap<>();
            for (Map.Entry<String, PartitionRow> e : chunk) {
                PartitionRow r = e.getValue();
                lines.writeBytes(r.json);
                lines.write('\n');
                min = Math.min(min, r.eventMs);
                max = Math.max(max, r.eventMs);
                SourceRefs.widen(sources, r.refs, topics);
            }
            out.collect(Row.of(key[0], key[1], c, chunks, summary(chunk.size(), min, max, sources),
                    lines.toByteArray()));
        }
    }

    /** {"rows":n,"event_time_min":..,"event_time_max":..,"sources":{topic:{partition:[lo,hi]}}} */
    static String summary(int n, long min, long max, Map<String, Map<Integer, long[]>> sources) {
        StringBuilder b = new StringBuilder("{\"rows\":").append(n)
                .append(",\"event_time_min\":").append(min)
                .append(",\"event_time_max\":").append(max).append(",\"sources\":{");
        boolean firstTopic = true;
        for (Map.Entry<String, Map<Integer, long[]>> t : sources.entrySet()) {
            if (!firstTopic) b.append(',');
            firstTopic = false;
            Json.quote(b, t.getKey());
            b.append(":{");
            boolean firstPartition = true;
            for (Map.Entry<Integer, long[]> p : t.getValue().entrySet()) {
                if (!firstPartition) b.append(',');
                firstPartition = false;
                b.append('"').append(p.getKey()).append("\":[").append(p.getValue()[0]).append(',')
                        .append(p.getValue()[1]).append(']');
            }
            b.append('}');
        }
        return b.append("}}").toString();
    }
}
