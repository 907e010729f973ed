package io.loopline.flink;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.functions.python.DataStreamPythonFunctionInfo;
import org.apache.flink.streaming.api.operators.python.process.AbstractExternalDataStreamPythonFunctionOperator;
import org.apache.flink.streaming.api.operators.python.process.ExternalPythonKeyedProcessOperator;

/**
 * PyFlink's keyed process operator (process mode) with the timers of the last bundle in the
 * checkpoint.
 *
 * <p>Why: timers registered by the Python function reach the JVM on a gRPC thread and are
 * handed to the task's mailbox, to be registered later on the task thread. Before a checkpoint
 * barrier the operator finishes the Python bundle, which delivers the bundle's last timer
 * registrations as mails; but the snapshot is taken in the same mailbox action, before those
 * mails run. The checkpoint then holds the state written in that bundle (an open request, a
 * buffered partition) without the timer that would close it, and a job restored from it never
 * fires that timer: the request is never labelled. Here the pending registrations are applied
 * on the task thread right after the bundle is finished and before the snapshot (a
 * registration applied here is skipped when its mail runs later).
 *
 * <p>Only the keyed process function (no windows) is covered: Loopline uses no Python windows.
 */
public class CheckpointedTimersKeyedProcessOperator<OUT> extends ExternalPythonKeyedProcessOperator<OUT> {

    private static final long serialVersionUID = 1L;

    public CheckpointedTimersKeyedProcessOperator(
            Configuration config,
            DataStreamPythonFunctionInfo pythonFunctionInfo,
            RowTypeInfo inputTypeInfo,
            TypeInformation<OUT> outputTypeInfo) {
        super(config, pythonFunctionInfo, inputTypeInfo, outputTypeInfo);
    }

    /** The same operator as `original` (as PyFlink built it), with checkpointed timers. */
    public static <T> CheckpointedTimersKeyedProcessOperator<T> of(
            ExternalPythonKeyedProcessOperator<T> original) {
        return new CheckpointedTimersKeyedProcessOperator<>(
                original.getConfiguration(),
                original.getPythonFunctionInfo(),
                (RowTypeInfo) original.getInputTypeInfo(),
                original.getProducedType());
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        super.prepareSnapshotPreBarrier(checkpointId); // finishes the Python bundle
        drainUnregisteredTimers();
    }

    /** PyFlink chains stateless Python functions into this one by copying it. */
    @Override
    public <T> AbstractExternalDataStreamPythonFunctionOperator<T> copy(
            DataStreamPythonFunctionInfo pythonFunctionInfo, TypeInformation<T> outputTypeInfo) {
        return new CheckpointedTimersKeyedProcessOperator<>(
                getConfiguration(),
                pythonFunctionInfo,
                (RowTypeInfo) getInputTypeInfo(),
                outputTypeInfo);
    }
}
