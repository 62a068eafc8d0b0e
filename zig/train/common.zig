//! What every layer's training code shares: the context of a forward/backward pass over a
//! batch of sequences, and the three matrix products training needs (A B^T for forwards,
//! A B and A^T B for backwards), generic over the float type so that the same kernels run in
//! f32 (the trainer) and f64 (the gradient checks). Loops in a fixed order: one thread, the
//! same bits every run.
const std = @import("std");
const simd = @import("../simd.zig");

/// One pass over `batch` sequences of `seq` positions; row r = b * seq + t of every
/// activation is position t of sequence b.
pub fn Ctx(comptime T: type) type {
    return struct {
        batch: usize,
        seq: usize,
        /// Truncated BPTT: recurrent gradients stop at positions t with t % window == 0
        /// (0: the whole sequence).
        window: usize = 0,
        /// Fake int8 forward (f32 only): the inference path's quantised products.
        qat: bool = false,
        /// The layer's scratch (scratchLen floats, contents not kept).
        scratch: []T = &.{},

        pub fn rows(c: @This()) usize {
            return c.batch * c.seq;
        }

        /// True when the gradient into position t must not flow back to t - 1.
        pub fn cut(c: @This(), t: usize) bool {
            return t == 0 or (c.window != 0 and t % c.window == 0);
        }
    };
}

pub fn vectorLen(comptime T: type) comptime_int {
    return std.simd.suggestVectorLength(T) orelse 4;
}

/// a * b + c, fused where the target has FMA (as simd.madd), for scalars of either type.
pub inline fn madd(a: anytype, b: @TypeOf(a), c: @TypeOf(a)) @TypeOf(a) {
    return simd.madd(a, b, c);
}

pub fn Gemm(comptime T: type) type {
    return struct {
        const L = vectorLen(T);
        const VT = @Vector(L, T);

        inline fn load(p: [*]const T) VT {
            return p[0..L].*;
        }

        inline fn store(p: [*]T, v: VT) void {
            p[0..L].* = v;
        }

        /// sum_i a[i] * b[i]
        pub fn dot(a: [*]const T, b: [*]const T, k: usize) T {
            var acc0: VT = @splat(0);
            var acc1: VT = @splat(0);
            var i: usize = 0;
            while (i + 2 * L <= k) : (i += 2 * L) {
                acc0 = madd(load(a + i), load(b + i), acc0);
                acc1 = madd(load(a + i + L), load(b + i + L), acc1);
            }
            if (i + L <= k) {
                acc0 = madd(load(a + i), load(b + i), acc0);
                i += L;
            }
            var s = @reduce(.Add, acc0 + acc1);
            while (i < k) : (i += 1) s = madd(a[i], b[i], s);
            return s;
        }

        /// y[0..n] += alpha * x[0..n]
        pub fn axpy(n: usize, alpha: T, x: [*]const T, y: [*]T) void {
            const av: VT = @splat(alpha);
            var i: usize = 0;
            while (i + L <= n) : (i += L) store(y + i, madd(av, load(x + i), load(y + i)));
            while (i < n) : (i += 1) y[i] = madd(alpha, x[i], y[i]);
        }

        /// C[m][n] = (accumulate ? C[m][n] : 0) + sum_k A[m][k] B[n][k]: A [M][K] (row stride
        /// lda), B [N][K] (ldb), C [M][N] (ldc).
        pub fn nt(
            M: usize,
            N: usize,
            K: usize,
            A: []const T,
            lda: usize,
            B: []const T,
            ldb: usize,
            C: []T,
            ldc: usize,
            accumulate: bool,
        ) void {
            if (M == 0 or N == 0) return;
            std.debug.assert(A.len >= (M - 1) * lda + K and B.len >= (N - 1) * ldb + K);
            std.debug.assert(C.len >= (M - 1) * ldc + N);
            for (0..M) |m| {
                const a = A.ptr + m * lda;
                const c = C.ptr + m * ldc;
                for (0..N) |n| {
                    const s = dot(a, B.ptr + n * ldb, K);
                    c[n] = if (accumulate) c[n] + s else s;
                }
            }
        }

        /// C[m][k] += sum_n A[m][n] B[n][k]: A [M][N] (lda), B [N][K] (ldb), C [M][K] (ldc).
        pub fn nn(
            M: usize,
            N: usize,
            K: usize,
            A: []const T,
            lda: usize,
            B: []const T,
            ldb: usize,
            C: []T,
            ldc: usize,
        ) void {
            if (M == 0 or N == 0) return;
            std.debug.assert(A.len >= (M - 1) * lda + N and B.len >= (N - 1) * ldb + K);
            std.debug.assert(C.len >= (M - 1) * ldc + K);
            for (0..M) |m| {
                const a = A.ptr + m * lda;
                const c = C.ptr + m * ldc;
                for (0..N) |n| {
                    if (a[n] != 0) axpy(K, a[n], B.ptr + n * ldb, c);
                }
            }
        }

        /// C[n][k] += sum_m A[m][n] B[m][k]: A [M][N] (lda), B [M][K] (ldb), C [N][K] (ldc).
        pub fn tn(
            M: usize,
            N: usize,
            K: usize,
            A: []const T,
            lda: usize,
            B: []const T,
            ldb: usize,
            C: []T,
            ldc: usize,
        ) void {
            if (M == 0 or N == 0) return;
            std.debug.assert(A.len >= (M - 1) * lda + N and B.len >= (M - 1) * ldb + K);
            std.debug.assert(C.len >= (N - 1) * ldc + K);
            for (0..M) |m| {
                const a = A.ptr + m * lda;
                const b = B.ptr + m * ldb;
                for (0..N) |n| {
                    if (a[n] != 0) axpy(K, a[n], b, C.ptr + n * ldc);
                }
            }
        }

        /// y[r][o] += b[o] for M rows of width N (stride ld).
        pub fn addBias(M: usize, N: usize, b: []const T, y: []T, ld: usize) void {
            for (0..M) |m| {
                for (y[m * ld ..][0..N], b[0..N]) |*v, bv| v.* += bv;
            }
        }

        /// g[o] += sum_r dy[r][o] for M rows of width N (stride ld).
        pub fn sumRows(M: usize, N: usize, dy: []const T, ld: usize, g: []T) void {
            for (0..M) |m| axpy(N, 1, dy.ptr + m * ld, g.ptr);
        }
    };
}

test "gemm: nt, nn and tn against naive loops with strides, f32 and f64" {
    inline for (.{ f32, f64 }) |T| {
        const G = Gemm(T);
        var prng = std.Random.DefaultPrng.init(5);
        const r = prng.random();
        const M = 5;
        const N = 7;
        const K = 37;
        var a: [M * 40]T = undefined;
        var b: [N * 40]T = undefined;
        for (&a) |*v| v.* = r.float(T) - 0.5;
        for (&b) |*v| v.* = r.float(T) - 0.5;
        var c: [M * N]T = undefined;
        G.nt(M, N, K, &a, 40, &b, 40, &c, N, false);
        for (0..M) |m| for (0..N) |n| {
            var s: f64 = 0;
            for (0..K) |k| s += @as(f64, a[m * 40 + k]) * b[n * 40 + k];
            try std.testing.expectApproxEqAbs(s, c[m * N + n], 1e-5);
        };
        // nn: C [M][K] += A [M][N] B [N][K]
        var c2: [M * K]T = @splat(0);
        G.nn(M, N, K, &a, 40, &b, 40, &c2, K);
        for (0..M) |m| for (0..K) |k| {
            var s: f64 = 0;
            for (0..N) |n| s += @as(f64, a[m * 40 + n]) * b[n * 40 + k];
            try std.testing.expectApproxEqAbs(s, c2[m * K + k], 1e-5);
        };
        // tn: C [N][K] += A^T B, A [M][N], B [M][K]
        var c3: [N * K]T = @splat(0);
        G.tn(M, N, K, &a, 40, &b, 40, &c3, K);
        for (0..N) |n| for (0..K) |k| {
            var s: f64 = 0;
            for (0..M) |m| s += @as(f64, a[m * 40 + n]) * b[m * 40 + k];
            try std.testing.expectApproxEqAbs(s, c3[n * K + k], 1e-5);
        };
    }
}

const act = @import("../layers/act.zig");

/// The gate nonlinearities of the recurrent kinds: in f32 the inference approximations (so a
/// QAT forward matches inference bit for bit), in f64 the exact functions.
pub inline fn sigmoid(comptime T: type, x: T) T {
    return if (T == f32) act.sigmoid(x) else 1 / (1 + @exp(-x));
}

pub inline fn tanh(comptime T: type, x: T) T {
    return if (T == f32) act.tanh(x) else std.math.tanh(x);
}
