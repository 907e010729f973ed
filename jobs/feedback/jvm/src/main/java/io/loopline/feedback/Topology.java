package io.loopline.feedback;

import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.types.Row;

/**
 * The typed steps the Python job definition (jobs/feedback/pipeline.py) strings together over
 * py4j. Each step returns the Java stream; Python names it and gives it its uid, so the job
 * stays a PyFlink program while no record crosses into Python on the hot path.
 */
public final class Topology {
    private Topology() {}

    public static FeedbackSettings settings(String json) {
        return FeedbackSettings.fromJson(json);
    }

    public static SingleOutputStreamOperator<Row> endOfInput(DataStream<Row> source, FeedbackSettings s) {
        return source.transform("end-of-input-watermark", source.getType(), new EndOfInputWatermark(s.outOfOrdernessMs));
    }

    public static SingleOutputStreamOperator<InputEvent> decode(DataStream<Row> source, FeedbackSettings s) {
        return source.keyBy(new BySourcePartition()).process(new DecodeValidate(s));
    }

    public static DataStream<Row> decodeDeadLetters(SingleOutputStreamOperator<InputEvent> decoded) {
        return decoded.getSideOutput(DecodeValidate.DEAD_LETTERS);
    }

    public static DataStream<Row> late(SingleOutputStreamOperator<InputEvent> decoded) {
        return decoded.getSideOutput(DecodeValidate.LATE);
    }

    public static SingleOutputStreamOperator<PartitionRow> join(DataStream<InputEvent> decoded, FeedbackSettings s) {
        return decoded.keyBy(new ByJoinKey()).process(new LabelJoin(s));
    }

    public static DataStream<Row> joinKafka(SingleOutputStreamOperator<PartitionRow> joined) {
        return joined.getSideOutput(LabelJoin.KAFKA);
    }

    public static DataStream<InputEvent> accepted(SingleOutputStreamOperator<PartitionRow> joined) {
        return joined.getSideOutput(LabelJoin.ACCEPTED);
    }

    public static SingleOutputStreamOperator<FeatureDelta> featureDeltas(DataStream<InputEvent> accepted) {
        return accepted.flatMap(new FeatureDelta.FromEvents());
    }

    /** Main output: chunks of the offline feature log (as the slice buffer's); side: online updates. */
    public static SingleOutputStreamOperator<Row> features(DataStream<FeatureDelta> deltas, FeedbackSettings s) {
        return deltas.keyBy(new ByEntity())
                .transform("window-features", PartitionBuffer.TYPE, new WindowFeatures.Operator(new WindowFeatures(s)));
    }

    public static DataStream<Row> onlineUpdates(SingleOutputStreamOperator<Row> features) {
        return features.getSideOutput(WindowFeatures.ONLINE);
    }

    public static SingleOutputStreamOperator<Row> partitions(DataStream<PartitionRow> rows, FeedbackSettings s) {
        return rows.keyBy(new ByPartition()).process(new PartitionBuffer(s.partitionChunkRows, s.sourceTopics()), PartitionBuffer.TYPE);
    }

    /** Every Kafka output row to its topic (named and uid'd `name`). */
    public static void kafkaSink(DataStream<Row> rows, FeedbackSettings s, String name) {
        KafkaRows.sink(rows, s, name);
    }

    @SuppressWarnings("unchecked")
    public static DataStream<Row> unionAll(java.util.List<DataStream<Row>> streams) {
        return streams.get(0).union(streams.subList(1, streams.size()).toArray(new DataStream[0]));
    }


    /** Lateness is judged per source partition. */
    public static final class BySourcePartition implements KeySelector<Row, String> {
        private static final long serialVersionUID = 1L;

        @Override
        public String getKey(Row row) {
            return row.getField(1) + "|" + row.getField(2);
        }
    }

    public static final class ByJoinKey implements KeySelector<InputEvent, String> {
        private static final long serialVersionUID = 1L;

        @Override
        public String getKey(InputEvent e) {
            return e.joinKey();
        }
    }

    public static final class ByEntity implements KeySelector<FeatureDelta, String> {
        private static final long serialVersionUID = 1L;

        @Override
        public String getKey(FeatureDelta d) {
            return d.key();
        }
    }

    public static final class ByPartition implements KeySelector<PartitionRow, String> {
        private static final long serialVersionUID = 1L;

        @Override
        public String getKey(PartitionRow r) {
            return r.bufferKey();
        }
    }
}
