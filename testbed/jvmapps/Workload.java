import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.lang.management.ClassLoadingMXBean;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.function.IntUnaryOperator;

/**
 * A JVM the tests drive through stdin, one command per line; each command
 * answers one line starting with "done" once the JVM is quiet again:
 *   classes N   define N new classes (copies of Payload in fresh loaders)
 *   compile N   define N copies and call each until the JIT compiles it
 *   threads N   start sleeping threads until the process has N OS threads
 *               (or thread creation fails)
 *   counts      report the class and thread counts without doing anything
 *   exit
 * Everything created is kept reachable, so nothing is unloaded.
 */
public class Workload {
    static final List<Object> keep = new ArrayList<>();
    static byte[] payload;
    static volatile long sink;

    static final class CopyLoader extends ClassLoader {
        CopyLoader() { super(Workload.class.getClassLoader()); }

        @Override
        protected Class<?> loadClass(String name, boolean resolve) throws ClassNotFoundException {
            if (name.equals("Payload")) {
                synchronized (getClassLoadingLock(name)) {
                    Class<?> c = findLoadedClass(name);
                    if (c == null) c = defineClass(name, payload, 0, payload.length);
                    return c;
                }
            }
            return super.loadClass(name, resolve);
        }
    }

    static IntUnaryOperator newCopy() throws Exception {
        Class<?> c = new CopyLoader().loadClass("Payload");
        IntUnaryOperator op = (IntUnaryOperator) c.getDeclaredConstructor().newInstance();
        keep.add(op);
        return op;
    }

    static int osThreads() throws Exception {
        for (String l : Files.readAllLines(Paths.get("/proc/self/status"))) {
            if (l.startsWith("Threads:")) return Integer.parseInt(l.substring(8).trim());
        }
        return -1;
    }

    static String counts() throws Exception {
        ClassLoadingMXBean cl = ManagementFactory.getClassLoadingMXBean();
        return "loaded=" + cl.getLoadedClassCount() + " total=" + cl.getTotalLoadedClassCount()
                + " unloaded=" + cl.getUnloadedClassCount() + " threads=" + osThreads()
                + " live=" + ManagementFactory.getThreadMXBean().getThreadCount();
    }

    public static void main(String[] args) throws Exception {
        try (InputStream in = Workload.class.getResourceAsStream("/Payload.class")) {
            payload = in.readAllBytes();
        }
        // warm up what the commands use, so that the counts settle afterwards
        counts();
        newCopy().applyAsInt(1);
        System.out.println("ready pid=" + ProcessHandle.current().pid());
        System.out.flush();
        BufferedReader r = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = r.readLine()) != null) {
            String[] w = line.trim().split("\\s+");
            String answer;
            switch (w[0]) {
                case "classes": {
                    int n = Integer.parseInt(w[1]);
                    for (int i = 0; i < n; i++) newCopy();
                    answer = counts();
                    break;
                }
                case "compile": {
                    int n = Integer.parseInt(w[1]);
                    for (int i = 0; i < n; i++) {
                        IntUnaryOperator op = newCopy();
                        long s = 0;
                        for (int k = 0; k < 3000; k++) s += op.applyAsInt(k);
                        sink += s;
                    }
                    Thread.sleep(500); // let the compiler queue drain
                    answer = counts();
                    break;
                }
                case "threads": {
                    int n = Integer.parseInt(w[1]);
                    boolean failed = false;
                    try {
                        while (osThreads() < n) {
                            Thread t = new Thread(() -> {
                                try { Thread.sleep(Long.MAX_VALUE); } catch (InterruptedException e) { }
                            });
                            t.setDaemon(true);
                            t.start();
                            keep.add(t);
                        }
                    } catch (OutOfMemoryError e) {
                        failed = true;
                    }
                    answer = counts() + " failed=" + failed;
                    break;
                }
                case "counts":
                    answer = counts();
                    break;
                case "exit":
                    System.exit(0);
                    return;
                default:
                    answer = "unknown command";
            }
            System.out.println("done " + answer);
            System.out.flush();
        }
    }
}
