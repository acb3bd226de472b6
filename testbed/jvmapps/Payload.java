// Loaded again and again by fresh class loaders (see Workload): every copy is
// a new class, and its methods are JIT-compiled separately.
public class Payload implements java.util.function.IntUnaryOperator {
    private long acc;

    private long mix(long x) { return (x * 0x9E3779B97F4A7C15L) ^ (x >>> 29) ^ acc; }

    private int fold(long x) { return (int) (x ^ (x >>> 32)) + (int) (acc & 7); }

    private long branchy(int v) {
        long r = v;
        if ((v & 1) == 0) r += mix(v); else r -= mix(v + 3);
        if ((v & 2) == 0) r ^= mix(r); else r += v * 31L;
        switch (v & 7) {
            case 0: r += 1; break;
            case 1: r *= 3; break;
            case 2: r ^= 0x55; break;
            case 3: r -= 7; break;
            case 4: r = Long.rotateLeft(r, 5); break;
            case 5: r = Long.rotateRight(r, 11); break;
            case 6: r += Long.bitCount(r); break;
            default: r = ~r;
        }
        return r;
    }

    @Override
    public int applyAsInt(int v) {
        long r = 0;
        for (int i = 0; i < 4; i++) {
            r += branchy(v + i);
            acc += fold(r);
        }
        return fold(r);
    }
}
