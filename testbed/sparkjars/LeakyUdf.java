// The executor-side leaks of the incident lab (docs/lab.md): Spark SQL UDFs written in Java,
// registered with spark.udf.registerJavaFunction and shipped to the executors with --jars.
// Each returns its first argument unchanged; what it does to the executor JVM is the point.
//
// Compiled in the test set-up by testbed.cluster.lab_udf_jar() (javac, the Spark jars as the
// class path); nothing here is shipped.
package sparkwatch.lab;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.LockSupport;

import org.apache.spark.sql.api.java.UDF2;

public final class LeakyUdf {
    private LeakyUdf() {}

    /** Every row keeps {@code bytes} bytes in a static list of the executor JVM, forever
     *  (seed 002: state that is flat, a heap that is not). */
    public static final class LeakHeap implements UDF2<Long, Integer, Long> {
        static final List<byte[]> KEPT = new ArrayList<>();

        @Override
        public Long call(Long value, Integer bytes) {
            byte[] b = new byte[bytes];
            for (int i = 0; i < b.length; i += 4096) {
                b[i] = (byte) i; // touch it: the pages are really used
            }
            synchronized (KEPT) {
                KEPT.add(b);
            }
            return value;
        }
    }

    /** Every {@code every}-th row starts a thread that parks forever and is never stopped
     *  (seed 002's unclosed clients, each one with its own thread). */
    public static final class LeakThreads implements UDF2<Long, Integer, Long> {
        static final List<Thread> KEPT = new ArrayList<>();

        @Override
        public Long call(Long value, Integer every) {
            if (value != null && every != null && every > 0 && value % every == 0) {
                Thread t = new Thread(() -> {
                    while (true) {
                        LockSupport.park();
                    }
                }, "leaked-client-" + value);
                t.setDaemon(true);
                t.start(); // OutOfMemoryError: unable to create native thread, once at the limit
                synchronized (KEPT) {
                    KEPT.add(t);
                }
            }
            return value;
        }
    }
}
