package io.streamrec.flink;

import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.ResultTypeQueryable;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Events for the world model every recommend task keeps (co-occurrence, trending, ...): the
 * {@link KeyedRecords} rows of the events topic with a valid time, as Row(kind, id, payload) with
 * kind "event" and the raw JSON value, the row type the catalog branch also emits (kind "item"), so
 * that both can be unioned and broadcast without a Python step. Events without a valid time are
 * dead letters (the keyed path reports them) and are not forwarded.
 */
public class BroadcastUpdates implements FlatMapFunction<Row, Row>, ResultTypeQueryable<Row> {
    private static final long serialVersionUID = 1L;

    /** Row(kind, id, payload): id names the source record ("topic/partition/offset"). */
    public static TypeInformation<Row> type() {
        return Types.ROW_NAMED(
                new String[] {"kind", "id", "payload"},
                Types.STRING,
                Types.STRING,
                Types.PRIMITIVE_ARRAY(Types.BYTE));
    }

    @Override
    public void flatMap(Row keyed, Collector<Row> out) {
        Row record = (Row) keyed.getField(1);
        Object value = record.getField(6);
        if (record.getField(3) != null && value != null) {
            String id = record.getField(0) + "/" + record.getField(1) + "/" + record.getField(2);
            out.collect(Row.of("event", id, value));
        }
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return type();
    }
}
