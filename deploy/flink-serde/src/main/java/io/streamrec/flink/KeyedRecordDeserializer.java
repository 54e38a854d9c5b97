package io.streamrec.flink;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Kafka records as {@link KeyedRecords} rows, so that keying and event time happen in the JVM at
 * the source (per partition) and the job's Python operators get one call per record.
 */
public class KeyedRecordDeserializer implements KafkaRecordDeserializationSchema<Row> {
    private static final long serialVersionUID = 1L;

    private final String keyField;
    private final boolean kafkaKeyFallback;
    private final long maxFutureMs;

    public KeyedRecordDeserializer(String keyField, boolean kafkaKeyFallback, long maxFutureMs) {
        this.keyField = keyField;
        this.kafkaKeyFallback = kafkaKeyFallback;
        this.maxFutureMs = maxFutureMs;
    }

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Row> out) {
        out.collect(
                KeyedRecords.keyed(
                        record.topic(),
                        record.partition(),
                        record.offset(),
                        record.timestamp(),
                        record.key(),
                        record.value(),
                        keyField,
                        kafkaKeyFallback,
                        maxFutureMs,
                        System.currentTimeMillis()));
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return KeyedRecords.type();
    }
}
