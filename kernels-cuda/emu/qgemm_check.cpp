// Runs the LLM.int8() kernels of qgemm.cu and qgemm_wgmma.cu on the CPU
// stand-in (emu.h, emu_sm90.h): the
// activation side (column max, ordered outlier selection, quantization with
// the outlier gather, W's outlier rows) bit for bit against the CPU's
// formulas, and the GEMM (cp.async ring, swizzled ldmatrix, mma.sync
// m16n8k32 s8; and the Hopper kernel's TMA ring and wgmma, which must give
// the same bits): the int32 product bit
// for bit against an exact reference, then the fused epilogue (scales, the
// outlier product, bias; f32 / f16 / bf16 y) against f64 within a loose
// bound, with padding in m, n and several k tiles through the ring. Exits
// non-zero on any miss (tests/cuda_emu.rs).
#include "emu.h"
#include "emu_sm90.h"

#include "../qgemm.cu"
#include "../qgemm_wgmma.cu"

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

    // The Hopper kernel on the same arguments: the same int32 products and
    // the same y, bit for bit (the same epilogue arithmetic in the same order).
    std::vector<int> acc_h((size_t)m * n, 0x55555555);
    std::vector<unsigned char> y_h((size_t)m * n * 4, 0xAB);
    tk::WgmmaArgs h{};
    h.a_map = emu::tma_map_2d(a.data(), k_pad, m_pad, k_pad, tk::WG_BK, tk::WG_BM);
    h.w_map = emu::tma_map_2d(w.data(), k_pad, n_pad, k_pad, tk::WG_BK, tk::WG_BN);
    h.g = g;
    h.g.acc = acc_h.data();
    const EmuDim3 grid_h = {(unsigned)(n_pad + tk::WG_BN - 1) / tk::WG_BN, (unsigned)m_pad / tk::WG_BM, 1};
    emu::launch(grid_h, {tk::WG_THREADS, 1, 1}, [&] { tk::qgemm_s8_wgmma(h); });
    h.g.acc = nullptr;
    h.g.y = y_h.data();
    emu::launch(grid_h, {tk::WG_THREADS, 1, 1}, [&] { tk::qgemm_s8_wgmma(h); });
    const size_t y_bytes = (size_t)m * n * (y_dtype == 0 ? 4 : 2);
    const int wgmma_acc_diff = acc_h != acc;
    const int wgmma_y_diff = std::memcmp(y_h.data(), g.y, y_bytes) != 0;
    if (wgmma_acc_diff || wgmma_y_diff)
        std::printf("    wgmma kernel: int32 products %s, y %s the mma.sync kernel's\n",
                    wgmma_acc_diff ? "differ from" : "equal", wgmma_y_diff ? "differs from" : "equals");

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
    misses += wgmma_acc_diff + wgmma_y_diff;
    failures += misses != 0;
    std::printf("%-4s qgemm_s8 (mma.sync, wgmma) m %d n %d k %d, %d outliers, y %s\n", misses ? "FAIL" : "ok", m, n, k, outliers,
                y_dtype == 0 ? "f32" : y_dtype == 1 ? "f16" : "bf16");
    std::fflush(stdout);
}

// The activation side: column max, the ordered outlier selection, the
// per-row quantization with the outlier gather, and W's outlier rows, all bit
// for bit against the CPU's formulas. x holds a few columns at or over the
// threshold, an inf, and a zero row.
template <typename T> void activation_case(const char *dt, int m, int k, int n, int cap, bool x_offset = false) {
    const float threshold = 6.0f;
    const int m_pad = (m + 127) / 128 * 128, k_pad = (k + 63) / 64 * 64, n_pad = (n + 127) / 128 * 128;
    std::mt19937 rng(m + k + n + cap);
    std::uniform_real_distribution<float> u(-3.0f, 3.0f);
    // x_offset: x one element past a 16-byte boundary (the element-wise paths)
    std::vector<T> x_buf((size_t)m * k + 1), wt((size_t)k * n);
    T *x = x_buf.data() + (x_offset ? 1 : 0);
    for (size_t i = 0; i < (size_t)m * k; i++) x[i] = tk::Io<T>::store(u(rng));
    for (auto &e : wt) e = tk::Io<T>::store(u(rng));
    const int hot[] = {3, k / 2, k - 1};
    for (int c : hot) x[(size_t)(c % m) * k + c] = tk::Io<T>::store(c % 2 ? -7.5f : 6.0f); // at the threshold
    x[(size_t)1 * k + 5] = tk::Io<T>::store(INFINITY); // an inf makes its column an outlier
    for (int c = 0; c < k; c++)
        if (m > 2) x[(size_t)2 * k + c] = tk::Io<T>::store(0.0f); // row 2: zero (its outliers too)

    std::vector<unsigned> colmax(k, 0), cols(cap, 0xffffffffu), count(1, 0);
    std::vector<unsigned char> mask(k, 9);
    std::vector<signed char> q((size_t)m_pad * k_pad, 9);
    std::vector<float> scale(m_pad, -1.0f), xo((size_t)m_pad * cap, -1.0f), wo((size_t)cap * n_pad, -1.0f);
    const int rows_per_block = 11; // more rows than a block has warps
    const unsigned col_blocks = (k + 32 * tk::Io<T>::VEC - 1) / (32 * tk::Io<T>::VEC);
    emu::launch({col_blocks, (unsigned)(m + rows_per_block - 1) / rows_per_block, 1}, {32 * tk::COLMAX_WARPS, 1, 1},
                [&] { tk::qgemm_colmax<T>(x, m, k, rows_per_block, colmax.data()); });
    emu::launch({1, 1, 1}, {1024, 1, 1}, [&] {
        tk::qgemm_select(colmax.data(), k, threshold, cap, cols.data(), count.data(), mask.data());
    });
    tk::QuantArgs qa{x, mask.data(), cols.data(), count.data(), q.data(), scale.data(), xo.data(), m, k, k_pad, cap};
    emu::launch({(unsigned)m_pad, 1, 1}, {tk::QUANT_THREADS, 1, 1}, [&] { tk::qgemm_quantize<T>(qa); });
    emu::launch({(unsigned)(n + 255) / 256, (unsigned)cap, 1}, {256, 1, 1}, [&] {
        tk::qgemm_gather_wo<T>(wt.data(), cols.data(), count.data(), cap, n, n_pad, wo.data());
    });

    int misses = 0;
    auto miss = [&](const char *what, int i, int j, double got, double want) {
        if (misses++ < 4) std::printf("    %s (%d, %d): got %.9g want %.9g\n", what, i, j, got, want);
    };
    std::vector<int> want_cols;
    for (int c = 0; c < k; c++) {
        float mx = 0.0f;
        for (int i = 0; i < m; i++) mx = std::max(mx, std::fabs(tk::Io<T>::load(x[(size_t)i * k + c])));
        const bool out = !(mx < threshold);
        if (out) want_cols.push_back(c);
        if (mask[c] != out) miss("mask", -1, c, mask[c], out);
    }
    if (count[0] != want_cols.size()) miss("count", -1, -1, count[0], (double)want_cols.size());
    const int n_out = std::min((int)want_cols.size(), cap);
    for (int o = 0; o < n_out; o++)
        if ((int)cols[o] != want_cols[o]) miss("cols", o, -1, cols[o], want_cols[o]);
    for (int i = 0; i < m_pad; i++) {
        float amax = 0.0f;
        bool bad = false;
        for (int c = 0; i < m && c < k; c++) {
            if (mask[c]) continue;
            const float v = std::fabs(tk::Io<T>::load(x[(size_t)i * k + c]));
            bad |= !(v <= 3.402823466e38f);
            amax = std::max(amax, v);
        }
        const bool zero = i >= m || bad || amax == 0.0f;
        const float want_scale = i >= m ? 0.0f : bad ? NAN : amax == 0.0f ? 0.0f : amax / 127.0f;
        if (!(scale[i] == want_scale || (std::isnan(scale[i]) && std::isnan(want_scale))))
            miss("scale", i, -1, scale[i], want_scale);
        const float inv = zero ? 0.0f : 127.0f / amax;
        for (int c = 0; c < k_pad; c++) {
            int v = 0;
            if (!zero && c < k && !mask[c])
                v = (int)std::nearbyint(std::min(std::max(tk::Io<T>::load(x[(size_t)i * k + c]) * inv, -127.0f), 127.0f));
            if (q[(size_t)i * k_pad + c] != v) miss("q", i, c, q[(size_t)i * k_pad + c], v);
        }
        for (int o = 0; o < n_out; o++) {
            const float want = i < m ? tk::Io<T>::load(x[(size_t)i * k + want_cols[o]]) : 0.0f;
            if (xo[(size_t)i * cap + o] != want) miss("xo", i, o, xo[(size_t)i * cap + o], want);
        }
    }
    for (int o = 0; o < n_out; o++)
        for (int j = 0; j < n; j++) {
            const float want = tk::Io<T>::load(wt[(size_t)want_cols[o] * n + j]);
            if (wo[(size_t)o * n_pad + j] != want) miss("wo", o, j, wo[(size_t)o * n_pad + j], want);
        }
    failures += misses != 0;
    std::printf("%-4s activation %-5s m %d k %d n %d cap %d (%zu outlier columns)%s\n", misses ? "FAIL" : "ok", dt, m, k,
                n, cap, want_cols.size(), x_offset ? ", x unaligned" : "");
    std::fflush(stdout);
}

} // namespace

int main() {
    activation_case<float>("f32", 5, 1500, 40, 8);
    activation_case<__half>("f16", 4, 300, 20, 2); // more outlier columns than capacity
    activation_case<__nv_bfloat16>("bf16", 3, 2100, 10, 4);
    // 128-bit paths: k a multiple of 8, rows past one colmax block's rows
    activation_case<__half>("f16", 20, 2112, 16, 8);
    activation_case<__nv_bfloat16>("bf16", 9, 1000, 12, 4);
    activation_case<float>("f32", 7, 1500, 8, 8, true); // and element-wise again
    gemm_case(128, 128, 64, 0, 0);   // one tile, one k step
    gemm_case(130, 200, 320, 3, 0);  // padded m and n, five k tiles through the four-stage ring
    gemm_case(40, 136, 100, 8, 1);   // k not a multiple of 64, a full outlier chunk, f16 y
    gemm_case(7, 33, 200, 1, 2);     // bf16 y
    gemm_case(131, 300, 1100, 5, 1); // wgmma: 9 k tiles (each ring stage reused), n past a 256 tile
    std::printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
