// The CPU stand-in for ptx_sm90.cuh (Hopper: mbarriers, TMA, wgmma): include
// after emu.h, before the kernel. Models what the kernels rely on, not timing:
// - an mbarrier is a 64-bit word in shared memory (phase bit, expected and
//   pending arrivals, outstanding transaction bytes) updated atomically; a
//   wait spins until the phase of the given parity has completed; more
//   arrivals than expected abort, and so does a wait of over a minute;
// - a TMA load copies its box at once (zeros outside the tensor), writing
//   shared memory through the 128-byte swizzle as an address function
//   (bits 4..6 ^= bits 7..9), then completes its bytes on the mbarrier;
// - a wgmma is recorded when issued and computed when a wgmma_wait retires
//   its group (the latest moment the hardware may read its operands), each
//   thread computing its own accumulators from shared memory through the
//   descriptors (the same swizzle function); the wait ends with a warp
//   barrier, as the instruction is warp-synchronous.
#pragma once

#include "emu.h"

#include "../ptx_sm90.cuh"

#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace emu {

// bit 63 phase, 48..62 expected arrivals, 32..47 pending arrivals, 0..31 transaction bytes (signed)
inline uint64_t *mbar_word(unsigned int addr) { return reinterpret_cast<uint64_t *>(dynamic_smem + addr); }

inline void mbar_update(unsigned int addr, int arrivals, int bytes) {
    uint64_t *p = mbar_word(addr);
    uint64_t old = __atomic_load_n(p, __ATOMIC_SEQ_CST), next;
    do {
        uint64_t phase = old >> 63, expected = (old >> 48) & 0x7fff, pending = (old >> 32) & 0xffff;
        int32_t tx = (int32_t)(uint32_t)old;
        if ((uint64_t)arrivals > pending) {
            std::fprintf(stderr, "emu: mbarrier at %u: more arrivals than expected\n", addr);
            std::abort();
        }
        pending -= arrivals;
        tx += bytes;
        if (pending == 0 && tx == 0) {
            phase ^= 1;
            pending = expected;
        }
        next = phase << 63 | expected << 48 | pending << 32 | (uint32_t)tx;
    } while (!__atomic_compare_exchange_n(p, &old, next, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
}

// the byte at logical shared address `addr` of a 128-byte swizzled region
inline unsigned char &swizzled(uint64_t addr) { return dynamic_smem[addr ^ (((addr >> 7) & 7) << 4)]; }

// The stand-in's tensor map: a 2-D int8 tensor (inner dimension contiguous)
// read in boxes, 128-byte swizzled.
inline tk::TmaMap tma_map_2d(const void *base, uint64_t inner, uint64_t outer, uint64_t row_bytes, uint32_t box_inner,
                             uint32_t box_outer) {
    tk::TmaMap m{};
    m.bits[0] = (uint64_t)(uintptr_t)base;
    m.bits[1] = inner;
    m.bits[2] = outer;
    m.bits[3] = row_bytes;
    m.bits[4] = box_inner;
    m.bits[5] = box_outer;
    return m;
}

struct WgmmaOp {
    int *d;
    uint64_t a, b;
};
inline thread_local std::vector<WgmmaOp> wgmma_ops;
inline thread_local std::vector<size_t> wgmma_groups; // ops issued at each commit
inline thread_local size_t wgmma_done = 0;

// an operand element (row, k) through a K-major, 128-byte swizzled descriptor
inline signed char wgmma_elem(uint64_t desc, int row, int k) {
    if (desc >> 62 != 1) {
        std::fprintf(stderr, "emu: wgmma descriptor without the 128-byte swizzle\n");
        std::abort();
    }
    const uint64_t start = (desc & 0x3fff) << 4, stride = ((desc >> 32) & 0x3fff) << 4;
    return (signed char)swizzled(start + (uint64_t)(row / 8) * stride + (row % 8) * 128 + k);
}

inline void wgmma_run(const WgmmaOp &op) {
    const int w = (int)(threadIdx.x / 32) % 4, l = lane();
    for (int x = 0; x < 128; x++) {
        const int r = 16 * w + l / 4 + 8 * ((x >> 1) & 1), c = 8 * (x >> 2) + 2 * (l % 4) + (x & 1);
        int s = 0;
        for (int k = 0; k < 32; k++) s += (int)wgmma_elem(op.a, r, k) * (int)wgmma_elem(op.b, c, k);
        op.d[x] += s;
    }
}

} // namespace emu

namespace tk {

inline void mbar_init(unsigned int bar, unsigned int count) {
    __atomic_store_n(emu::mbar_word(bar), (uint64_t)count << 48 | (uint64_t)count << 32, __ATOMIC_SEQ_CST);
}
inline void mbar_fence_init() {}
inline void mbar_arrive(unsigned int bar) { emu::mbar_update(bar, 1, 0); }
inline void mbar_arrive_expect_tx(unsigned int bar, unsigned int bytes) { emu::mbar_update(bar, 1, (int)bytes); }
// (a wait of over a minute is a deadlock: abort rather than hang the tests)
inline void mbar_wait(unsigned int bar, unsigned int parity) {
    const auto start = std::chrono::steady_clock::now();
    while ((__atomic_load_n(emu::mbar_word(bar), __ATOMIC_SEQ_CST) >> 63) == parity) {
        if (std::chrono::steady_clock::now() - start > std::chrono::seconds(60)) {
            std::fprintf(stderr, "emu: mbarrier at %u: phase %u never completed\n", bar, parity);
            std::abort();
        }
        std::this_thread::yield();
    }
}

inline void tma_load_2d(unsigned int dst, const TmaMap *map, int x, int y, unsigned int bar) {
    if (dst % 1024) {
        std::fprintf(stderr, "emu: a 128-byte swizzled TMA destination must be 1024-byte aligned\n");
        std::abort();
    }
    const auto *base = reinterpret_cast<const unsigned char *>((uintptr_t)map->bits[0]);
    const uint64_t inner = map->bits[1], outer = map->bits[2], row_bytes = map->bits[3];
    const uint32_t bi = (uint32_t)map->bits[4], bo = (uint32_t)map->bits[5];
    for (uint32_t r = 0; r < bo; r++)
        for (uint32_t b = 0; b < bi; b++) {
            const uint64_t gx = (uint64_t)x + b, gy = (uint64_t)y + r;
            emu::swizzled(dst + (uint64_t)r * bi + b) = gx < inner && gy < outer ? base[gy * row_bytes + gx] : 0;
        }
    emu::mbar_update(bar, 0, -(int)(bi * bo));
}

inline void named_barrier_sync(int id, int count) { emu::named_barrier(id, count).arrive_and_wait(); }

template <int N> inline void setmaxnreg_inc() {}
template <int N> inline void setmaxnreg_dec() {}

inline void wgmma_fence() {}
template <int N> inline void wgmma_fence_operands(int (&)[N]) {}
inline void wgmma_s8_m64n256k32(int (&d)[128], uint64_t a, uint64_t b) { emu::wgmma_ops.push_back({d, a, b}); }
inline void wgmma_commit() { emu::wgmma_groups.push_back(emu::wgmma_ops.size()); }
template <int N> inline void wgmma_wait() {
    const size_t groups = emu::wgmma_groups.size();
    if (groups > (size_t)N) {
        const size_t end = emu::wgmma_groups[groups - 1 - N];
        for (; emu::wgmma_done < end; emu::wgmma_done++) emu::wgmma_run(emu::wgmma_ops[emu::wgmma_done]);
    }
    __syncwarp();
}

} // namespace tk
