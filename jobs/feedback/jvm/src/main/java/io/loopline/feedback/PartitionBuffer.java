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

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Collects one event-time partition of a dataset in Flink state (so it is exactly-once with
 * the checkpoints) and releases it once it can no longer change: rows in key order, in
 * chunks, each one element for the Python partition writer. Key order makes the chunks, and
 * so the files and their fingerprints, the same whenever the partition is released again (a
 * replay after recovery): the writer then finds the file already there.
 */
public class PartitionBuffer extends KeyedProcessFunction<String, PartitionRow, Row> {
    private static final long serialVersionUID = 1L;
    public static final RowTypeInfo TYPE = new RowTypeInfo(
            new TypeInformation<?>[] {
                Types.STRING, Types.STRING, Types.INT, Types.INT, Types.STRING, Types.PRIMITIVE_ARRAY(Types.BYTE)
            },
            new String[] {"dataset", "partition", "chunk", "chunks", "rows", "data"});

    private final int chunkRows;
    private transient MapState<String, String> rows;
    private transient ValueState<Boolean> armed;

    public PartitionBuffer(int chunkRows) {
        this.chunkRows = chunkRows;
    }

    @Override
    public void open(OpenContext context) {
        rows = getRuntimeContext().getMapState(new MapStateDescriptor<>("rows", Types.STRING, Types.STRING));
        armed = getRuntimeContext().getState(new ValueStateDescriptor<>("armed", Types.BOOLEAN));
    }

    @Override
    public void processElement(PartitionRow row, Context ctx, Collector<Row> out) throws Exception {
        rows.put(row.sortKey, row.json);
        if (!Boolean.TRUE.equals(armed.value())) {
            armed.update(true);
            ctx.timerService().registerEventTimeTimer(row.finalAt);
        }
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        List<Map.Entry<String, String>> all = new ArrayList<>();
        for (Map.Entry<String, String> e : rows.entries()) {
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
            // Newline-delimited JSON: the writer parses it in C++ (Arrow) or line by line.
            StringBuilder lines = new StringBuilder();
            for (int i = c * chunkRows; i < Math.min(all.size(), (c + 1) * chunkRows); i++) {
                if (i > c * chunkRows) lines.append('\n');
                lines.append(all.get(i).getValue());
            }
            out.collect(Row.of(key[0], key[1], c, chunks, lines.toString(), null));
        }
    }
}
