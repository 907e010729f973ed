package io.loopline.feedback;

import java.util.Arrays;
import java.util.Map;
import java.util.TreeMap;

/**
 * Kafka coordinates of the inputs a row came from, packed two longs per input (topic index and
 * partition, then offset) in a primitive array: they cross an operator boundary with every
 * slice row, where text (`["topic",p,o]` strings, parsed back with split) cost more than
 * the rest of the row's bookkeeping. Topic indices are positions in
 * {@link FeedbackSettings#sourceTopics()}.
 */
final class SourceRefs {
    private SourceRefs() {}

    static long[] of(int topic, int partition, long offset) {
        return new long[] {pack(topic, partition), offset};
    }

    static long[] append(long[] refs, int topic, int partition, long offset) {
        long[] out = Arrays.copyOf(refs, refs.length + 2);
        out[refs.length] = pack(topic, partition);
        out[refs.length + 1] = offset;
        return out;
    }

    static long[] concat(long[] a, long[] b) {
        long[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    private static long pack(int topic, int partition) {
        return ((long) topic << 32) | (partition & 0xffffffffL);
    }

    /** Widen `sources` ({topic: {partition: [min, max]}}) by every input in `refs`. */
    static void widen(Map<String, Map<Integer, long[]>> sources, long[] refs, String[] topics) {
        for (int i = 0; i < refs.length; i += 2) {
            String topic = topics[(int) (refs[i] >>> 32)];
            int partition = (int) refs[i];
            long offset = refs[i + 1];
            long[] span = sources.computeIfAbsent(topic, t -> new TreeMap<>())
                    .computeIfAbsent(partition, p -> new long[] {offset, offset});
            span[0] = Math.min(span[0], offset);
            span[1] = Math.max(span[1], offset);
        }
    }
}
