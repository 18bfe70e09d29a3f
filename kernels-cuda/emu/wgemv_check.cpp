// Runs the weight-only GEMV kernels (wgemv.cu) on the CPU stand-in (emu.h):
// int8 and int4 weights, every row-count instance, groups 32-128, channels
// not a multiple of the block's, aligned and unaligned x, bias, f32 / f16 /
// bf16, against f64 with the dequantized weights w = fl(s q). Exits non-zero
// on any miss (tests/cuda_emu.rs).
#include "emu.h"

#include "../wgemv.cu"

#include <cstdio>
#include <random>

namespace {

int failures = 0;

template <typename T> double unit_roundoff();
template <> double unit_roundoff<float>() { return std::ldexp(1.0, -24); }
template <> double unit_roundoff<__half>() { return std::ldexp(1.0, -11); }
template <> double unit_roundoff<__nv_bfloat16>() { return std::ldexp(1.0, -8); }

template <typename T, int BITS, int M> void gemv_case(const char *dt, int m, int n, int k, int group, bool offset) {
    std::mt19937 rng(m * 31 + n * 7 + k + group + BITS + offset);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::uniform_int_distribution<int> qd(BITS == 8 ? -127 : -8, BITS == 8 ? 127 : 7);
    const int o = offset ? 1 : 0, row_bytes = BITS == 8 ? k : k / 2, groups = k / group;
    std::vector<T> xbuf((size_t)m * k + o), y((size_t)m * n, tk::Io<T>::store(-9.0f));
    for (auto &e : xbuf) e = tk::Io<T>::store(u(rng));
    std::vector<int> q((size_t)n * k);
    for (auto &e : q) e = qd(rng);
    std::vector<unsigned char> w((size_t)n * row_bytes, 0);
    for (int j = 0; j < n; j++)
        for (int c = 0; c < k; c++) {
            const int v = q[(size_t)j * k + c];
            if (BITS == 8)
                w[(size_t)j * row_bytes + c] = (unsigned char)(signed char)v;
            else
                w[(size_t)j * row_bytes + c / 2] |= (unsigned char)((v & 15) << (4 * (c % 2)));
        }
    std::vector<float> scale((size_t)n * groups), bias(n);
    for (auto &e : scale) e = 0.05f * (1.0f + u(rng));
    for (auto &e : bias) e = u(rng);
    tk::WgemvArgs a{xbuf.data() + o, w.data(), scale.data(), bias.data(), y.data(), m, n, k, group, !offset};
    constexpr int CH = tk::WgemvTile<M>::CH;
    emu::launch({(unsigned)(n + CH - 1) / CH, 1, 1}, {tk::WG_THREADS, 1, 1}, [&] { tk::wgemv<T, BITS, M>(a); });

    int misses = 0;
    for (int r = 0; r < m; r++)
        for (int j = 0; j < n; j++) {
            double want = bias[j], mag = std::fabs(bias[j]);
            for (int c = 0; c < k; c++) {
                const float wd = scale[(size_t)j * groups + c / group] * (float)q[(size_t)j * k + c];
                const double t = (double)tk::Io<T>::load(xbuf[o + (size_t)r * k + c]) * wd;
                want += t;
                mag += std::fabs(t);
            }
            const double got = tk::Io<T>::load(y[(size_t)r * n + j]);
            const double tol = unit_roundoff<T>() * std::fabs(want) + std::ldexp(1.0, -18) * mag;
            if (!(std::fabs(got - want) <= tol) && misses++ < 4)
                std::printf("    (%d, %d): got %.7g want %.7g\n", r, j, got, want);
        }
    failures += misses != 0;
    std::printf("%-4s wgemv %-5s int%d M %2d: m %2d n %d k %d group %d%s\n", misses ? "FAIL" : "ok", dt, BITS, M, m, n,
                k, group, offset ? " unaligned x" : "");
    std::fflush(stdout);
}

template <typename T, int BITS> void rows(const char *dt) {
    gemv_case<T, BITS, 1>(dt, 1, 7, 256, 64, false);
    gemv_case<T, BITS, 2>(dt, 2, 9, 128, 32, true);
    gemv_case<T, BITS, 4>(dt, 3, 6, 512, 128, false);
    gemv_case<T, BITS, 8>(dt, 8, 5, 256, 128, true);
    gemv_case<T, BITS, 16>(dt, 13, 3, 128, 64, false);
    // long rows: every warp's threads hold pieces (some two)
    gemv_case<T, BITS, 1>(dt, 1, 5, 4096 + 1024, 128, false);
    gemv_case<T, BITS, 4>(dt, 4, 3, 4096, 64, true);
}

} // namespace

int main() {
    rows<float, 8>("f32");
    rows<float, 4>("f32");
    rows<__half, 8>("f16");
    rows<__half, 4>("f16");
    rows<__nv_bfloat16, 8>("bf16");
    rows<__nv_bfloat16, 4>("bf16");
    std::printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
