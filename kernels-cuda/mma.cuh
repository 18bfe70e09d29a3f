// Tensor-core products through mma.sync (PTX): m16n8k16 with f16/bf16
// operands and f32 accumulation. Fragment layouts are in lightning.cu; the
// CPU stand-in (emu/emu.h) defines Mma itself, with the same layouts.
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
#endif

} // namespace tk
