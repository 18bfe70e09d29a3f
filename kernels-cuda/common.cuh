// Shared CUDA helpers: dtype I/O with 128-bit accesses, warp and block reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

// A kernel's dynamic shared memory as `type name[]` (the CPU stand-in,
// emu/emu.h, points it at one buffer).
#ifndef TK_DYNAMIC_SMEM
#define TK_DYNAMIC_SMEM(type, name) extern __shared__ __align__(16) type name[]
#endif

namespace tk {

// Element I/O: arithmetic is f32; VEC elements make one 128-bit access.
template <typename T> struct Io;
template <> struct Io<float> {
    static constexpr int VEC = 4;
    __device__ static float load(float v) { return v; }
    __device__ static float store(float v) { return v; }
};
template <> struct Io<__half> {
    static constexpr int VEC = 8;
    __device__ static float load(__half v) { return __half2float(v); }
    __device__ static __half store(float v) { return __float2half_rn(v); }
};
template <> struct Io<__nv_bfloat16> {
    static constexpr int VEC = 8;
    __device__ static float load(__nv_bfloat16 v) { return __bfloat162float(v); }
    __device__ static __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

template <typename T> union Pack {
    uint4 raw;
    T elems[Io<T>::VEC];
};

// Loads VEC elements starting at p (16-byte aligned when `aligned`), widened
// to f32; elements at index >= n read as `fill`. Plain loads, not __ldg: the
// kernels also run in place, where the input is not read-only.
template <typename T>
__device__ __forceinline__ void load_vec(const T *p, int n, bool aligned, float fill, float (&out)[Io<T>::VEC]) {
    constexpr int V = Io<T>::VEC;
    if (aligned && n >= V) {
        Pack<T> pk;
        pk.raw = *reinterpret_cast<const uint4 *>(p);
#pragma unroll
        for (int k = 0; k < V; k++) out[k] = Io<T>::load(pk.elems[k]);
    } else {
#pragma unroll
        for (int k = 0; k < V; k++) out[k] = k < n ? Io<T>::load(p[k]) : fill;
    }
}

// load_vec without the widening: VEC elements at p as one pack (one 128-bit
// load when aligned and full, else element by element, `fill` at index >= n).
// A thread that loads several packs before widening any keeps all its loads
// in flight at once; a widening between two loads waits for the first.
template <typename T> __device__ __forceinline__ Pack<T> load_pack(const T *p, int n, bool aligned, T fill) {
    constexpr int V = Io<T>::VEC;
    Pack<T> pk;
    if (aligned && n >= V) {
        pk.raw = *reinterpret_cast<const uint4 *>(p);
    } else {
#pragma unroll
        for (int k = 0; k < V; k++) pk.elems[k] = k < n ? p[k] : fill;
    }
    return pk;
}

// Stores the first min(n, VEC) values at p (one 128-bit store when aligned and full).
template <typename T>
__device__ __forceinline__ void store_vec(T *p, int n, bool aligned, const float (&v)[Io<T>::VEC]) {
    constexpr int V = Io<T>::VEC;
    if (aligned && n >= V) {
        Pack<T> pk;
#pragma unroll
        for (int k = 0; k < V; k++) pk.elems[k] = Io<T>::store(v[k]);
        *reinterpret_cast<uint4 *>(p) = pk.raw;
    } else {
#pragma unroll
        for (int k = 0; k < V; k++)
            if (k < n) p[k] = Io<T>::store(v[k]);
    }
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Reduction over a group of GROUP threads: one warp (shuffles only) or the
// whole block (shuffles, then one value per warp through shared memory).
template <int GROUP> struct GroupReduce {
    static_assert(GROUP == 32 || (GROUP % 32 == 0 && GROUP <= 1024), "group is a warp or a block");
    __device__ static float max(float v) {
        v = warp_max(v);
        if (GROUP == 32) return v;
        __shared__ float part[GROUP / 32];
        __syncthreads(); // part[] may still be read by a previous reduction
        if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
        __syncthreads();
        v = -INFINITY;
#pragma unroll
        for (int w = 0; w < GROUP / 32; w++) v = fmaxf(v, part[w]);
        return v;
    }
    __device__ static float sum(float v) {
        v = warp_sum(v);
        if (GROUP == 32) return v;
        __shared__ float part[GROUP / 32];
        __syncthreads();
        if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
        __syncthreads();
        v = 0.0f;
#pragma unroll
        for (int w = 0; w < GROUP / 32; w++) v += part[w];
        return v;
    }
    // N sums at once: one round of barriers for all of them (each barrier
    // round is a latency step of the row).
    template <int N> __device__ static void sums(float (&v)[N]) {
#pragma unroll
        for (int k = 0; k < N; k++) v[k] = warp_sum(v[k]);
        if (GROUP == 32) return;
        __shared__ float part[N][GROUP / 32];
        __syncthreads(); // part[] may still be read by a previous reduction
        if (threadIdx.x % 32 == 0)
#pragma unroll
            for (int k = 0; k < N; k++) part[k][threadIdx.x / 32] = v[k];
        __syncthreads();
#pragma unroll
        for (int k = 0; k < N; k++) {
            v[k] = 0.0f;
#pragma unroll
            for (int w = 0; w < GROUP / 32; w++) v[k] += part[k][w];
        }
    }
};

} // namespace tk
