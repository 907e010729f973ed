package io.loopline.feedback;

import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.state.StateInitializationContext;
import org.apache.flink.runtime.state.StateSnapshotContext;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * Makes the end of an input deterministic. Before the final MAX watermark (a bounded input
 * exhausted, or a drain) it emits the watermark the data itself justifies: the newest event
 * time this source subtask read, minus the out-of-orderness bound. Every real watermark is at
 * most that, so decay timers up to it fire in every run, whatever the timing of watermark
 * emission; what lies beyond it is left to the end-of-input rules of each operator. Without
 * this, a replay and a live run could differ in the decays that fired just before the end.
 */
public class EndOfInputWatermark extends AbstractStreamOperator<Row> implements OneInputStreamOperator<Row, Row> {
    private static final long serialVersionUID = 1L;
    private final long outOfOrdernessMs;
    private transient long newest;
    private transient ListState<Long> checkpointed;

    public EndOfInputWatermark(long outOfOrdernessMs) {
        this.outOfOrdernessMs = outOfOrdernessMs;
    }

    @Override
    public void initializeState(StateInitializationContext context) throws Exception {
        super.initializeState(context);
        checkpointed = context.getOperatorStateStore().getListState(new ListStateDescriptor<>("newest", Types.LONG));
        newest = Long.MIN_VALUE;
        for (Long value : checkpointed.get()) {
            newest = Math.max(newest, value);
        }
    }

    @Override
    public void snapshotState(StateSnapshotContext context) throws Exception {
        super.snapshotState(context);
        checkpointed.update(java.util.List.of(newest));
    }

    @Override
    public void processElement(StreamRecord<Row> element) {
        if (element.hasTimestamp() && element.getTimestamp() > newest) {
            newest = element.getTimestamp();
        }
        output.collect(element);
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        if (mark.getTimestamp() == Long.MAX_VALUE && newest != Long.MIN_VALUE) {
            super.processWatermark(new Watermark(newest - outOfOrdernessMs));
        }
        super.processWatermark(mark);
    }
}
