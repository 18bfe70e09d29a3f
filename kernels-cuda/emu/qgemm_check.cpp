// Runs the LLM.int8() GEMM of qgemm.cu (cp.async ring, swizzled ldmatrix,
// mma.sync m16n8k32 s8) on the CPU stand-in (emu.h): the int32 product bit
// for bit against an exact reference, then the fused epilogue (scales, the
// outlier product, bias; f32 / f16 / bf16 y) against f64 within a loose
// bound, with padding in m, n and several k tiles through the ring. Exits
// non-zero on any miss (tests/cuda_emu.rs).
#include "emu.h"

#include "../qgemm.cu"

#include <cstdio>
#include <random>

namespace {

int failures = 0;

void gemm_case(int m, int n, int k, int outliers, int y_dtype) {
    const int m_pad = (m + 127) / 128 * 128, n_pad = (n + 127) / 128 * 128, k_pad = (k + 63) / 64 * 64, cap = 8;
    std::mt19937 rng(m * 7 + n * 3 + k + outliers + y_dtype);
    std::uniform_int_distribution<int> q(-127, 127);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<signed char> a((size_t)m_pad * k_pad, 0), w((size_t)n_pad * k_pad, 0);
    for (int i = 0; i < m; i++)
        for (int c = 0; c < k; c++) a[(size_t)i * k_pad + c] = (signed char)q(rng);
    for (int j = 0; j < n; j++)
        for (int c = 0; c < k; c++) w[(size_t)j * k_pad + c] = (signed char)q(rng);
    std::vector<float> sa(m_pad, 0.0f), sw(n_pad, 0.0f), xo((size_t)m_pad * cap, 0.0f), wo((size_t)cap * n_pad, 0.0f),
        bias(n);
    for (int i = 0; i < m; i++) sa[i] = 0.01f * (1.0f + u(rng));
    for (int j = 0; j < n; j++) sw[j] = 0.01f * (1.0f + u(rng));
    for (int i = 0; i < m; i++)
        for (int o = 0; o < outliers; o++) xo[(size_t)i * cap + o] = 8.0f * u(rng);
    for (int o = 0; o < outliers; o++)
        for (int j = 0; j < n; j++) wo[(size_t)o * n_pad + j] = u(rng);
    for (auto &e : bias) e = u(rng);
    const unsigned count = outliers;
    std::vector<int> acc((size_t)m * n, 0x55555555);
    std::vector<float> y32((size_t)m * n, NAN);
    std::vector<__half> y16((size_t)m * n);
    std::vector<__nv_bfloat16> yb((size_t)m * n);
    tk::GemmArgs g{};
    g.a = a.data(), g.w = w.data(), g.a_scale = sa.data(), g.w_scale = sw.data(), g.xo = xo.data(), g.wo = wo.data();
    g.count = &count, g.bias = bias.data(), g.m = m, g.n = n, g.k_pad = k_pad, g.n_pad = n_pad, g.cap = cap;
    g.y_dtype = y_dtype;
    g.y = y_dtype == 0 ? (void *)y32.data() : y_dtype == 1 ? (void *)y16.data() : (void *)yb.data();
    const EmuDim3 grid = {(unsigned)n_pad / 128, (unsigned)m_pad / 128, 1};
    g.acc = acc.data();
    emu::launch(grid, {tk::GM_THREADS, 1, 1}, [&] { tk::qgemm_s8(g); });
    g.acc = nullptr;
    emu::launch(grid, {tk::GM_THREADS, 1, 1}, [&] { tk::qgemm_s8(g); });

    const double u_out = y_dtype == 0 ? std::ldexp(1.0, -24) : y_dtype == 1 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
    int misses = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            long long exact = 0;
            for (int c = 0; c < k; c++) exact += (int)a[(size_t)i * k_pad + c] * (int)w[(size_t)j * k_pad + c];
            const int got_acc = acc[(size_t)i * n + j];
            double want = (double)exact * sa[i] * sw[j] + bias[j], mag = std::fabs((double)exact * sa[i] * sw[j]);
            for (int o = 0; o < outliers; o++) {
                want += (double)xo[(size_t)i * cap + o] * wo[(size_t)o * n_pad + j];
                mag += std::fabs((double)xo[(size_t)i * cap + o] * wo[(size_t)o * n_pad + j]);
            }
            const double got = y_dtype == 0   ? y32[(size_t)i * n + j]
                               : y_dtype == 1 ? (double)__half2float(y16[(size_t)i * n + j])
                                              : (double)__bfloat162float(yb[(size_t)i * n + j]);
            const double tol = u_out * std::fabs(want) + 64.0 * std::ldexp(1.0, -24) * (mag + std::fabs(bias[j]));
            const bool ok = got_acc == exact && std::fabs(got - want) <= tol;
            if (!ok && misses++ < 4)
                std::printf("    (%d, %d): int32 %d want %lld, y %.7g want %.7g\n", i, j, got_acc, exact, got, want);
        }
    failures += misses != 0;
    std::printf("%-4s qgemm_s8 m %d n %d k %d, %d outliers, y %s\n", misses ? "FAIL" : "ok", m, n, k, outliers,
                y_dtype == 0 ? "f32" : y_dtype == 1 ? "f16" : "bf16");
    std::fflush(stdout);
}

} // namespace

int main() {
    gemm_case(128, 128, 64, 0, 0);   // one tile, one k step
    gemm_case(130, 200, 320, 3, 0);  // padded m and n, five k tiles through the four-stage ring
    gemm_case(40, 136, 100, 8, 1);   // k not a multiple of 64, a full outlier chunk, f16 y
    gemm_case(7, 33, 200, 1, 2);     // bf16 y
    std::printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
