// Runs the Lightning attention CUDA kernels on the CPU stand-in (emu.h) and
// checks them against an f64 token-by-token recurrence: the forward of the
// sequential pass (f32, f16, bf16) and of the 16-bit walk + outputs phases,
// with start and end states, packed sequences, reversed time and the
// backward's state options. Exits non-zero on any miss. Built and run by
// scripts/cuda-emu.sh (CI); small shapes, since every thread is an OS thread.
#include "emu.h"

#include "../lightning.cu"

#include <cstdio>
#include <random>
#include <string>


namespace {

struct Case {
    std::string name;
    std::vector<int> lens; // one per sequence
    bool packed;
    int heads, dq, dv;
    bool s0, s_out, reverse, s0_transposed, s0_over_decay, s_out_times_decay;
};

template <typename T> double unit_roundoff();
template <> double unit_roundoff<float>() { return std::ldexp(1.0, -24); }
template <> double unit_roundoff<__half>() { return std::ldexp(1.0, -11); }
template <> double unit_roundoff<__nv_bfloat16>() { return std::ldexp(1.0, -8); }

// Sequential: a block per (sequence, head, slice) walks everything. Chunked:
// f32's three launches (chunk contributions, scan, outputs). Walk16: the
// 16-bit walk, then the outputs.
enum class Path { Sequential, Chunked, Walk16, Segments };

// Returns the largest |error| / (8 u_io magnitude + 1e-30) over outputs and end states.
template <typename T> double run_case(const Case &cs, Path path, unsigned seed) {
    const int seqs = (int)cs.lens.size(), H = cs.heads, dq = cs.dq, dv = cs.dv;
    const int n = cs.lens[0];
    std::vector<long long> off(seqs + 1, 0);
    for (int s = 0; s < seqs; s++) off[s + 1] = off[s] + cs.lens[s];
    const long long tokens = off[seqs];
    // layout: [tokens, heads, d]; a batch is sequences of n tokens back to back
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    auto fill = [&](std::vector<T> &x, size_t len) {
        x.resize(len);
        for (auto &e : x) e = tk::Io<T>::store(u(rng));
    };
    std::vector<T> q, k, v, o(tokens * H * dv);
    fill(q, tokens * H * dq);
    fill(k, tokens * H * dq);
    fill(v, tokens * H * dv);
    std::vector<float> decay(H), s0(cs.s0 ? (size_t)seqs * H * dq * dv : 0), s_out(cs.s_out ? (size_t)seqs * H * dq * dv : 0);
    const float decays[] = {1.0f, 0.999f, 0.9f, 0.5f};
    for (int h = 0; h < H; h++) decay[h] = decays[h % 4];
    for (auto &e : s0) e = u(rng);

    tk::LtPassArgs a{};
    a.q = q.data(), a.k = k.data(), a.v = v.data(), a.o = o.data();
    auto lay = [&](int d) { return tk::LtLayout{(long long)n * H * d, d, (long long)H * d}; };
    a.lq = lay(dq), a.lk = lay(dq), a.lv = lay(dv), a.lo = lay(dv);
    a.s0 = cs.s0 ? s0.data() : nullptr;
    a.s_out = cs.s_out ? s_out.data() : nullptr;
    a.seqs = seqs, a.heads = H, a.n = n, a.dq = dq, a.dv = dv;
    a.packed = cs.packed, a.reverse = cs.reverse, a.s0_transposed = cs.s0_transposed;
    a.s0_over_decay = cs.s0_over_decay, a.s_out_times_decay = cs.s_out_times_decay;
    for (int h = 0; h < H; h++) a.decay[h] = decay[h];
    for (int s = 0; s <= seqs; s++) a.offsets[s] = off[s];
    long long chunks = 0;
    for (int s = 0; s < seqs; s++) chunks += (cs.lens[s] + 63) / 64;
    std::vector<float> ws((size_t)chunks * H * dq * dv + 4, NAN);
    a.ws = ws.data();
    const unsigned slices = (dv + 63) / 64;
    if (path == Path::Sequential) {
        a.phase = tk::LT_SEQUENTIAL;
        emu::launch({(unsigned)seqs, (unsigned)H, slices}, {128, 1, 1}, [&] { tk::lightning_pass<T>(a); });
    } else if (path == Path::Chunked) {
        a.phase = tk::LT_CHUNK_STATES;
        if (chunks > 0)
            emu::launch({(unsigned)chunks, (unsigned)H, slices}, {128, 1, 1}, [&] { tk::lightning_pass<T>(a); });
        emu::launch({(unsigned)(dq * dv + 255) / 256, (unsigned)H, (unsigned)seqs}, {256, 1, 1},
                    [&] { tk::lightning_scan(a); });
        a.phase = tk::LT_CHUNK_OUTPUTS;
        if (chunks > 0)
            emu::launch({(unsigned)chunks, (unsigned)H, slices}, {128, 1, 1}, [&] { tk::lightning_pass<T>(a); });
    } else {
        if constexpr (sizeof(T) == 2) {
            // Segments: walks of 2 chunks (src/cuda/lightning.rs picks larger ones)
            a.seg_chunks = 0, a.segs = 1;
            if (path == Path::Segments) {
                int most = 0;
                for (int s = 0; s < seqs; s++) most = std::max(most, (int)(cs.lens[s] + 63) / 64);
                if (most > 2) a.seg_chunks = 2, a.segs = (most + 1) / 2;
            }
            const unsigned tiles = ((dq + 63) / 64) * slices;
            emu::launch({tiles, (unsigned)H, (unsigned)(seqs * a.segs)}, {128, 1, 1}, [&] { tk::lightning_walk16<T>(a); });
            if (a.seg_chunks)
                emu::launch({(unsigned)(dq * dv + 255) / 256, (unsigned)H, (unsigned)seqs}, {256, 1, 1},
                            [&] { tk::lightning_carry16(a); });
            if (chunks > 0)
                emu::launch({(unsigned)chunks, (unsigned)H, 1}, {128, 1, 1}, [&] { tk::lightning_outputs16<T>(a); });
        }
    }

    // the f64 recurrence, with magnitudes (the same sums of absolute values)
    const double uio = unit_roundoff<T>();
    double worst = 0.0;
    auto check = [&](double got, double want, double mag, const char *what, int s, int h, long long i) {
        const double r = std::fabs(got - want) / (8.0 * uio * mag + 1e-30);
        if (!(r <= worst)) worst = std::isnan(r) ? INFINITY : std::max(worst, r);
        if (!(r <= 1.0) && worst == r)
            std::printf("    %s: seq %d head %d index %lld: got %.6g want %.6g (mag %.3g)\n", what, s, h, i, got, want, mag);
    };
    for (int s = 0; s < seqs; s++)
        for (int h = 0; h < H; h++) {
            const int len = cs.lens[s];
            const double lam = decay[h];
            std::vector<double> S((size_t)dq * dv, 0.0), M((size_t)dq * dv, 0.0);
            if (cs.s0)
                for (int c = 0; c < dq; c++)
                    for (int e = 0; e < dv; e++) {
                        const size_t si = ((size_t)s * H + h) * dq * dv;
                        double x = cs.s0_transposed ? s0[si + (size_t)e * dq + c] : s0[si + (size_t)c * dv + e];
                        if (cs.s0_over_decay) x *= (double)(float)(1.0 / lam);
                        S[c * dv + e] = x;
                        M[c * dv + e] = std::fabs(x);
                    }
            const long long base = cs.packed ? off[s] : (long long)s * n;
            for (int t = 0; t < len; t++) {
                const long long tt = base + (cs.reverse ? len - 1 - t : t);
                const T *kt = &k[(tt * H + h) * dq], *qt = &q[(tt * H + h) * dq];
                const T *vt = &v[(tt * H + h) * dv];
                for (int c = 0; c < dq; c++)
                    for (int e = 0; e < dv; e++) {
                        const double kv = (double)tk::Io<T>::load(kt[c]) * tk::Io<T>::load(vt[e]);
                        S[c * dv + e] = lam * S[c * dv + e] + kv;
                        M[c * dv + e] = lam * M[c * dv + e] + std::fabs(kv);
                    }
                for (int e = 0; e < dv; e++) {
                    double want = 0.0, mag = 0.0;
                    for (int c = 0; c < dq; c++) {
                        const double qc = tk::Io<T>::load(qt[c]);
                        want += qc * S[c * dv + e];
                        mag += std::fabs(qc) * M[c * dv + e];
                    }
                    const double got = tk::Io<T>::load(o[(tt * H + h) * dv + e]);
                    check(got, want, mag + std::fabs(want), "o", s, h, tt * dv + e);
                }
            }
            if (cs.s_out) {
                const double f = cs.s_out_times_decay ? (double)decay[h] : 1.0;
                for (size_t i = 0; i < S.size(); i++)
                    check(s_out[((size_t)s * H + h) * dq * dv + i], S[i] * f, M[i] * f, "s_out", s, h, (long long)i);
            }
        }
    return worst;
}

// Decoding: `steps` tokens one call each, against the f64 recurrence
// S <- decay S + k^T v, o = q S per (sequence, head) row.
template <typename T> double decode_case(int rows, int heads, int dk, int dv, int steps, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> state((size_t)rows * dk * dv);
    for (auto &e : state) e = u(rng);
    std::vector<double> S(state.begin(), state.end()), M(S.size());
    for (size_t i = 0; i < S.size(); i++) M[i] = std::fabs(S[i]);
    tk::LtDecodeArgs a{};
    a.count = rows, a.heads = heads, a.dk = dk, a.dv = dv, a.state = state.data();
    const float decays[] = {0.9f, 1.0f, 0.5f};
    for (int h = 0; h < heads; h++) a.decay[h] = decays[h % 3];
    const double uio = unit_roundoff<T>() + std::ldexp(1.0, -24);
    double worst = 0.0;
    for (int step = 0; step < steps; step++) {
        std::vector<T> q((size_t)rows * dk), k(q.size()), v((size_t)rows * dv), o(v.size());
        for (auto *x : {&q, &k})
            for (auto &e : *x) e = tk::Io<T>::store(u(rng));
        for (auto &e : v) e = tk::Io<T>::store(u(rng));
        a.q = q.data(), a.k = k.data(), a.v = v.data(), a.o = o.data();
        emu::launch({(unsigned)rows, 1, 1}, {256, 1, 1}, [&] { tk::lightning_decode<T>(a); });
        for (int r = 0; r < rows; r++) {
            const double lam = a.decay[r % heads];
            for (int e = 0; e < dv; e++) {
                double want = 0.0, mag = 0.0;
                for (int c = 0; c < dk; c++) {
                    const size_t i = ((size_t)r * dk + c) * dv + e;
                    const double kv = (double)tk::Io<T>::load(k[(size_t)r * dk + c]) * tk::Io<T>::load(v[(size_t)r * dv + e]);
                    S[i] = lam * S[i] + kv;
                    M[i] = lam * M[i] + std::fabs(kv);
                    const double qc = tk::Io<T>::load(q[(size_t)r * dk + c]);
                    want += qc * S[i];
                    mag += std::fabs(qc) * M[i];
                }
                const double got = tk::Io<T>::load(o[(size_t)r * dv + e]);
                worst = std::max(worst, std::fabs(got - want) / (8.0 * uio * (mag + std::fabs(want)) + 1e-30));
            }
        }
    }
    for (size_t i = 0; i < S.size(); i++)
        worst = std::max(worst, std::fabs(state[i] - S[i]) / (8.0 * std::ldexp(1.0, -24) * (steps + 1) * M[i] + 1e-30));
    return worst;
}

} // namespace

int main() {
    const std::vector<Case> cases = {
        {"batch 2 x 150, d 64, states in and out", {150, 150}, false, 2, 64, 64, true, true, false, false, false, false},
        {"d 128 x 128 (2 x 2 tiles), 130 tokens", {130}, false, 1, 128, 128, false, true, false, false, false, false},
        {"dq 20, dv 36 (element-wise loads)", {70}, false, 2, 20, 36, true, true, false, false, false, false},
        {"dq 72, dv 40 (a part tile)", {65}, false, 1, 72, 40, true, false, false, false, false, false},
        {"dq 40, dv 136 (three value slices, the last 8 wide)", {100}, false, 2, 40, 136, true, true, false, false, false, false},
        {"packed 65 + 3 + 0 + 64, reversed, backward's state options", {65, 3, 0, 64}, true, 2, 32, 64, true, true, true,
         true, true, true},
        {"packed 300 + 1 + 200, reversed, backward's state options", {300, 1, 200}, true, 2, 32, 64, true, true, true,
         true, true, true},
        {"one token", {1}, false, 1, 16, 16, true, true, false, false, false, false},
        {"5 chunks (the walk's two register sets, odd count)", {300}, false, 2, 32, 32, true, true, false, false, false,
         false},
        // segments of 2: chunks 3 and 5 add their carry decayed over 64 tokens, on heads of every decay
        {"4 heads (decays 1, 0.999, 0.9, 0.5), 330 tokens", {330}, false, 4, 32, 64, false, true, false, false, false,
         false},
        {"4 heads, dq 20 (element-wise carry), 330 tokens", {330}, false, 4, 20, 36, false, true, false, false, false,
         false},
    };
    int failed = 0;
    unsigned seed = 1;
    auto report = [&](const char *path, const char *dt, const Case &c, double worst) {
        const bool ok = worst <= 1.0;
        failed += !ok;
        std::printf("%-4s %-10s %-5s %-62s worst error %.3f of the bound\n", ok ? "ok" : "FAIL", path, dt, c.name.c_str(),
                    worst);
        std::fflush(stdout);
    };
    for (const Case &c : cases) {
        report("sequential", "f32", c, run_case<float>(c, Path::Sequential, seed++));
        report("sequential", "bf16", c, run_case<__nv_bfloat16>(c, Path::Sequential, seed++));
        report("chunked", "f32", c, run_case<float>(c, Path::Chunked, seed++));
        report("walk16", "bf16", c, run_case<__nv_bfloat16>(c, Path::Walk16, seed++));
        report("walk16", "f16", c, run_case<__half>(c, Path::Walk16, seed++));
        report("segments", "bf16", c, run_case<__nv_bfloat16>(c, Path::Segments, seed++));
        report("segments", "f16", c, run_case<__half>(c, Path::Segments, seed++));
    }
    const Case dec = {"decode: 6 rows of 3 heads, dk 20, dv 72, 5 steps", {}, false, 0, 0, 0};
    report("decode", "f32", dec, decode_case<float>(6, 3, 20, 72, 5, seed++));
    report("decode", "bf16", dec, decode_case<__nv_bfloat16>(6, 3, 20, 72, 5, seed++));
    report("decode", "f16", dec, decode_case<__half>(6, 3, 20, 72, 5, seed++));
    std::printf("%s\n", failed ? "FAILED" : "all passed");
    return failed ? 1 : 0;
}
