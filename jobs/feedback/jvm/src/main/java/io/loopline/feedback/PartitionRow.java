package io.loopline.feedback;

import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.concurrent.ConcurrentHashMap;

/**
 * One row bound for an event-time partition of a dataset (a feedback slice or the offline
 * feature log): buffered in Flink state until the partition is final, then handed to the
 * Python partition writer in key order.
 */
public class PartitionRow {
    private static final DateTimeFormatter HOUR = DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH").withZone(ZoneOffset.UTC);

    public String dataset;
    public String partition;
    /** Event time after which the partition can no longer change (its timer). */
    public long finalAt;
    /** Orders and de-duplicates the partition's rows: same content → same files. */
    public String sortKey;
    /** The row's event time (the dataset's time column): the manifest's event-time range. */
    public long eventMs;
    /** The inputs the row came from ({@link SourceRefs}): the lineage's Kafka offset ranges. */
    public long[] refs;
    /** The row as one line of JSON, UTF-8: bytes, so moving it between operators is a copy. */
    public byte[] json;

    public PartitionRow() {}

    PartitionRow(String dataset, long eventMs, long partitionMs, long finalDelayMs, String sortKey,
                 byte[] json, long[] refs) {
        long start = eventMs - Math.floorMod(eventMs, partitionMs);
        this.dataset = dataset;
        this.partition = hourName(eventMs, partitionMs);
        this.finalAt = start + partitionMs + finalDelayMs;
        this.sortKey = sortKey;
        this.eventMs = eventMs;
        this.refs = refs;
        this.json = json;
    }

    /** Names by partition start: formatting a date for every row (key selectors call this
     * more than once per record) was a tenth of the job's CPU. A replay spans few hours. */
    private static final ConcurrentHashMap<Long, String> NAMES = new ConcurrentHashMap<>();

    /** The partition's name: its start hour (as jobs/transforms/slices.partition_of). */
    static String hourName(long eventMs, long partitionMs) {
        long start = eventMs - Math.floorMod(eventMs, partitionMs);
        String name = NAMES.get(start);
        if (name == null) {
            if (NAMES.size() > 100_000) NAMES.clear();
            name = HOUR.format(Instant.ofEpochMilli(start));
            NAMES.put(start, name);
        }
        return name;
    }

    public String bufferKey() {
        return dataset + "|" + partition;
    }
}
