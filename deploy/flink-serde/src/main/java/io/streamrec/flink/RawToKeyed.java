package io.streamrec.flink;

import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.java.typeutils.ResultTypeQueryable;
import org.apache.flink.types.Row;

/**
 * Row(topic, partition, offset, timestamp, key, value) -> the {@link KeyedRecords} row, exactly as
 * {@link KeyedRecordDeserializer} makes it at the source: lets tests feed the job graph from
 * collections of raw records through the same code.
 */
public class RawToKeyed implements MapFunction<Row, Row>, ResultTypeQueryable<Row> {
    private static final long serialVersionUID = 1L;

    private final String keyField;
    private final boolean kafkaKeyFallback;
    private final long maxFutureMs;

    public RawToKeyed(String keyField, boolean kafkaKeyFallback, long maxFutureMs) {
        this.keyField = keyField;
        this.kafkaKeyFallback = kafkaKeyFallback;
        this.maxFutureMs = maxFutureMs;
    }

    @Override
    public Row map(Row raw) {
        return KeyedRecords.keyed(
                (String) raw.getField(0),
                (Integer) raw.getField(1),
                (Long) raw.getField(2),
                (Long) raw.getField(3),
                (byte[]) raw.getField(4),
                (byte[]) raw.getField(5),
                keyField,
                kafkaKeyFallback,
                maxFutureMs,
                System.currentTimeMillis());
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return KeyedRecords.type();
    }
}
