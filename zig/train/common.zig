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
        /// Room for one weight matrix transposed (the largest tensor of any layer).
        wt: []T = &.{},

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

        /// The register tile: C[i][j] += sum_k a(i, k) B[k][j] for `mr` rows i from i0 and `nv`
        /// vectors of columns from j0, a(i, k) = A[i * ars + k * acs]. `cols` < nv * L only for
        /// the last, partial vector (its lanes past `cols` are neither read nor written).
        fn tile(
            comptime mr: usize,
            comptime nv: usize,
            comptime partial: bool,
            K: usize,
            A: [*]const T,
            ars: usize,
            acs: usize,
            B: [*]const T,
            ldb: usize,
            C: [*]T,
            ldc: usize,
            cols: usize,
            set: bool,
        ) void {
            var acc: [mr][nv]VT = @splat(@splat(@splat(0)));
            for (0..K) |k| {
                var bv: [nv]VT = undefined;
                inline for (0..nv) |v| {
                    const row = B + k * ldb + v * L;
                    if (partial and v == nv - 1) {
                        var tmp: [L]T = @splat(0);
                        @memcpy(tmp[0 .. cols - v * L], row[0 .. cols - v * L]);
                        bv[v] = tmp;
                    } else {
                        bv[v] = load(row);
                    }
                }
                inline for (0..mr) |r| {
                    const a: VT = @splat(A[r * ars + k * acs]);
                    inline for (0..nv) |v| acc[r][v] = madd(a, bv[v], acc[r][v]);
                }
            }
            inline for (0..mr) |r| inline for (0..nv) |v| {
                const dst = C + r * ldc + v * L;
                if (partial and v == nv - 1) {
                    const part: [L]T = acc[r][v];
                    for (dst[0 .. cols - v * L], part[0 .. cols - v * L]) |*o, x| o.* = if (set) x else o.* + x;
                } else {
                    store(dst, if (set) acc[r][v] else load(dst) + acc[r][v]);
                }
            };
        }

        /// Every row block of one column block (nv vectors, the last `cols` wide).
        fn rowBlocks(comptime nv: usize, comptime partial: bool, M: usize, K: usize, A: [*]const T, ars: usize, acs: usize, B: [*]const T, ldb: usize, C: [*]T, ldc: usize, cols: usize, set: bool) void {
            var i: usize = 0;
            while (i + mr_max <= M) : (i += mr_max) {
                tile(mr_max, nv, partial, K, A + i * ars, ars, acs, B, ldb, C + i * ldc, ldc, cols, set);
            }
            switch (M - i) {
                0 => {},
                inline 1...mr_max - 1 => |mr| tile(mr, nv, partial, K, A + i * ars, ars, acs, B, ldb, C + i * ldc, ldc, cols, set),
                else => unreachable,
            }
        }

        const mr_max = 8;

        /// C[i][j] (=, or += when !set) sum_k a(i, k) B[k][j] over M rows, N columns, K terms,
        /// where a(i, k) = A[i * ars + k * acs] (A or A^T) and B, C are row-major (ldb, ldc).
        /// Each element sums its K terms in order from 0, then is stored or added to C: the
        /// same bits every run.
        pub fn gemm(M: usize, N: usize, K: usize, A: [*]const T, ars: usize, acs: usize, B: [*]const T, ldb: usize, C: [*]T, ldc: usize, set: bool) void {
            if (M == 0 or N == 0) return;
            var j: usize = 0;
            while (j + 2 * L <= N) : (j += 2 * L) rowBlocks(2, false, M, K, A, ars, acs, B + j, ldb, C + j, ldc, 2 * L, set);
            if (j < N) {
                const rest = N - j;
                if (rest > L) {
                    rowBlocks(2, true, M, K, A, ars, acs, B + j, ldb, C + j, ldc, rest, set);
                } else if (rest == L) {
                    rowBlocks(1, false, M, K, A, ars, acs, B + j, ldb, C + j, ldc, rest, set);
                } else {
                    rowBlocks(1, true, M, K, A, ars, acs, B + j, ldb, C + j, ldc, rest, set);
                }
            }
        }

        /// wt[k][n] = B[n][k] for N rows of K (B's row stride ldb).
        pub fn transpose(N: usize, K: usize, B: []const T, ldb: usize, wt: []T) void {
            std.debug.assert(N == 0 or B.len >= (N - 1) * ldb + K);
            std.debug.assert(wt.len >= N * K);
            const tb = 16;
            var n0: usize = 0;
            while (n0 < N) : (n0 += tb) {
                var k0: usize = 0;
                while (k0 < K) : (k0 += tb) {
                    for (n0..@min(N, n0 + tb)) |n| for (k0..@min(K, k0 + tb)) |k| {
                        wt[k * N + n] = B[n * ldb + k];
                    };
                }
            }
        }

        /// C[m][n] = (accumulate ? C[m][n] : 0) + sum_k A[m][k] Bt[k][n]: A [M][K] (lda),
        /// Bt [K][N] (a transposed B, row stride N), C [M][N] (ldc).
        pub fn ntPre(M: usize, N: usize, K: usize, A: []const T, lda: usize, Bt: []const T, C: []T, ldc: usize, accumulate: bool) void {
            if (M == 0 or N == 0) return;
            std.debug.assert(A.len >= (M - 1) * lda + K and Bt.len >= K * N);
            std.debug.assert(C.len >= (M - 1) * ldc + N);
            gemm(M, N, K, A.ptr, lda, 1, Bt.ptr, N, C.ptr, ldc, !accumulate);
        }

        /// C[m][n] = (accumulate ? C[m][n] : 0) + sum_k A[m][k] B[n][k]: A [M][K] (row stride
        /// lda), B [N][K] (ldb), C [M][N] (ldc); `wt` (N * K) holds B transposed.
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
            wt: []T,
        ) void {
            if (M == 0 or N == 0) return;
            transpose(N, K, B, ldb, wt);
            ntPre(M, N, K, A, lda, wt[0 .. N * K], C, ldc, accumulate);
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
            gemm(M, K, N, A.ptr, lda, 1, B.ptr, ldb, C.ptr, ldc, false);
        }

        /// C[m][k] = sum_n A[m][n] B[n][k] (nn without reading C).
        pub fn nnSet(M: usize, N: usize, K: usize, A: []const T, lda: usize, B: []const T, ldb: usize, C: []T, ldc: usize) void {
            if (M == 0) return;
            if (N == 0) {
                for (0..M) |m| @memset(C[m * ldc ..][0..K], 0);
                return;
            }
            std.debug.assert(A.len >= (M - 1) * lda + N and B.len >= (N - 1) * ldb + K);
            std.debug.assert(C.len >= (M - 1) * ldc + K);
            gemm(M, K, N, A.ptr, lda, 1, B.ptr, ldb, C.ptr, ldc, true);
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
            gemm(N, K, M, A.ptr, 1, lda, B.ptr, ldb, C.ptr, ldc, false);
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

test "gemm: nt, nn and tn against naive loops with strides, odd shapes, f32 and f64" {
    inline for (.{ f32, f64 }) |T| {
        const G = Gemm(T);
        var prng = std.Random.DefaultPrng.init(5);
        const r = prng.random();
        const ld = 80;
        var a: [70 * ld]T = undefined;
        var b: [70 * ld]T = undefined;
        for (&a) |*v| v.* = r.float(T) - 0.5;
        for (&b) |*v| v.* = r.float(T) - 0.5;
        const shapes = [_][3]usize{ .{ 5, 7, 37 }, .{ 9, 40, 3 }, .{ 1, 33, 1 }, .{ 4, 64, 17 }, .{ 7, 1, 70 }, .{ 70, 49, 6 } };
        for (shapes) |shape| {
            const M, const N, const K = shape;
            var c: [70 * 80]T = undefined;
            var wt: [70 * 80]T = undefined;
            G.nt(M, N, K, &a, ld, &b, ld, &c, N, false, &wt);
            for (0..M) |m| for (0..N) |n| {
                var sum: f64 = 0;
                for (0..K) |k| sum += @as(f64, a[m * ld + k]) * b[n * ld + k];
                try std.testing.expectApproxEqAbs(sum, c[m * N + n], 1e-4);
            };
            // nn: C [M][K] += A [M][N] B [N][K], C starting from 1
            @memset(&c, 1);
            G.nn(M, N, K, &a, ld, &b, ld, &c, K);
            for (0..M) |m| for (0..K) |k| {
                var sum: f64 = 1;
                for (0..N) |n| sum += @as(f64, a[m * ld + n]) * b[n * ld + k];
                try std.testing.expectApproxEqAbs(sum, c[m * K + k], 1e-4);
            };
            var c_set: [70 * 80]T = undefined;
            @memset(&c_set, std.math.nan(T));
            G.nnSet(M, N, K, &a, ld, &b, ld, &c_set, K);
            for (0..M * K) |i| try std.testing.expectApproxEqAbs(c[i] - 1, c_set[i], 1e-4);
            // tn: C [N][K] += A^T B, A [M][N], B [M][K]
            @memset(&c, 0);
            G.tn(M, N, K, &a, ld, &b, ld, &c, K);
            for (0..N) |n| for (0..K) |k| {
                var sum: f64 = 0;
                for (0..M) |m| sum += @as(f64, a[m * ld + n]) * b[m * ld + k];
                try std.testing.expectApproxEqAbs(sum, c[n * K + k], 1e-4);
            };
        }
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
