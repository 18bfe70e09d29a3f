// LLM.int8()'s int8 GEMM on Hopper (sm_90a, its own fatbin, loaded on
// compute capability 9.0): the products of qgemm.cu's tk_qgemm_s8_cuda, on
// wgmma instead of mma.sync, fed by TMA instead of cp.async. Same arguments
// (GemmArgs, plus the two tensor maps), same epilogue (qgemm.cuh), same
// results bit for bit (exact int32 sums, the same f32 epilogue).
//
// A block computes a 128 x 256 tile of y with three warpgroups: the first
// loads (one thread issues the TMA copies of A's 128 rows and W's 256 rows,
// 128 bytes of k each, into a 4-stage ring of 48 KB stages), the other two
// each multiply 64 of the rows by all 256 columns, 128 s32 accumulators a
// thread, four wgmma m64n256k32 per stage. Stage s is handed over by two
// mbarriers: full[s] completes when its bytes have landed, empty[s] when all
// eight consumer warps are done reading it (a consumer keeps one stage's
// wgmmas in flight while it waits for the next stage).
#include "common.cuh"
#include "ptx_sm90.cuh"
#include "qgemm.cuh"

namespace tk {

constexpr int WG_BM = 128, WG_BN = 256, WG_BK = 128, WG_STAGES = 4, WG_THREADS = 384;
constexpr int WG_A_BYTES = WG_BM * WG_BK, WG_STAGE_BYTES = WG_A_BYTES + WG_BN * WG_BK;
// slack to align the ring to 1024 bytes (the swizzle's period), the ring, the mbarriers
constexpr int WG_SMEM = 1024 + WG_STAGES * WG_STAGE_BYTES + 2 * WG_STAGES * 8;
static_assert(WG_SMEM == 197696, "src/cuda/qgemm.rs (WGMMA_SMEM) asks for this much dynamic shared memory");
constexpr int WG_C_STRIDE = WG_BN + 8; // words a row of the staged accumulators
static_assert(WG_BM * WG_C_STRIDE * 4 <= WG_STAGES * WG_STAGE_BYTES, "the epilogue stages the accumulators in the ring");

struct WgmmaArgs {
    TmaMap a_map; // q [rows, k_pad] s8: boxes of 128 rows x 128 bytes
    TmaMap w_map; // W [n_pad, k_pad] s8: boxes of 256 rows x 128 bytes
    GemmArgs g;
};

__device__ void qgemm_s8_wgmma(const WgmmaArgs &p) {
    TK_DYNAMIC_SMEM(unsigned char, smem);
    const GemmArgs &g = p.g;
    const unsigned int base = (unsigned int)__cvta_generic_to_shared(smem);
    const unsigned int ring = (base + 1023) & ~1023u;
    const unsigned int full = ring + WG_STAGES * WG_STAGE_BYTES, empty = full + WG_STAGES * 8;
    const int bm = blockIdx.y * WG_BM, bn = blockIdx.x * WG_BN;
    const int ktiles = (g.k_pad + WG_BK - 1) / WG_BK; // TMA fills k past k_pad with zeros
    const int group = threadIdx.x / 128, t = threadIdx.x % 128;
    if (threadIdx.x == 0) {
        for (int s = 0; s < WG_STAGES; s++) {
            mbar_init(full + 8 * s, 1);
            mbar_init(empty + 8 * s, 8);
        }
        mbar_fence_init();
    }
    __syncthreads();

    if (group == 0) { // the loader
        setmaxnreg_dec<40>();
        if (t == 0)
            for (int kt = 0; kt < ktiles; kt++) {
                const int s = kt % WG_STAGES, use = kt / WG_STAGES;
                if (use > 0) mbar_wait(empty + 8 * s, (use - 1) & 1);
                const unsigned int a = ring + s * WG_STAGE_BYTES;
                mbar_arrive_expect_tx(full + 8 * s, WG_STAGE_BYTES);
                tma_load_2d(a, &p.a_map, kt * WG_BK, bm, full + 8 * s);
                tma_load_2d(a + WG_A_BYTES, &p.w_map, kt * WG_BK, bn, full + 8 * s);
            }
        return;
    }

    setmaxnreg_inc<232>();
    const int rows = (group - 1) * 64; // this warpgroup's rows of the tile
    int acc[128];
#pragma unroll
    for (int x = 0; x < 128; x++) acc[x] = 0;
    wgmma_fence_operands(acc);
    for (int kt = 0; kt < ktiles; kt++) {
        const int s = kt % WG_STAGES;
        mbar_wait(full + 8 * s, (kt / WG_STAGES) & 1);
        const unsigned int a = ring + s * WG_STAGE_BYTES + rows * WG_BK, b = ring + s * WG_STAGE_BYTES + WG_A_BYTES;
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < WG_BK / 32; kk++) wgmma_s8_m64n256k32(acc, wgmma_desc(a + 32 * kk), wgmma_desc(b + 32 * kk));
        wgmma_commit();
        wgmma_wait<1>(); // stage kt - 1 is read: hand it back to the loader
        if (kt > 0 && t % 32 == 0) mbar_arrive(empty + 8 * ((kt - 1) % WG_STAGES));
    }
    wgmma_wait<0>();
    wgmma_fence_operands(acc);
    named_barrier_sync(1, 256); // both warpgroups are done with the ring: the epilogue stages C in it

    // The accumulators to shared memory as C [128][WG_C_STRIDE] s32 (8-byte
    // stores, rows 8 words of banks apart: no conflicts within a half-warp),
    // then the epilogue row by row, 4 columns a thread per step: coalesced,
    // and few registers live at once.
    int *cs = reinterpret_cast<int *>(smem + (ring - base));
    const int warp = t / 32, lane = t % 32;
#pragma unroll
    for (int x = 0; x < 128; x += 2) {
        const int r = rows + 16 * warp + lane / 4 + 8 * ((x >> 1) & 1), c = 8 * (x >> 2) + 2 * (lane % 4);
        *reinterpret_cast<int2 *>(cs + r * WG_C_STRIDE + c) = make_int2(acc[x], acc[x + 1]);
    }
    named_barrier_sync(1, 256);
    const unsigned int count = *g.count;
    const int n_out = min(count, (unsigned int)g.cap);
    const bool overflow = count > (unsigned int)g.cap;
    for (int idx = threadIdx.x - 128; idx < WG_BM * WG_BN / 4; idx += 256) {
        const int r = idx / (WG_BN / 4), c = idx % (WG_BN / 4) * 4, i = bm + r, j = bn + c;
        if (i >= g.m || j >= g.n) continue;
        const int4 a4 = *reinterpret_cast<const int4 *>(cs + r * WG_C_STRIDE + c);
        const int av[4] = {a4.x, a4.y, a4.z, a4.w};
        const int cols = min(4, g.n - j);
        if (g.acc) {
            for (int e = 0; e < cols; e++) g.acc[(size_t)i * g.n + j + e] = av[e];
            continue;
        }
        const float sx = g.a_scale[i];
        float v[4];
#pragma unroll
        for (int e = 0; e < 4; e++) v[e] = __fmul_rn((float)av[e], __fmul_rn(sx, g.w_scale[j + e])); // j + 3 < n_pad
        const float *xo = g.xo + (size_t)i * g.cap;
        for (int o = 0; o < n_out; o++) {
            const float xv = xo[o];
            const float4 w4 = *reinterpret_cast<const float4 *>(g.wo + (size_t)o * g.n_pad + j);
            v[0] = fmaf(xv, w4.x, v[0]);
            v[1] = fmaf(xv, w4.y, v[1]);
            v[2] = fmaf(xv, w4.z, v[2]);
            v[3] = fmaf(xv, w4.w, v[3]);
        }
        for (int e = 0; e < cols; e++) {
            float y = v[e];
            if (g.bias) y += g.bias[j + e];
            gm_store(g, i, j + e, overflow ? NAN : y);
        }
    }
}

} // namespace tk

extern "C" __global__ void __launch_bounds__(tk::WG_THREADS, 1)
    tk_qgemm_s8_wgmma_cuda(const __grid_constant__ tk::WgmmaArgs p) {
    tk::qgemm_s8_wgmma(p);
}
