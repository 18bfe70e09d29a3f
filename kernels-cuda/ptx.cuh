// Every inline-PTX wrapper of the crate, in one place: the boundary of the CPU
// stand-in (emu/emu.h defines each of these itself, with the same fragment
// layouts, when TK_CUDA_EMU is set).
// - Mma<T>::run: mma.sync m16n8k16, f16/bf16 operands, f32 accumulation
//   (fragment layouts in lightning.cu);
// - mma_s8: mma.sync m16n8k32, s8 operands, exact s32 accumulation;
// - ldmatrix_x4: four 8 x 8 16-bit matrices from shared memory;
// - cp_async16 / cp_async_commit / cp_async_wait: 16-byte global -> shared
//   copies that bypass the registers (qgemm.cu's pipeline).
#pragma once

#include "common.cuh"

namespace tk {

// Two adjacent 16-bit elements (a fragment register) from shared memory.
template <typename T> __device__ __forceinline__ uint32_t ld32(const T *p) {
    return *reinterpret_cast<const uint32_t *>(p);
}

template <typename T> struct Mma;
#ifndef TK_CUDA_EMU
#define TK_MMA_M16N8K16(T, ty)                                                                          \
    template <> struct Mma<T> {                                                                         \
        __device__ static void run(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {     \
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." ty "." ty ".f32 {%0,%1,%2,%3}, "       \
                         "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"                                     \
                         : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                               \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));           \
        }                                                                                               \
    };
TK_MMA_M16N8K16(__half, "f16")
TK_MMA_M16N8K16(__nv_bfloat16, "bf16")
#undef TK_MMA_M16N8K16

__device__ __forceinline__ void mma_s8(int (&c)[4], const unsigned int (&a)[4], unsigned int b0, unsigned int b1) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void ldmatrix_x4(unsigned int addr, unsigned int (&r)[4]) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void cp_async16(unsigned int dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
#endif

} // namespace tk
