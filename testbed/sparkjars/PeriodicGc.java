// The incident lab's executors run a full GC every few seconds: the executor-side equivalent of
// spark.cleaner.periodicGC.interval, which Spark runs in the driver only (ContextCleaner calls
// System.gc() in the driver JVM). As it does for the lab's drivers, it makes the old
// generation's floor (min_over_time of its use) the live set within minutes, not hours, in
// healthy and leaking executors alike. A Spark plugin (spark.plugins), on the executors'
// class path through spark.executor.extraClassPath; the interval is
// spark.sparkwatch.lab.executorGcSeconds (default 15).
package sparkwatch.lab;

import java.util.Map;

import org.apache.spark.api.plugin.DriverPlugin;
import org.apache.spark.api.plugin.ExecutorPlugin;
import org.apache.spark.api.plugin.PluginContext;
import org.apache.spark.api.plugin.SparkPlugin;

public final class PeriodicGc implements SparkPlugin {
    @Override
    public DriverPlugin driverPlugin() {
        return null;
    }

    @Override
    public ExecutorPlugin executorPlugin() {
        return new ExecutorPlugin() {
            @Override
            public void init(PluginContext ctx, Map<String, String> extraConf) {
                long seconds = Long.parseLong(ctx.conf().get("spark.sparkwatch.lab.executorGcSeconds", "15"));
                Thread t = new Thread(() -> {
                    while (true) {
                        try {
                            Thread.sleep(seconds * 1000L);
                        } catch (InterruptedException e) {
                            return;
                        }
                        System.gc();
                    }
                }, "sparkwatch-lab-periodic-gc");
                t.setDaemon(true);
                t.start();
            }
        };
    }
}
