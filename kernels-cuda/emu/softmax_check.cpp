// Runs every softmax kernel shape (softmax.cu) on the CPU stand-in (emu.h):
// full, short and unaligned rows, log-softmax, a temperature, -inf entries
// and a row with a NaN, f32 / f16 / bf16, against f64 references (loose
// bounds: this catches wrong indices, masks and reductions; the Rust tests on
// a GPU hold the tight ones). Exits non-zero on any miss (tests/cuda_emu.rs).
#include "emu.h"

#include "../softmax.cu"

#include <cstdio>
#include <random>
#include <string>

namespace {

template <typename T> using Kernel = void (*)(const T *, T *, tk::SoftmaxArgs);

template <typename T> struct Shape {
    const char *name;
    int group, items; // items 0: streaming
    Kernel<T> run;
};

template <typename T> double unit_roundoff();
template <> double unit_roundoff<float>() { return std::ldexp(1.0, -24); }
template <> double unit_roundoff<__half>() { return std::ldexp(1.0, -11); }
template <> double unit_roundoff<__nv_bfloat16>() { return std::ldexp(1.0, -8); }

int failures = 0;

template <typename T> void run(const Shape<T> &sh, const char *dt, int rows, int cols, bool log_out, bool offset) {
    std::mt19937 rng(cols * 3 + rows + log_out);
    std::uniform_real_distribution<float> u(-4.0f, 4.0f);
    const int o = offset ? 1 : 0;
    std::vector<T> x((size_t)rows * cols + o), y(x.size(), tk::Io<T>::store(-5.0f));
    for (auto &e : x) e = tk::Io<T>::store(u(rng));
    x[o + cols / 2] = tk::Io<T>::store(-INFINITY); // row 0: an entry of -inf
    if (rows > 2) x[o + 2 * cols + cols / 3] = tk::Io<T>::store(NAN); // row 2: NaN
    constexpr int V = tk::Io<T>::VEC;
    tk::SoftmaxArgs a{rows, cols, 0.7f, log_out, !offset && cols % V == 0};
    const unsigned grid = sh.group == 32 ? (rows + 3) / 4 : rows, block = sh.group == 32 ? 128 : sh.group;
    emu::launch({grid, 1, 1}, {block, 1, 1}, [&] { sh.run(x.data() + o, y.data() + o, a); });

    const double uio = unit_roundoff<T>(), loose = std::ldexp(1.0, -18);
    int misses = 0;
    for (int i = 0; i < rows; i++) {
        std::vector<double> z(cols);
        double m = -INFINITY, s = 0.0;
        bool nan = false;
        for (int j = 0; j < cols; j++) {
            z[j] = (double)(float)(tk::Io<T>::load(x[o + (size_t)i * cols + j]) * 0.7f);
            nan |= std::isnan(z[j]);
            m = std::max(m, z[j]);
        }
        for (int j = 0; j < cols; j++) s += std::exp(z[j] - m);
        for (int j = 0; j < cols; j++) {
            const double got = tk::Io<T>::load(y[o + (size_t)i * cols + j]);
            const double want = nan ? NAN : log_out ? z[j] - m - std::log(s) : std::exp(z[j] - m) / s;
            const double tol = uio * std::fabs(want) + loose * (log_out ? 1.0 + std::fabs(z[j] - m) : 1.0);
            const bool ok = nan ? std::isnan(got) : want == -INFINITY ? got == -INFINITY : std::fabs(got - want) <= tol;
            if (!ok && misses++ < 4) std::printf("    row %d col %d: got %.7g want %.7g\n", i, j, got, want);
        }
    }
    failures += misses != 0;
    std::printf("%-4s %-5s %-14s rows %d cols %5d%s%s\n", misses ? "FAIL" : "ok", dt, sh.name, rows, cols,
                log_out ? " log" : "", offset ? " unaligned" : "");
    std::fflush(stdout);
}

template <typename T> void all(const char *dt, const std::vector<Shape<T>> &shapes) {
    for (const auto &s : shapes) {
        const int full = s.items ? s.group * s.items : 5000;
        run<T>(s, dt, 3, full, false, false);
        run<T>(s, dt, 5, full / 3 + 1, true, false);
        run<T>(s, dt, 3, full - 5, false, true);
    }
}

#define SHAPES(dt)                                                                                                  \
    {{"rows32x8", 32, 8, tk_softmax_##dt##_cuda_rows32x8},       {"rows32x16", 32, 16, tk_softmax_##dt##_cuda_rows32x16}, \
     {"rows32x32", 32, 32, tk_softmax_##dt##_cuda_rows32x32},    {"rows256x8", 256, 8, tk_softmax_##dt##_cuda_rows256x8}, \
     {"rows256x16", 256, 16, tk_softmax_##dt##_cuda_rows256x16}, {"rows512x16", 512, 16, tk_softmax_##dt##_cuda_rows512x16}, \
     {"rows1024x16", 1024, 16, tk_softmax_##dt##_cuda_rows1024x16},                                               \
     {"rows1024x32", 1024, 32, tk_softmax_##dt##_cuda_rows1024x32},                                               \
     {"stream1024", 1024, 0, tk_softmax_##dt##_cuda_stream1024}}

} // namespace

int main() {
    all<float>("f32", SHAPES(f32));
    all<__half>("f16", SHAPES(f16));
    all<__nv_bfloat16>("bf16", SHAPES(bf16));
    std::printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
