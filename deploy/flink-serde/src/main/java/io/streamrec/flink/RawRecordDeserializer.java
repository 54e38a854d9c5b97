package io.streamrec.flink;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Hands every Kafka record to the job unchanged: Row(topic, partition, offset, timestamp, key,
 * value), key and value as raw bytes, null kept (a tombstone). Nothing is parsed or dropped here:
 * the Python side decides what is valid and sends the rest to the dead-letter topic.
 */
public class RawRecordDeserializer implements KafkaRecordDeserializationSchema<Row> {
    private static final long serialVersionUID = 1L;

    public static final String[] FIELD_NAMES = {
        "topic", "partition", "offset", "timestamp", "key", "value"
    };

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Row> out) {
        out.collect(
                Row.of(
                        record.topic(),
                        record.partition(),
                        record.offset(),
                        record.timestamp(),
                        record.key(),
                        record.value()));
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return Types.ROW_NAMED(
                FIELD_NAMES,
                Types.STRING,
                Types.INT,
                Types.LONG,
                Types.LONG,
                Types.PRIMITIVE_ARRAY(Types.BYTE),
                Types.PRIMITIVE_ARRAY(Types.BYTE));
    }
}
