// Runs the Kronecker kernels (kron_tc.cu on the tensor cores, kron.cu's SIMT
// kernel) on the CPU stand-in (emu.h) and checks them against the f64 product
// with the dense P1 kron P2: y within the CUDA bound (the CPU bound, plus 4
// u_io of the magnitude on the tensor cores), the int8 and int4 values within half a step plus that bound
// of the reference quantization, the scales, zero and non-finite tokens.
// Shapes cover padding to 16, a Hadamard factor on either side, smoothing,
// two items a warp, the grid-stride loop with prefetch, and an unaligned x.
// Exits non-zero on any miss (tests/cuda_emu.rs).
#include "emu.h"

#include "../kron_tc.cu"

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>


namespace {

struct Case {
    std::string name;
    int n1, n2;
    bool h1, h2, smooth;
    int tokens, grid, threads;
    int x_offset; // elements: 1 makes x unaligned
};

template <typename T> double unit_roundoff();
template <> double unit_roundoff<float>() { return 0.0; } // f32 output: no rounding to count
template <> double unit_roundoff<__half>() { return std::ldexp(1.0, -11); }
template <> double unit_roundoff<__nv_bfloat16>() { return std::ldexp(1.0, -8); }

double hadamard(int i, int j) { return __builtin_popcount(i & j) & 1 ? -1.0 : 1.0; }

// The SIMT kernel of kron.cu for this dtype (f32 tokens, and the shapes
// kron_tc.cu does not take).
template <typename T> void simt(tk::KronArgs a);
template <> void simt<float>(tk::KronArgs a) { tk_kron_f32_cuda(a); }
template <> void simt<__half>(tk::KronArgs a) { tk_kron_f16_cuda(a); }
template <> void simt<__nv_bfloat16>(tk::KronArgs a) { tk_kron_bf16_cuda(a); }

// tc: the tensor-core kernel (else the SIMT one, 256 threads).
template <typename T> int run_case(const Case &cs, unsigned seed, bool tc) {
    const int n1 = cs.n1, n2 = cs.n2, n = n1 * n2, tokens = cs.tokens;
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> left(cs.h1 ? 0 : n1 * n1), right(cs.h2 ? 0 : n2 * n2), smooth(cs.smooth ? n : 0);
    for (auto &e : left) e = u(rng) / std::sqrt((float)n1);
    for (auto &e : right) e = u(rng) / std::sqrt((float)n2);
    for (auto &e : smooth) e = 1.0f + 0.5f * u(rng);
    double out_scale = 1.0;
    if (cs.h1) out_scale /= std::sqrt((double)n1);
    if (cs.h2) out_scale /= std::sqrt((double)n2);
    std::vector<T> xbuf(cs.x_offset + (size_t)tokens * n);
    T *x = xbuf.data() + cs.x_offset;
    for (int i = 0; i < tokens * n; i++) x[i] = tk::Io<T>::store(2.0f * u(rng));
    for (int i = 0; i < n; i++) x[1 * n + i] = tk::Io<T>::store(0.0f); // token 1: all zero
    x[2 * n + n / 3] = tk::Io<T>::store(NAN);                           // token 2: not finite

    std::vector<T> y((size_t)tokens * n, tk::Io<T>::store(-7.0f));
    const int rb = (n + 1) / 2;
    std::vector<signed char> q8((size_t)tokens * n, 0x55);
    std::vector<unsigned char> q4((size_t)tokens * rb, 0x55);
    std::vector<float> s8(tokens, -1.0f), s4(tokens, -1.0f);
    const float clip = 0.9f;
    tk::KronArgs a{};
    a.x = x, a.smooth = cs.smooth ? smooth.data() : nullptr;
    a.left = cs.h1 ? nullptr : left.data(), a.right = cs.h2 ? nullptr : right.data();
    a.tokens = tokens, a.n1 = n1, a.n2 = n2, a.out_scale = (float)out_scale, a.clip = clip;
    auto launch = [&] {
        if constexpr (sizeof(T) == 2) {
            if (tc) {
                emu::launch({(unsigned)cs.grid, 1, 1}, {(unsigned)cs.threads, 1, 1}, [&] { tk::kron_tc<T>(a); });
                return;
            }
        }
        emu::launch({(unsigned)cs.grid, 1, 1}, {tk::KRON_THREADS, 1, 1}, [&] { simt<T>(a); });
    };
    a.y = y.data(), a.q = q8.data(), a.q_scale = s8.data(), a.q_stride = n, a.q_bits = 8;
    launch();
    a.y = nullptr, a.q = q4.data(), a.q_scale = s4.data(), a.q_stride = rb, a.q_bits = 4;
    launch();

    const double uio = unit_roundoff<T>(), u32 = std::ldexp(1.0, -24);
    const double depth = (cs.h1 ? std::log2(n1) : n1) + (cs.h2 ? std::log2(n2) : n2) + 3.0;
    int misses = 0;
    auto miss = [&](int t, int j, const char *what, double got, double want, double tol) {
        if (misses++ < 5)
            std::printf("    token %d element %d: %s %.6g want %.6g (tolerance %.3g)\n", t, j, what, got, want, tol);
    };
    for (int t = 0; t < tokens; t++) {
        std::vector<double> xs(n), yr(n, 0.0), mag(n, 0.0);
        bool finite = true;
        for (int e = 0; e < n; e++) {
            xs[e] = (double)tk::Io<T>::load(x[(size_t)t * n + e]) * (cs.smooth ? smooth[e] : 1.0);
            finite &= std::isfinite(xs[e]);
        }
        // y = (P1^T X P2) * out_scale, with P1^T given row-major as `left`
        for (int r = 0; r < n1; r++)
            for (int c = 0; c < n2; c++) {
                double s = 0.0, m = 0.0;
                for (int i = 0; i < n1; i++) {
                    const double p1 = cs.h1 ? hadamard(r, i) : left[r * n1 + i];
                    for (int j = 0; j < n2; j++) {
                        const double p2 = cs.h2 ? hadamard(j, c) : right[j * n2 + c];
                        s += p1 * xs[i * n2 + j] * p2;
                        m += std::fabs(p1 * xs[i * n2 + j] * p2);
                    }
                }
                yr[r * n2 + c] = s * out_scale;
                mag[r * n2 + c] = m * out_scale;
            }
        if (!finite) {
            const bool ok = std::isnan(s8[t]) && std::isnan(s4[t]);
            bool zeros = true;
            for (int e = 0; e < n; e++) zeros &= q8[(size_t)t * n + e] == 0;
            for (int b = 0; b < rb; b++) zeros &= q4[(size_t)t * rb + b] == 0;
            if (!ok || !zeros) miss(t, -1, "non-finite token: scales NaN and q zero", s8[t], NAN, 0.0);
            continue;
        }
        double amax = 0.0, tmax = 0.0;
        std::vector<double> tol(n);
        for (int e = 0; e < n; e++) {
            tol[e] = depth * u32 * mag[e] + (tc ? 4.0 * uio * mag[e] : 0.0) + uio * std::fabs(yr[e]);
            amax = std::max(amax, std::fabs(yr[e]));
            tmax = std::max(tmax, tol[e]);
            const double got = tk::Io<T>::load(y[(size_t)t * n + e]);
            if (!(std::fabs(got - yr[e]) <= tol[e])) miss(t, e, "y", got, yr[e], tol[e]);
        }
        for (int bits : {8, 4}) {
            const double qmax = bits == 8 ? 127.0 : 7.0;
            const double sc = bits == 8 ? s8[t] : s4[t], sr = clip * amax / qmax;
            if (!(std::fabs(sc - sr) <= clip * tmax / qmax + 4.0 * 1.2e-7 * sr)) miss(t, -1, "scale", sc, sr, 0.0);
            for (int e = 0; e < n; e++) {
                int got;
                if (bits == 8) {
                    got = q8[(size_t)t * n + e];
                } else {
                    const int byte = q4[(size_t)t * rb + e / 2], nib = e % 2 ? byte >> 4 : byte & 15;
                    got = nib >= 8 ? nib - 16 : nib;
                }
                const double want = sc == 0.0 ? 0.0 : std::clamp(yr[e] / sc, -qmax, qmax);
                const double slack = 0.5 + (sc == 0.0 ? 0.0 : tol[e] / sc) + 1e-5 * qmax;
                if (!(std::fabs(got - want) <= slack)) miss(t, e, bits == 8 ? "int8" : "int4", got, want, slack);
            }
        }
    }
    return misses;
}

} // namespace

int main() {
    const std::vector<Case> cases = {
        {"64 x 64 dense, 4 warps, grid 2 of 5 tokens", 64, 64, false, false, false, 5, 2, 128, 0},
        {"Hadamard 16 x Hadamard 16", 16, 16, true, true, false, 4, 3, 128, 0},
        {"dense 12 (padded to 16) x Hadamard 16, smoothed", 12, 16, false, true, true, 4, 2, 128, 0},
        {"Hadamard 32 x dense 24 (padded to 32)", 32, 24, true, false, false, 4, 1, 64, 0},
        {"dense 40 x dense 136: 9 items, 2 a warp on 8 warps", 40, 136, false, false, false, 3, 2, 256, 0},
        {"dense 20 x dense 8, x not 16-byte aligned", 20, 8, false, false, true, 4, 2, 64, 1},
    };
    int failed = 0;
    unsigned seed = 7;
    auto report = [&](const char *kernel, const char *dt, const Case &c, int misses) {
        failed += misses != 0;
        std::printf("%-4s %-7s %-5s %-55s %d misses\n", misses ? "FAIL" : "ok", kernel, dt, c.name.c_str(), misses);
        std::fflush(stdout);
    };
    for (const Case &c : cases) {
        report("kron_tc", "bf16", c, run_case<__nv_bfloat16>(c, seed++, true));
        report("kron_tc", "f16", c, run_case<__half>(c, seed++, true));
    }
    // the SIMT kernel: dense products 4 x 4 and 2 x 4 a thread and one at a
    // time, Hadamard stages along and across the rows
    const std::vector<Case> simt_cases = {
        {"dense 5 x dense 7 (one output at a time)", 5, 7, false, false, false, 3, 2, 0, 0},
        {"dense 6 x dense 20 (2 x 4 a thread)", 6, 20, false, false, true, 3, 2, 0, 0},
        {"dense 8 x dense 8 (4 x 4 a thread)", 8, 8, false, false, false, 3, 1, 0, 0},
        {"Hadamard 8 x dense 13", 8, 13, true, false, false, 3, 2, 0, 0},
        {"dense 12 x Hadamard 16, smoothed", 12, 16, false, true, true, 3, 2, 0, 0},
        {"Hadamard 16 x Hadamard 32", 16, 32, true, true, false, 3, 2, 0, 0},
    };
    for (const Case &c : simt_cases) {
        report("simt", "f32", c, run_case<float>(c, seed++, false));
        report("simt", "bf16", c, run_case<__nv_bfloat16>(c, seed++, false));
        report("simt", "f16", c, run_case<__half>(c, seed++, false));
    }
    std::printf("%s\n", failed ? "FAILED" : "all passed");
    return failed ? 1 : 0;
}
