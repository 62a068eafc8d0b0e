//! What every layer's training code shares: the context of a forward/backward pass over a
//! batch of sequences, and the three matrix products training needs (A B^T for forwards,
//! A B and A^T B for backwards), generic over the float type so that the same kernels run in
//! f32 (the trainer) and f64 (the gradient checks). Loops in a fixed order: one thread, the
//! same bits every run.
const std = @import("std");
const simd = @import("../simd.zig");
pub const Pool = @import("pool.zig").Pool;

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
        /// The helper thread for large products (the f32 trainer's), or none.
        pool: ?*Pool = null,

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
        /// same bits every run. With a pool, a large product is split in two on tile
        /// boundaries (column blocks of 2 vectors, else row blocks of mr_max), which changes no
        /// element's arithmetic.
        pub fn gemm(M: usize, N: usize, K: usize, A: [*]const T, ars: usize, acs: usize, B: [*]const T, ldb: usize, C: [*]T, ldc: usize, set: bool, pool: ?*Pool) void {
            if (M == 0 or N == 0) return;
            const args = Args{ .M = M, .N = N, .K = K, .A = A, .ars = ars, .acs = acs, .B = B, .ldb = ldb, .C = C, .ldc = ldc, .set = set };
            const p = pool orelse return gemmOne(&args);
            if (!p.available() or M * N * K < split_min) return gemmOne(&args);
            var first = args;
            var second = args;
            if (N >= 4 * L) {
                const mid = N / (4 * L) * (2 * L);
                first.N = mid;
                second.N = N - mid;
                second.B = B + mid;
                second.C = C + mid;
            } else if (M >= 2 * mr_max) {
                const mid = M / (2 * mr_max) * mr_max;
                first.M = mid;
                second.M = M - mid;
                second.A = A + mid * ars;
                second.C = C + mid * ldc;
            } else return gemmOne(&args);
            p.both(.{ .run = runArgs, .args = &second }, .{ .run = runArgs, .args = &first });
        }

        /// Products below this many multiply-adds stay on one thread (a hand-off costs more).
        const split_min = 1 << 16;

        const Args = struct { M: usize, N: usize, K: usize, A: [*]const T, ars: usize, acs: usize, B: [*]const T, ldb: usize, C: [*]T, ldc: usize, set: bool };

        fn runArgs(opaque_args: *const anyopaque) void {
            gemmOne(@ptrCast(@alignCast(opaque_args)));
        }

        fn gemmOne(a: *const Args) void {
            const M = a.M;
            const N = a.N;
            const K = a.K;
            var j: usize = 0;
            while (j + 2 * L <= N) : (j += 2 * L) rowBlocks(2, false, M, K, a.A, a.ars, a.acs, a.B + j, a.ldb, a.C + j, a.ldc, 2 * L, a.set);
            if (j < N) {
                const rest = N - j;
                if (rest > L) {
                    rowBlocks(2, true, M, K, a.A, a.ars, a.acs, a.B + j, a.ldb, a.C + j, a.ldc, rest, a.set);
                } else if (rest == L) {
                    rowBlocks(1, false, M, K, a.A, a.ars, a.acs, a.B + j, a.ldb, a.C + j, a.ldc, rest, a.set);
                } else {
                    rowBlocks(1, true, M, K, a.A, a.ars, a.acs, a.B + j, a.ldb, a.C + j, a.ldc, rest, a.set);
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
        pub fn ntPre(M: usize, N: usize, K: usize, A: []const T, lda: usize, Bt: []const T, C: []T, ldc: usize, accumulate: bool, pool: ?*Pool) void {
            if (M == 0 or N == 0) return;
            std.debug.assert(A.len >= (M - 1) * lda + K and Bt.len >= K * N);
            std.debug.assert(C.len >= (M - 1) * ldc + N);
            gemm(M, N, K, A.ptr, lda, 1, Bt.ptr, N, C.ptr, ldc, !accumulate, pool);
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
            pool: ?*Pool,
        ) void {
            if (M == 0 or N == 0) return;
            transpose(N, K, B, ldb, wt);
            ntPre(M, N, K, A, lda, wt[0 .. N * K], C, ldc, accumulate, pool);
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
            pool: ?*Pool,
        ) void {
            if (M == 0 or N == 0) return;
            std.debug.assert(A.len >= (M - 1) * lda + N and B.len >= (N - 1) * ldb + K);
            std.debug.assert(C.len >= (M - 1) * ldc + K);
            gemm(M, K, N, A.ptr, lda, 1, B.ptr, ldb, C.ptr, ldc, false, pool);
        }

        /// C[m][k] = sum_n A[m][n] B[n][k] (nn without reading C).
        pub fn nnSet(M: usize, N: usize, K: usize, A: []const T, lda: usize, B: []const T, ldb: usize, C: []T, ldc: usize, pool: ?*Pool) void {
            if (M == 0) return;
            if (N == 0) {
                for (0..M) |m| @memset(C[m * ldc ..][0..K], 0);
                return;
            }
            std.debug.assert(A.len >= (M - 1) * lda + N and B.len >= (N - 1) * ldb + K);
            std.debug.assert(C.len >= (M - 1) * ldc + K);
            gemm(M, K, N, A.ptr, lda, 1, B.ptr, ldb, C.ptr, ldc, true, pool);
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
            pool: ?*Pool,
        ) void {
            if (M == 0 or N == 0) return;
            std.debug.assert(A.len >= (M - 1) * lda + N and B.len >= (M - 1) * ldb + K);
            std.debug.assert(C.len >= (N - 1) * ldc + K);
            gemm(N, K, M, A.ptr, 1, lda, B.ptr, ldb, C.ptr, ldc, false, pool);
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

test "gemm: nt, nn and tn against naive loops with strides, odd shapes, f32 and f64, one or two threads" {
    var helper = Pool{};
    helper.start();
    defer helper.finish();
    try std.testing.expect(helper.available());
    inline for (.{ f32, f64 }) |T| for ([_]?*Pool{ null, &helper }) |pool| {
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
            G.nt(M, N, K, &a, ld, &b, ld, &c, N, false, &wt, pool);
            for (0..M) |m| for (0..N) |n| {
                var sum: f64 = 0;
                for (0..K) |k| sum += @as(f64, a[m * ld + k]) * b[n * ld + k];
                try std.testing.expectApproxEqAbs(sum, c[m * N + n], 1e-4);
            };
            // nn: C [M][K] += A [M][N] B [N][K], C starting from 1
            @memset(&c, 1);
            G.nn(M, N, K, &a, ld, &b, ld, &c, K, pool);
            for (0..M) |m| for (0..K) |k| {
                var sum: f64 = 1;
                for (0..N) |n| sum += @as(f64, a[m * ld + n]) * b[n * ld + k];
                try std.testing.expectApproxEqAbs(sum, c[m * K + k], 1e-4);
            };
            var c_set: [70 * 80]T = undefined;
            @memset(&c_set, std.math.nan(T));
            G.nnSet(M, N, K, &a, ld, &b, ld, &c_set, K, pool);
            for (0..M * K) |i| try std.testing.expectApproxEqAbs(c[i] - 1, c_set[i], 1e-4);
            // tn: C [N][K] += A^T B, A [M][N], B [M][K]
            @memset(&c, 0);
            G.tn(M, N, K, &a, ld, &b, ld, &c, K, pool);
            for (0..N) |n| for (0..K) |k| {
                var sum: f64 = 0;
                for (0..M) |m| sum += @as(f64, a[m * ld + n]) * b[m * ld + k];
                try std.testing.expectApproxEqAbs(sum, c[n * K + k], 1e-4);
            };
        }
    };
}

test "gemm: the two-thread split gives the same bits as one thread" {
    var helper = Pool{};
    helper.start();
    defer helper.finish();
    const G = Gemm(f32);
    var prng = std.Random.DefaultPrng.init(8);
    const r = prng.random();
    const shapes = [_][3]usize{ .{ 37, 161, 45 }, .{ 200, 20, 33 }, .{ 64, 128, 128 } };
    const a = try std.testing.allocator.alloc(f32, 200 * 200);
    defer std.testing.allocator.free(a);
    const b = try std.testing.allocator.alloc(f32, 200 * 200);
    defer std.testing.allocator.free(b);
    const c1 = try std.testing.allocator.alloc(f32, 200 * 200);
    defer std.testing.allocator.free(c1);
    const c2 = try std.testing.allocator.alloc(f32, 200 * 200);
    defer std.testing.allocator.free(c2);
    for (a) |*v| v.* = r.float(f32) - 0.5;
    for (b) |*v| v.* = r.float(f32) - 0.5;
    for (shapes) |shape| {
        const M, const N, const K = shape;
        try std.testing.expect(M * N * K >= G.split_min);
        for ([_]bool{ false, true }) |set| {
            @memset(c1, 0.25);
            @memset(c2, 0.25);
            G.gemm(M, N, K, a.ptr, K, 1, b.ptr, N, c1.ptr, N, set, null);
            G.gemm(M, N, K, a.ptr, K, 1, b.ptr, N, c2.ptr, N, set, &helper);
            try std.testing.expectEqualSlices(u32, @ptrCast(c1), @ptrCast(c2));
            G.gemm(M, N, K, a.ptr, 1, M, b.ptr, N, c1.ptr, N, set, null);
            G.gemm(M, N, K, a.ptr, 1, M, b.ptr, N, c2.ptr, N, set, &helper);
            try std.testing.expectEqualSlices(u32, @ptrCast(c1), @ptrCast(c2));
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
