package io.streamrec.flink;

import java.time.Duration;

import org.apache.flink.api.common.eventtime.BoundedOutOfOrdernessWatermarks;
import org.apache.flink.api.common.eventtime.SerializableTimestampAssigner;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.types.Row;
import org.apache.flink.util.clock.RelativeClock;

/**
 * Event time of {@link KeyedRecords} rows, assigned in the JVM at the source: the ts the scan
 * read, or Long.MIN_VALUE for a record without a valid one (it is a dead letter or a catalog
 * record without time, and never moves the watermark).
 */
public class EventTimes implements SerializableTimestampAssigner<Row> {
    private static final long serialVersionUID = 1L;

    @Override
    public long extractTimestamp(Row element, long recordTimestamp) {
        Object ts = ((Row) element.getField(1)).getField(3);
        return ts == null ? Long.MIN_VALUE : (Long) ts;
    }

    /**
     * Bounded out-of-orderness watermarks per Kafka partition. A partition that has delivered
     * records and then stays quiet for idleMs stops holding event time back; one that has
     * delivered nothing yet only after startupIdleMs, so that a topic still being read at start
     * (the catalog) is not taken for an idle one. idleMs <= 0: never idle.
     *
     * <p>Quiet time is read from the source's input activity clock, which stands still while
     * the source cannot emit (backpressure, watermark alignment). On the wall clock, a
     * partition with a backlog behind a slow operator looked quiet and was marked idle; the
     * operator then took event time from its other input alone (the world's broadcast of the
     * same events, which it reads faster), and timers fired ahead of events still queued.
     */
    public static WatermarkStrategy<Row> strategy(
            long outOfOrdernessMs, long idleMs, long startupIdleMs) {
        Duration bound = Duration.ofMillis(outOfOrdernessMs);
        WatermarkStrategy<Row> s =
                ctx -> new QuietIdleness(new BoundedOutOfOrdernessWatermarks<>(bound), idleMs,
                        Math.max(idleMs, startupIdleMs), ctx.getInputActivityClock());
        return s.withTimestampAssigner(new EventTimes());
    }

    /** Marks the output idle after a quiet period; any record makes it active again. */
    static final class QuietIdleness implements WatermarkGenerator<Row> {
        private final WatermarkGenerator<Row> inner;
        private final long idleMs;
        private final long startupIdleMs;
        private final RelativeClock clock;
        private long lastActivity;
        private boolean seen;
        private boolean idle;

        QuietIdleness(
                WatermarkGenerator<Row> inner, long idleMs, long startupIdleMs, RelativeClock clock) {
            this.inner = inner;
            this.idleMs = idleMs;
            this.startupIdleMs = startupIdleMs;
            this.clock = clock;
            this.lastActivity = clock.relativeTimeMillis();
        }

        @Override
        public void onEvent(Row event, long eventTimestamp, WatermarkOutput output) {
            seen = true;
            idle = false;
            lastActivity = clock.relativeTimeMillis();
            inner.onEvent(event, eventTimestamp, output);
        }

        @Override
        public void onPeriodicEmit(WatermarkOutput output) {
            long quiet = clock.relativeTimeMillis() - lastActivity;
            if (idleMs > 0 && quiet > (seen ? idleMs : startupIdleMs)) {
                if (!idle) {
                    output.markIdle();
                    idle = true;
                }
            } else {
                inner.onPeriodicEmit(output);
            }
        }
    }
}
