package io.streamrec.flink;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.StreamReadConstraints;
import org.apache.flink.types.Row;

/**
 * A Kafka record as the job's Python operators receive it, keyed and timed in the JVM:
 *
 * <pre>Row(key, Row(topic, partition, offset, ts, created, kafka_key, value))</pre>
 *
 * <p>{@code key} is the record's key field ({@code user_id} for events, {@code item_id} for items)
 * read from the JSON value, or, if the value has none and {@code kafkaKeyFallback} is set, the
 * Kafka key as UTF-8 (catalog tombstones). {@code ts} is the value's {@code ts} when it is an
 * integer in [0, now + maxFutureMs], else null: such a record never moves event time.
 *
 * <p>Only these two fields are read, with a shallow streaming scan of the top-level object (nested
 * values are skipped; nesting is bounded as in Python, string lengths by the value's, so no input
 * can make the scan fail or run long). A key that is not valid text (a lone surrogate) counts as
 * absent: it could not reach Python. Everything else, and the verdict on validity, is Python's
 * ({@code operators.events}): an unreadable record gets the key "" and a null ts here and becomes
 * a dead letter there. Last occurrence wins for duplicate fields, as in Python's json module.
 * {@code created} is the Kafka record's timestamp (for latency figures only).
 */
public final class KeyedRecords {

    /** Values over this size are not scanned (the contract's 64 KiB limit). */
    public static final int MAX_VALUE_BYTES = 64 * 1024;

    private static final JsonFactory JSON =
            JsonFactory.builder()
                    .streamReadConstraints(
                            StreamReadConstraints.builder()
                                    .maxNestingDepth(64)
                                    // Python's json reads numbers of any length (a record with
                                    // a long one in any field is valid there): the scan must
                                    // not fail on one (values are at most 64 KiB anyway)
                                    .maxNumberLength(MAX_VALUE_BYTES)
                                    .maxStringLength(MAX_VALUE_BYTES)
                                    .build())
                    .build();

    private KeyedRecords() {}

    /** The row type of {@link #keyed}. */
    public static TypeInformation<Row> type() {
        return Types.ROW_NAMED(
                new String[] {"key", "record"},
                Types.STRING,
                Types.ROW_NAMED(
                        new String[] {
                            "topic", "partition", "offset", "ts", "created", "kafka_key", "value"
                        },
                        Types.STRING,
                        Types.INT,
                        Types.LONG,
                        Types.LONG,
                        Types.LONG,
                        Types.PRIMITIVE_ARRAY(Types.BYTE),
                        Types.PRIMITIVE_ARRAY(Types.BYTE)));
    }

    public static Row keyed(
            String topic,
            int partition,
            long offset,
            long created,
            byte[] kafkaKey,
            byte[] value,
            String keyField,
            boolean kafkaKeyFallback,
            long maxFutureMs,
            long nowMs) {
        String key = null;
        Long ts = null;
        if (value != null && value.length <= MAX_VALUE_BYTES) {
            Object[] found = scan(value, keyField);
            if (found != null) {
                key = (String) found[0];
                ts = (Long) found[1];
            }
        }
        if (key != null && !wellFormed(key)) {
            // "\ud800" in JSON is a lone surrogate: not text (Python's parser refuses the record)
            // and not convertible to a Python string, which failed the task in thread mode
            key = null;
        }
        if (key == null && kafkaKeyFallback && kafkaKey != null) {
            key = utf8(kafkaKey);
        }
        if (ts != null && (ts < 0 || ts > nowMs + maxFutureMs)) {
            ts = null;
        }
        return Row.of(
                key == null ? "" : key,
                Row.of(topic, partition, offset, ts, created, kafkaKey, value));
    }

    /** {key field, ts} of a top-level JSON object, or null if it is not one. */
    static Object[] scan(byte[] value, String keyField) {
        String key = null;
        Long ts = null;
        try (JsonParser p = JSON.createParser(value)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                return null;
            }
            JsonToken t;
            while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
                String name = p.currentName();
                JsonToken v = p.nextToken();
                if (keyField.equals(name)) {
                    key = v == JsonToken.VALUE_STRING ? p.getText() : null;
                } else if ("ts".equals(name)) {
                    ts = timestamp(p, v);
                }
                p.skipChildren();
            }
            if (t != JsonToken.END_OBJECT || p.nextToken() != null) {
                return null;
            }
        } catch (IOException | RuntimeException | StackOverflowError e) {
            return null;
        }
        return new Object[] {key, ts};
    }

    private static Long timestamp(JsonParser p, JsonToken v) throws IOException {
        if (v == JsonToken.VALUE_NUMBER_INT && p.getTextLength() > 20) {
            return null; // beyond 64 bits (not parsed: a long literal would cost a BigInteger)
        }
        if (v == JsonToken.VALUE_NUMBER_INT) {
            JsonParser.NumberType type = p.getNumberType();
            return type == JsonParser.NumberType.BIG_INTEGER ? null : p.getLongValue();
        }
        if (v == JsonToken.VALUE_NUMBER_FLOAT) {
            double d = p.getDoubleValue();
            if (d == Math.rint(d) && Math.abs(d) < 9.0e15) {
                return (long) d;
            }
        }
        return null;
    }

    /** Whether a string is valid UTF-16: every surrogate is part of a pair. */
    static boolean wellFormed(String s) {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (Character.isHighSurrogate(c)) {
                if (i + 1 >= s.length() || !Character.isLowSurrogate(s.charAt(i + 1))) {
                    return false;
                }
                i++;
            } else if (Character.isLowSurrogate(c)) {
                return false;
            }
        }
        return true;
    }

    private static String utf8(byte[] bytes) {
        try {
            return StandardCharsets.UTF_8
                    .newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(bytes))
                    .toString();
        } catch (CharacterCodingException e) {
            return null;
        }
    }
}
