// Runs the norm kernels (norm.cu) on the CPU stand-in (emu.h): every forward
// shape (warp and block rows in registers, whole-chunk and masked rows, the
// streaming block) and every backward kernel with the ordered reduction of
// the partials, for LayerNorm (gamma, beta) and RMSNorm (residual in, h and
// int8 out; CRMS), f32 / f16 / bf16, against f64 references. The bounds are
// loose next to the Rust tests' (those run on a GPU); what this catches is a
// wrong index, mask, barrier or reduction, which is off by O(1). Exits
// non-zero on any miss (tests/cuda_emu.rs).
#include "emu.h"

#include "../norm.cu"

#include <cstdio>
#include <functional>
#include <random>
#include <string>

namespace {

template <typename T> double unit_roundoff();
template <> double unit_roundoff<float>() { return std::ldexp(1.0, -24); }
template <> double unit_roundoff<__half>() { return std::ldexp(1.0, -11); }
template <> double unit_roundoff<__nv_bfloat16>() { return std::ldexp(1.0, -8); }

template <typename T> const char *name();
template <> const char *name<float>() { return "f32"; }
template <> const char *name<__half>() { return "f16"; }
template <> const char *name<__nv_bfloat16>() { return "bf16"; }

struct Shape {
    std::string name;
    int group, items; // threads per row and elements per thread; 0: streaming
    bool warp;        // 4 rows a block of 128
};

int failures = 0;

struct Tally {
    int misses = 0;
    void check(bool ok, const char *what, int row, int col, double got, double want, double tol) {
        if (!ok && misses++ < 4)
            std::printf("    %s row %d col %d: got %.7g want %.7g (tolerance %.3g)\n", what, row, col, got, want, tol);
    }
};

// kind 0: LayerNorm with gamma and beta; 1: RMSNorm with a residual, h and
// int8 out; 2: CRMSNorm. `offset` shifts every tensor by one element (rows not
// 16-byte aligned: the general path).
template <typename T> void forward(const Shape &sh, int rows, int cols, int kind, bool offset) {
    std::mt19937 rng(rows * 131 + cols * 7 + kind);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const int o = offset ? 1 : 0;
    const size_t len = (size_t)rows * cols + o;
    std::vector<T> x(len), r(len), h(len, tk::Io<T>::store(-9.0f)), y(len, tk::Io<T>::store(-9.0f));
    std::vector<int8_t> q(len, 55);
    std::vector<float> qs(rows, -1.0f), mean(rows, -1.0f), rstd(rows, -1.0f), gamma(cols), beta(cols);
    for (auto &e : x) e = tk::Io<T>::store(3.0f + u(rng)); // a mean well off zero
    for (auto &e : r) e = tk::Io<T>::store(u(rng));
    for (auto &e : gamma) e = 1.0f + 0.5f * u(rng);
    for (auto &e : beta) e = u(rng);
    tk::NormPtrs p{};
    tk::NormArgs a{};
    a.rows = rows, a.cols = cols, a.eps = 1e-5f, a.out_scale = kind == 0 ? 0.5f : 1.0f;
    a.kind = kind == 0 ? 0 : 1, a.crms = kind == 2, a.params_f32 = 1, a.aligned = !offset;
    if (std::is_same_v<T, float>) a.aligned = a.aligned && cols % 4 == 0;
    else a.aligned = a.aligned && cols % 8 == 0;
    p.x = x.data() + o, p.y = y.data() + o, p.mean = mean.data(), p.rstd = rstd.data(), p.gamma = gamma.data();
    if (kind == 0) p.beta = beta.data();
    if (kind == 1) p.residual = r.data() + o, p.h = h.data() + o, p.q = q.data() + o, p.q_scale = qs.data();
    if (sh.items == 0)
        emu::launch({(unsigned)rows, 1, 1}, {1024, 1, 1}, [&] { tk::norm_forward_stream<T, 1024>(p, a); });
    else if (sh.warp)
        emu::launch({(unsigned)(rows + 3) / 4, 1, 1}, {128, 1, 1}, [&] {
            if (sh.items == 8) tk::norm_forward_warp<T, 8, 4>(p, a);
            if (sh.items == 16) tk::norm_forward_warp<T, 16, 4>(p, a);
            if (sh.items == 32) tk::norm_forward_warp<T, 32, 4>(p, a);
            if (sh.items == 64) tk::norm_forward_warp<T, 64, 4>(p, a);
        });
    else
        emu::launch({(unsigned)rows, 1, 1}, {(unsigned)sh.group, 1, 1}, [&] {
            switch (sh.group * 100 + sh.items) {
            case 6416: tk::norm_forward_block<T, 64, 16>(p, a); break;
            case 12816: tk::norm_forward_block<T, 128, 16>(p, a); break;
            case 25616: tk::norm_forward_block<T, 256, 16>(p, a); break;
            case 51216: tk::norm_forward_block<T, 512, 16>(p, a); break;
            case 102416: tk::norm_forward_block<T, 1024, 16>(p, a); break;
            case 12808: tk::norm_forward_block<T, 128, 8>(p, a); break;
            case 25608: tk::norm_forward_block<T, 256, 8>(p, a); break;
            case 12832: tk::norm_forward_block<T, 128, 32>(p, a); break;
            }
        });

    const double uio = unit_roundoff<T>(), tight = std::ldexp(1.0, -16);
    Tally t;
    for (int i = 0; i < rows; i++) {
        std::vector<double> hv(cols);
        for (int j = 0; j < cols; j++) {
            const size_t e = (size_t)i * cols + j + o;
            double v = tk::Io<T>::load(x[e]);
            if (kind == 1) {
                const T ht = tk::Io<T>::store(tk::Io<T>::load(x[e]) + tk::Io<T>::load(r[e]));
                t.check(tk::Io<T>::load(h[e]) == tk::Io<T>::load(ht), "h", i, j, tk::Io<T>::load(h[e]),
                        tk::Io<T>::load(ht), 0);
                v = tk::Io<T>::load(ht);
            }
            hv[j] = v;
        }
        double mu = 0.0, ms = 0.0, s = 0.0;
        for (double v : hv) mu += v, s += v;
        mu /= cols;
        for (double v : hv) ms += kind == 0 ? (v - mu) * (v - mu) : v * v;
        if (kind == 2) ms += s * s;
        ms /= kind == 2 ? cols + 1 : cols;
        const double rs = 1.0 / std::sqrt(ms + 1e-5), center = kind == 0 ? mu : 0.0;
        t.check(std::fabs(rstd[i] - rs) <= tight * rs, "rstd", i, -1, rstd[i], rs, tight * rs);
        if (kind == 0) t.check(std::fabs(mean[i] - mu) <= tight * std::fabs(mu), "mean", i, -1, mean[i], mu, 0);
        double amax = 0.0;
        std::vector<double> yr(cols), tol(cols);
        for (int j = 0; j < cols; j++) {
            const double xh = (hv[j] - center) * rs;
            yr[j] = (xh * gamma[j] + (kind == 0 ? beta[j] : 0.0)) * a.out_scale;
            tol[j] = uio * std::fabs(yr[j]) + tight * (std::fabs(xh * gamma[j]) + 1.0);
            amax = std::max(amax, std::fabs(yr[j]));
            const double got = tk::Io<T>::load(y[(size_t)i * cols + j + o]);
            t.check(std::fabs(got - yr[j]) <= tol[j], "y", i, j, got, yr[j], tol[j]);
        }
        if (kind != 1) continue;
        t.check(std::fabs(qs[i] - amax / 127.0) <= tight * amax, "q scale", i, -1, qs[i], amax / 127.0, 0);
        for (int j = 0; j < cols; j++) {
            const double want = yr[j] / (amax / 127.0), got = q[(size_t)i * cols + j + o];
            t.check(std::fabs(got - want) <= 0.5 + 127.0 * tol[j] / amax + 1e-3, "q", i, j, got, want, 0);
        }
    }
    failures += t.misses != 0;
    std::printf("%-4s forward  %-5s %-22s rows %d cols %5d kind %d%s\n", t.misses ? "FAIL" : "ok", name<T>(),
                sh.name.c_str(), rows, cols, kind, offset ? " unaligned" : "");
    std::fflush(stdout);
}

// Backward of LayerNorm (kind 0) or RMSNorm with the residual gradient (kind
// 1), then the ordered reduction of the groups' partials.
template <typename T> void backward(const Shape &sh, int rows, int cols, int groups, int kind) {
    std::mt19937 rng(rows * 17 + cols + kind);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const size_t len = (size_t)rows * cols;
    std::vector<T> dy(len), h(len), dh(len), dx(len, tk::Io<T>::store(-9.0f));
    std::vector<float> gamma(cols), mean(rows), rstd(rows), partial((size_t)2 * groups * cols, NAN);
    std::vector<float> dgamma(cols, NAN), dbeta(cols, NAN);
    for (auto &e : dy) e = tk::Io<T>::store(u(rng));
    for (auto &e : h) e = tk::Io<T>::store(2.0f + u(rng));
    for (auto &e : dh) e = tk::Io<T>::store(u(rng));
    for (auto &e : gamma) e = 1.0f + 0.5f * u(rng);
    std::vector<double> mu(rows), rs(rows);
    for (int i = 0; i < rows; i++) {
        double m = 0.0, v = 0.0;
        for (int j = 0; j < cols; j++) m += tk::Io<T>::load(h[(size_t)i * cols + j]);
        m /= cols;
        for (int j = 0; j < cols; j++) {
            const double d = tk::Io<T>::load(h[(size_t)i * cols + j]) - (kind == 0 ? m : 0.0);
            v += d * d;
        }
        mu[i] = kind == 0 ? (double)(float)m : 0.0;
        rs[i] = (double)(float)(1.0 / std::sqrt(v / cols + 1e-5));
        mean[i] = (float)mu[i], rstd[i] = (float)rs[i];
    }
    tk::NormBwdPtrs p{};
    tk::NormBwdArgs a{};
    a.rows = rows, a.cols = cols, a.out_scale = 0.75f, a.kind = kind == 0 ? 0 : 1, a.params_f32 = 1;
    a.groups = groups, a.aligned = cols % tk::Io<T>::VEC == 0;
    p.dy = dy.data(), p.h = h.data(), p.dx = dx.data(), p.gamma = gamma.data(), p.mean = mean.data();
    p.rstd = rstd.data(), p.partial = partial.data();
    if (kind == 1) p.dh = dh.data();
    const bool whole = a.aligned && sh.items && cols % (sh.group * tk::Io<T>::VEC) == 0;
    emu::launch({(unsigned)groups, 1, 1}, {(unsigned)sh.group, 1, 1}, [&] {
        auto regs = [&](auto group, auto items) {
            if (whole) tk::norm_backward_regs<T, decltype(group)::value, decltype(items)::value, true>(blockIdx.x, threadIdx.x, p, a);
            else tk::norm_backward_regs<T, decltype(group)::value, decltype(items)::value, false>(blockIdx.x, threadIdx.x, p, a);
        };
        using I = std::integral_constant<int, 8>;
        switch (sh.group * 100 + sh.items) {
        case 102400: tk::norm_backward_group<T, 1024>(blockIdx.x, threadIdx.x, p, a); break;
        case 12808: regs(std::integral_constant<int, 128>(), I()); break;
        case 25608: regs(std::integral_constant<int, 256>(), I()); break;
        case 51208: regs(std::integral_constant<int, 512>(), I()); break;
        case 51216: regs(std::integral_constant<int, 512>(), std::integral_constant<int, 16>()); break;
        }
    });
    emu::launch({(unsigned)(cols + 31) / 32, 1, 1}, {256, 1, 1},
                [&] { tk_norm_reduce_partials(partial.data(), groups, cols, dgamma.data(), dbeta.data()); });

    const double uio = unit_roundoff<T>(), tight = std::ldexp(1.0, -14), os = a.out_scale;
    Tally t;
    std::vector<double> rg(cols, 0.0), rb(cols, 0.0), mg_(cols, 0.0);
    for (int i = 0; i < rows; i++) {
        std::vector<double> g(cols), xh(cols);
        double sg = 0.0, sgx = 0.0;
        for (int j = 0; j < cols; j++) {
            const size_t e = (size_t)i * cols + j;
            g[j] = tk::Io<T>::load(dy[e]) * gamma[j] * os;
            xh[j] = (tk::Io<T>::load(h[e]) - mu[i]) * rs[i];
            sg += g[j], sgx += g[j] * xh[j];
            rg[j] += tk::Io<T>::load(dy[e]) * os * xh[j];
            rb[j] += tk::Io<T>::load(dy[e]) * os;
            mg_[j] += std::fabs(tk::Io<T>::load(dy[e]) * os) * (std::fabs(xh[j]) + 1.0);
        }
        const double mg = kind == 0 ? sg / cols : 0.0, mgx = sgx / cols;
        for (int j = 0; j < cols; j++) {
            const size_t e = (size_t)i * cols + j;
            const double want = rs[i] * (g[j] - mg - xh[j] * mgx) + (kind == 1 ? tk::Io<T>::load(dh[e]) : 0.0);
            const double mag = rs[i] * (std::fabs(g[j]) + std::fabs(mg) + std::fabs(xh[j] * mgx)) + 1.0;
            const double tol = uio * std::fabs(want) + tight * mag, got = tk::Io<T>::load(dx[e]);
            t.check(std::fabs(got - want) <= tol, "dx", i, j, got, want, tol);
        }
    }
    for (int j = 0; j < cols; j++) {
        t.check(std::fabs(dgamma[j] - rg[j]) <= tight * mg_[j], "dgamma", -1, j, dgamma[j], rg[j], tight * mg_[j]);
        t.check(std::fabs(dbeta[j] - rb[j]) <= tight * mg_[j], "dbeta", -1, j, dbeta[j], rb[j], tight * mg_[j]);
    }
    failures += t.misses != 0;
    std::printf("%-4s backward %-5s %-22s rows %d cols %5d groups %d kind %d\n", t.misses ? "FAIL" : "ok", name<T>(),
                sh.name.c_str(), rows, cols, groups, kind);
    std::fflush(stdout);
}

template <typename T> void all() {
    constexpr int V = tk::Io<T>::VEC;
    const std::vector<Shape> fwd = {
        {"rows32x8", 32, 8, true},      {"rows32x16", 32, 16, true},    {"rows32x32", 32, 32, true},
        {"rows32x64", 32, 64, true},    {"rows64x16", 64, 16, false},   {"rows128x16", 128, 16, false},
        {"rows256x16", 256, 16, false}, {"rows512x16", 512, 16, false}, {"rows1024x16", 1024, 16, false},
        {"rows128x8", 128, 8, false},   {"rows256x8", 256, 8, false},   {"rows128x32", 128, 32, false},
        {"stream1024", 1024, 0, false},
    };
    for (const Shape &s : fwd) {
        const int full = s.items ? s.group * s.items : 3000;
        // whole chunks (the WHOLE path), a part chunk, and a short row
        forward<T>(s, 5, full, 0, false);
        forward<T>(s, 3, full - V - 3, 1, false);
        forward<T>(s, 2, std::max(1, full / 3 + 1), 2, true);
        // whole chunks, fewer than the shape holds
        if (s.items > V) forward<T>(s, 2, s.group * V, 1, false);
    }
    const std::vector<Shape> bwd = {
        {"group1024", 1024, 0, false}, {"rows128x8", 128, 8, false},  {"rows256x8", 256, 8, false},
        {"rows512x8", 512, 8, false},  {"rows512x16", 512, 16, false},
    };
    for (const Shape &s : bwd) {
        const int full = s.items ? s.group * s.items : 1500;
        backward<T>(s, 5, full, 2, 0);
        backward<T>(s, 4, full - V - 1, 3, 1);
        // a short row: most of the registers past it
        backward<T>(s, 3, full / 3 + 1, 2, 0);
        if (s.items > V) backward<T>(s, 3, s.group * V, 2, 0);
    }
}

} // namespace

int main() {
    all<float>();
    all<__half>();
    all<__nv_bfloat16>();
    std::printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
