package io.streamrec.flink;

import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.flink.types.Row;

/**
 * Writes Row(key, value) to one topic as a keyed Kafka record. A null value is written as a
 * tombstone (used for forget_user). The record timestamp is left to the producer (wall clock):
 * event times of replayed history would otherwise fall outside the topic's retention.
 */
public class KeyValueRowSerializer implements KafkaRecordSerializationSchema<Row> {
    private static final long serialVersionUID = 1L;

    private final String topic;

    public KeyValueRowSerializer(String topic) {
        if (topic == null || topic.isEmpty()) {
            throw new IllegalArgumentException("topic must be set");
        }
        this.topic = topic;
    }

    @Override
    public ProducerRecord<byte[], byte[]> serialize(
            Row element, KafkaSinkContext context, Long timestamp) {
        byte[] key = (byte[]) element.getField(0);
        byte[] value = (byte[]) element.getField(1);
        return new ProducerRecord<>(topic, null, null, key, value);
    }
}
