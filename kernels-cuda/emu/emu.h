// A CPU stand-in for the parts of CUDA our kernels use, so their index
// arithmetic, barriers and fragment layouts can be checked on a machine
// without a GPU (CI, and every session not lent one). Not a simulator of
// timing or of memory ordering: one block runs at a time, each of its threads
// an OS thread; __syncthreads and __syncwarp are barriers, and warp
// collectives (shuffles, mma.sync) trade values through a per-warp slot table
// between two warp barriers. mma.sync sums each product in f64 and adds it to
// the f32 accumulator once (the tensor core's own order is unspecified).
//
// Use: include this, then the kernel's .cu file, then call emu::launch. A
// kernel's dynamic shared memory (TK_DYNAMIC_SMEM) is emu::dynamic_smem;
// static __shared__ arrays become function statics, which every thread of
// the (one) running block shares.
#pragma once
#define TK_CUDA_EMU 1

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

// the CUDA headers define these for host compilers; here they mean nothing
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#undef __launch_bounds__
#undef __grid_constant__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __grid_constant__

struct EmuDim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local EmuDim3 threadIdx, blockIdx;
inline EmuDim3 blockDim, gridDim;

using std::max;
using std::min;

namespace emu {
alignas(16) inline unsigned char dynamic_smem[256 * 1024];
}
#define TK_DYNAMIC_SMEM(type, name) type *name = reinterpret_cast<type *>(emu::dynamic_smem)

namespace emu {

struct Warp {
    std::barrier<> bar{32};
    alignas(16) unsigned char slot[32][64];
};

struct Block {
    std::barrier<> bar;
    std::vector<std::unique_ptr<Warp>> warps;
    std::mutex named_lock;
    std::map<int, std::unique_ptr<std::barrier<>>> named; // bar.sync id, count
    explicit Block(int threads) : bar(threads) {
        for (int w = 0; w < threads / 32; w++) warps.push_back(std::make_unique<Warp>());
    }
};

inline Block *current = nullptr;

// The block's barrier `id` (not 0: that is __syncthreads') for `count` threads.
inline std::barrier<> &named_barrier(int id, int count) {
    std::lock_guard<std::mutex> hold(current->named_lock);
    auto &b = current->named[id];
    if (!b) b = std::make_unique<std::barrier<>>(count);
    return *b;
}

inline Warp &warp() { return *current->warps[threadIdx.x / 32]; }
inline int lane() { return (int)(threadIdx.x % 32); }

// Puts `bytes` of this lane's value in its slot, waits for the warp, runs
// use(slots), and waits again so no lane overwrites a slot still being read.
template <typename F> void exchange(const void *mine, size_t bytes, F &&use) {
    Warp &w = warp();
    std::memcpy(w.slot[lane()], mine, bytes);
    w.bar.arrive_and_wait();
    use(w.slot);
    w.bar.arrive_and_wait();
}

// Runs kernel() for every block of `grid`, blocks one after another, each
// with `block` threads (a multiple of 32).
template <typename K> void launch(EmuDim3 grid, EmuDim3 block, K kernel) {
    gridDim = grid;
    blockDim = block;
    const int threads = (int)(block.x * block.y * block.z);
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                Block b(threads);
                current = &b;
                std::vector<std::thread> ts;
                for (int i = 0; i < threads; i++)
                    ts.emplace_back([&, i] {
                        threadIdx = {(unsigned)i % block.x, (unsigned)i / block.x % block.y,
                                     (unsigned)i / (block.x * block.y)};
                        blockIdx = {x, y, z};
                        kernel();
                        // a finished thread no longer holds up the others' barriers
                        b.warps[i / 32]->bar.arrive_and_drop();
                        b.bar.arrive_and_drop();
                    });
                for (auto &t : ts) t.join();
                current = nullptr;
            }
}

} // namespace emu

inline void __syncthreads() { emu::current->bar.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::warp().bar.arrive_and_wait(); }

// block-wide OR: a flag set by any thread, read after a barrier, cleared by
// thread 0 between two more
inline int __syncthreads_or(int p) {
    static std::atomic<int> flag{0};
    if (p) flag.store(1);
    __syncthreads();
    const int any = flag.load();
    __syncthreads();
    if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) flag.store(0);
    __syncthreads();
    return any;
}

// arithmetic intrinsics: IEEE operations in the default rounding mode (build
// with -ffp-contract=off so a * b + c is not fused where CUDA would not)
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline int __float2int_rn(float v) { return (int)std::nearbyint(v); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
template <typename T> inline T __ldg(const T *p) { return *p; }
template <typename T> inline T __ldcs(const T *p) { return *p; }
using std::isfinite;
using std::isinf;

inline float __shfl_xor_sync(unsigned, float v, int mask) {
    float out = 0.0f;
    emu::exchange(&v, sizeof v, [&](auto &slot) { std::memcpy(&out, slot[emu::lane() ^ mask], sizeof out); });
    return out;
}

// bit casts, ballots and atomics the activation-side kernels use
inline unsigned __float_as_uint(float v) {
    unsigned u;
    std::memcpy(&u, &v, 4);
    return u;
}
inline float __uint_as_float(unsigned u) {
    float v;
    std::memcpy(&v, &u, 4);
    return v;
}
inline unsigned __ballot_sync(unsigned, int p) {
    unsigned out = 0;
    const int mine = p != 0;
    emu::exchange(&mine, sizeof mine, [&](auto &slot) {
        for (int l = 0; l < 32; l++) {
            int v;
            std::memcpy(&v, slot[l], sizeof v);
            out |= (unsigned)(v != 0) << l;
        }
    });
    return out;
}
inline unsigned atomicMax(unsigned *p, unsigned v) {
    std::atomic_ref<unsigned> a(*p);
    unsigned old = a.load();
    while (old < v && !a.compare_exchange_weak(old, v)) {
    }
    return old;
}

// shared-memory addresses are offsets into emu::dynamic_smem
inline size_t __cvta_generic_to_shared(const void *p) {
    return (size_t)(static_cast<const unsigned char *>(p) - emu::dynamic_smem);
}

// The operands of a warp's mma.sync.aligned.m16n8kK.row.col, K = 8 E for E
// elements of type Elem per 32-bit register (E = 2: f16/bf16, K = 16; E = 4:
// s8, K = 32). Lane 4 g + t holds
//   A (16 x K): a0 (row g, k = E t ..), a1 (row g + 8, ..), a2 (row g, k = 4 E + E t ..), a3 (row g + 8, ..);
//   B (K x 8):  b0 (k = E t .., n = g), b1 (k = 4 E + E t .., n = g);
// and receives C: (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1).
// Calls product(A, B) with A(r, k) and B(k, n) as exact doubles, for this
// lane's four C elements (r, n) = c_row(e), c_col(e).
namespace emu {
inline int c_row(int e) { return (lane() >> 2) + (e >= 2 ? 8 : 0); }
inline int c_col(int e) { return 2 * (lane() & 3) + (e & 1); }

template <typename Elem, typename F>
void mma_operands(const uint32_t (&a)[4], uint32_t b0, uint32_t b1, F &&product) {
    constexpr int E = 4 / sizeof(Elem);
    struct Frag {
        uint32_t a[4], b[2];
    } mine = {{a[0], a[1], a[2], a[3]}, {b0, b1}};
    exchange(&mine, sizeof mine, [&](auto &slot) {
        auto elem = [&](int lane, bool is_a, int reg, int i) {
            Frag f;
            std::memcpy(&f, slot[lane], sizeof f);
            const uint32_t word = is_a ? f.a[reg] : f.b[reg];
            Elem v[E];
            std::memcpy(static_cast<void *>(v), &word, sizeof v);
            return (double)float(v[i]);
        };
        // A(r, k): lane 4 (r % 8) + (k % 4E) / E, register (k / 4E) * 2 + r / 8
        auto A = [&](int r, int k) { return elem(4 * (r % 8) + (k % (4 * E)) / E, true, (k / (4 * E)) * 2 + r / 8, k % E); };
        // B(k, n): lane 4 n + (k % 4E) / E, register k / 4E
        auto B = [&](int k, int n) { return elem(4 * n + (k % (4 * E)) / E, false, k / (4 * E), k % E); };
        product(A, B);
    });
}
} // namespace emu

namespace tk {

// cp.async: the copy happens at once (commit and wait have nothing to wait for)
inline void cp_async16(unsigned int dst, const void *src) { std::memcpy(emu::dynamic_smem + dst, src, 16); }
inline void cp_async_commit() {}
template <int N> inline void cp_async_wait() {}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16: lane 8 j + i gives the address of
// row i of matrix j; lane l receives 32 bits of each matrix j: row l / 4,
// bytes 4 (l % 4) ..
inline void ldmatrix_x4(unsigned int addr, unsigned int (&r)[4]) {
    const int l = emu::lane();
    emu::exchange(&addr, sizeof addr, [&](auto &slot) {
        for (int j = 0; j < 4; j++) {
            unsigned row;
            std::memcpy(&row, slot[8 * j + l / 4], sizeof row);
            std::memcpy(&r[j], emu::dynamic_smem + row + 4 * (l % 4), 4);
        }
    });
}

// mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32: exact int32 sums
inline void mma_s8(int (&c)[4], const unsigned int (&a)[4], unsigned int b0, unsigned int b1) {
    emu::mma_operands<signed char>(a, b0, b1, [&](auto A, auto B) {
        for (int e = 0; e < 4; e++) {
            int s = 0;
            for (int k = 0; k < 32; k++) s += (int)A(emu::c_row(e), k) * (int)B(k, emu::c_col(e));
            c[e] += s;
        }
    });
}

// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32: the 16
// products summed in f64, added to c and rounded to f32 once (the hardware's
// order and rounding are unspecified; the checks' bounds allow for either)
template <typename T> struct Mma {
    static void run(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
        emu::mma_operands<T>(a, b[0], b[1], [&](auto A, auto B) {
            for (int e = 0; e < 4; e++) {
                double s = 0.0;
                for (int k = 0; k < 16; k++) s += A(emu::c_row(e), k) * B(k, emu::c_col(e));
                c[e] = (float)((double)c[e] + s);
            }
        });
    }
};

} // namespace tk
