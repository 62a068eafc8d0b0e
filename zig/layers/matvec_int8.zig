//! The int8 side of the matrix kernel (matvec.zig holds the layout, packing and the f32 and
//! bf16 kernels): the quantisation of weights at create and of each input per call, and the
//! batch-1 integer kernels, portable and AVX512-VNNI (docs/DESIGN.md, "Precision").
const std = @import("std");
const builtin = @import("builtin");
const simd = @import("../simd.zig");
const mv = @import("matvec.zig");

const lanes = mv.lanes;
const V = mv.V;
const Shape = mv.Shape;
const padded = mv.padded;
const block_panels = mv.block_panels;
const storeRow = mv.storeRow;
const min_chains = mv.min_chains;
const pack = mv.pack;
const packBias = mv.packBias;
const matvec = mv.matvec;
const matmul = mv.matmul;

/// Column quads per iteration of the batch-1 loop.
const unroll_quads = 4;

// ---- int8 quantisation (docs/DESIGN.md, "Precision") ----------------------------------------

/// What follows each int8 panel: its rows' scales, and `128 * sum_c q[r][c]`, which the VNNI
/// kernel subtracts because it multiplies the input biased by 128 (u8 = q + 128).
pub const Footer = extern struct {
    scale: [lanes]f32,
    correction: [lanes]i32,
};
pub const footer_words = 2 * lanes;
comptime {
    std.debug.assert(@sizeOf(Footer) == footer_words * 4);
}

/// The most columns an int8 matrix may have: sum_c q_w * q_x, |q| <= 127, must fit an i32.
pub const int8_cols_max: u64 = std.math.maxInt(i32) / (127 * 127);

/// Below the smallest normal f32 a weight row is held as zeros (scale 0): max / 127 would
/// lose precision.
const min_normal: f32 = std.math.floatMin(f32);

/// Below this an input vector is held as zeros (sx 0): the smallest power of two m for which
/// 127 / m is finite. Under it 127 / m overflows, and 0 * inf would be NaN.
pub const input_min: f32 = 0x1p-121;
comptime {
    std.debug.assert(std.math.isFinite(127 / input_min));
    std.debug.assert(!std.math.isFinite(127 / (input_min / 2)));
}

/// Round half to even of |v| < 2^22: adding and subtracting 1.5 * 2^23 leaves the integer
/// part in the mantissa, rounded by the FPU's default mode (nearest, ties to even).
inline fn roundEven(v: anytype) @TypeOf(v) {
    const T = @TypeOf(v);
    const magic: T = if (@typeInfo(T) == .vector) @splat(12582912.0) else 12582912.0;
    return (v + magic) - magic;
}

/// The scale of a row whose largest magnitude is `max_abs`: max / 127, or 0 below min_normal.
pub fn weightScale(max_abs: f32) f32 {
    std.debug.assert(std.math.isFinite(max_abs) and max_abs >= 0);
    return if (max_abs < min_normal) 0 else max_abs / 127;
}

/// round_half_even(v / scale) clamped to [-127, 127]; 0 when the scale is 0.
pub fn quantiseWeight(v: f32, scale: f32) i8 {
    if (scale == 0) return 0;
    const r = roundEven(v / scale);
    return @intFromFloat(std.math.clamp(r, -127, 127));
}

// ---- int8, batch 1 -------------------------------------------------------------------------

const I = @Vector(lanes, i32);

/// The two integer kernels, bit-identical (exact integer sums): `generic` is portable vector
/// code, `vnni` the AVX512-VNNI instruction through inline assembly (LLVM does not choose it).
pub const Kernel = enum { generic, vnni };

/// Compiled in where the target has AVX512-VNNI and 16-lane vectors, and the backend is LLVM
/// (Zig's own x86 backend, used by Debug builds, does not take this assembly).
pub const vnni_available = builtin.zig_backend == .stage2_llvm and lanes == 16 and
    switch (builtin.cpu.arch) {
        .x86_64 => std.Target.x86.featureSetHas(builtin.cpu.features, .avx512vnni),
        else => false,
    };

pub const default_kernel: Kernel = if (vnni_available) .vnni else .generic;

/// Quantises x into `xq` (s.inputWords() words: one byte per column, biased as u8 = q + 128,
/// padding bytes 128 = q 0) and returns its scale sx: max|x| / 127; 0 when max|x| is below
/// `input_min`, 2^-121 (q all 0); NaN when x holds an infinity or a NaN, so every output
/// is NaN as the f32 kernel's would be. q = round_half_even(x * (127 / max|x|)), in f32.
pub fn quantiseInput(x: []const f32, xq: []f32) f32 {
    std.debug.assert(xq.len * 4 >= x.len);
    const bytes: [*]u8 = @ptrCast(xq.ptr);
    @memset(bytes[x.len .. xq.len * 4], 128);
    const max_bits = maxAbsBits(x);
    if (max_bits >= 0x7F80_0000 or max_bits < @as(u32, @bitCast(input_min))) {
        @memset(bytes[0..x.len], 128);
        return if (max_bits >= 0x7F80_0000) std.math.nan(f32) else 0;
    }
    const max_abs: f32 = @bitCast(max_bits);
    const inv = 127 / max_abs;
    var i: usize = 0;
    while (i + lanes <= x.len) : (i += lanes) {
        bytes[i..][0..lanes].* = biasedBytes(simd.loadPtr(x.ptr + i) * @as(V, @splat(inv)));
    }
    if (i < x.len) {
        const last = biasedBytes(simd.loadPartial(x[i..]) * @as(V, @splat(inv)));
        const a: [lanes]u8 = last;
        @memcpy(bytes[i..x.len], a[0 .. x.len - i]);
    }
    return max_abs / 127;
}

/// The largest |x| as bits: integer order on the magnitude bits puts NaN above infinity above
/// every finite value.
fn maxAbsBits(x: []const f32) u32 {
    const B = @Vector(lanes, u32);
    const abs_mask: B = @splat(0x7FFF_FFFF);
    var m: B = @splat(0);
    var i: usize = 0;
    while (i + lanes <= x.len) : (i += lanes) {
        m = @max(m, @as(B, @bitCast(simd.loadPtr(x.ptr + i))) & abs_mask);
    }
    if (i < x.len) m = @max(m, @as(B, @bitCast(simd.loadPartial(x[i..]))) & abs_mask);
    return @reduce(.Max, m);
}

/// round_half_even(t) clamped to [-127, 127], plus 128, as bytes.
inline fn biasedBytes(t: V) @Vector(lanes, u8) {
    const r = std.math.clamp(roundEven(t), @as(V, @splat(-127)), @as(V, @splat(127)));
    const q: I = @intFromFloat(r);
    return @intCast(q + @as(I, @splat(128)));
}

pub fn matvecInt8(
    s: Shape,
    w: [*]const f32,
    b: [*]const f32,
    xq: [*]const u32,
    sx: f32,
    y: []f32,
    comptime kernel: Kernel,
) void {
    const panels = padded(s.rows) / lanes;
    const whole = panels / block_panels;
    const quads = s.storedCols();
    for (0..whole) |k| {
        const row0 = k * block_panels * lanes;
        int8Block(kernel, block_panels, w + k * s.blockWords(), b, row0, xq, quads, sx, y);
    }
    switch (panels - whole * block_panels) {
        0 => {},
        inline 1...block_panels - 1 => |np| {
            const row0 = whole * block_panels * lanes;
            int8Block(kernel, np, w + whole * s.blockWords(), b, row0, xq, quads, sx, y);
        },
        else => unreachable,
    }
}

/// One block: the exact integer sums acc = sum_c q_w * q_x per row, then one rescale,
/// y = f32(acc) * (sx * scale) + b (fused where the target has FMA).
fn int8Block(
    comptime kernel: Kernel,
    comptime np: usize,
    w: [*]const f32,
    b: [*]const f32,
    row0: usize,
    xq: [*]const u32,
    quads: usize,
    sx: f32,
    y: []f32,
) void {
    var acc: [np]I = @splat(@splat(0));
    switch (kernel) {
        .generic => accumulateGeneric(np, w, xq, quads, &acc),
        .vnni => accumulateVnni(np, w, xq, quads, &acc),
    }
    const footers: [*]const Footer = @ptrCast(@alignCast(w + np * lanes * quads));
    inline for (0..np) |j| {
        const f = &footers[j];
        const sums = if (kernel == .vnni) acc[j] -% @as(I, f.correction) else acc[j];
        const scale = @as(V, @splat(sx)) * @as(V, f.scale);
        const bias = simd.loadPtr(b + row0 + j * lanes);
        storeRow(y, row0 + j * lanes, simd.madd(@as(V, @floatFromInt(sums)), scale, bias));
    }
}

inline fn loadI(p: [*]const f32) I {
    return @bitCast(simd.loadPtr(p));
}

/// acc[j] += sum_c q_w * q_x over one int8 block, in wrapping i32 (the exact sum fits: the
/// parser limits int8 matrices to int8_cols_max columns). x's bytes are biased by 128.
inline fn accumulateGeneric(
    comptime np: usize,
    w: [*]const f32,
    xq: [*]const u32,
    quads: usize,
    acc: *[np]I,
) void {
    const step = np * lanes;
    var o = w;
    for (0..quads) |g| {
        const word = xq[g];
        var xs: [4]I = undefined;
        inline for (0..4) |k| {
            const byte: i32 = @intCast((word >> (8 * k)) & 0xFF);
            xs[k] = @splat(byte - 128);
        }
        inline for (0..np) |j| {
            const bits = loadI(o + j * lanes);
            inline for (0..4) |k| {
                const wk = (bits << @splat(24 - 8 * k)) >> @splat(24);
                acc[j] +%= wk *% xs[k];
            }
        }
        o += step;
    }
}

/// The same sums with `vpdpbusd` (u8 x s8, four products per lane): acc[j] gets
/// sum (q_x + 128) * q_w, from which int8Block subtracts the footer's 128 * rowsum.
inline fn accumulateVnni(
    comptime np: usize,
    w: [*]const f32,
    xq: [*]const u32,
    quads: usize,
    acc: *[np]I,
) void {
    const sets = (min_chains + np - 1) / np;
    const step = np * lanes;
    var a: [sets][np]I = @splat(@splat(@splat(0)));
    var o = w;
    var g: usize = 0;
    while (g + unroll_quads <= quads) : (g += unroll_quads) {
        inline for (0..unroll_quads) |u| {
            const xv: I = @splat(@bitCast(xq[g + u]));
            const acc_u = &a[u % sets];
            inline for (0..np) |j| acc_u[j] = dpbusd(acc_u[j], xv, loadI(o + u * step + j * lanes));
        }
        o += unroll_quads * step;
    }
    while (g < quads) : (g += 1) {
        const xv: I = @splat(@bitCast(xq[g]));
        inline for (0..np) |j| a[0][j] = dpbusd(a[0][j], xv, loadI(o + j * lanes));
        o += step;
    }
    inline for (0..np) |j| {
        var total = a[0][j];
        inline for (1..sets) |k| total +%= a[k][j];
        acc[j] = total;
    }
}

/// acc + the four u8 x s8 products of each lane (x unsigned, w signed), wrapping.
inline fn dpbusd(acc: I, x: I, w: I) I {
    if (!vnni_available) unreachable;
    return asm ("vpdpbusd %[w], %[x], %[acc]"
        : [acc] "=v" (-> I),
        : [x] "v" (x),
          [w] "v" (w),
          [in] "0" (acc),
    );
}

// ---- int8 tests: a plain reference quantiser, exact integer sums ----------------------------

const testing = std.testing;
const test_shapes = mv.test_shapes;

/// The reference quantiser of docs/DESIGN.md, in plain scalar code: scale = max|v| / 127 (0
/// below the smallest normal f32), q = round_half_even(v / scale) clamped to [-127, 127].
fn referenceQuantise(v: []const f32, q: []i8) f32 {
    var max_abs: f32 = 0;
    for (v) |e| max_abs = @max(max_abs, @abs(e));
    if (max_abs < std.math.floatMin(f32)) {
        @memset(q, 0);
        return 0;
    }
    const scale = max_abs / 127;
    for (v, q) |e, *out| out.* = @intFromFloat(std.math.clamp(halfEven(e / scale), -127, 127));
    return scale;
}

/// Round half to even, written from the definition.
fn halfEven(t: f32) f32 {
    const below = @floor(t);
    const frac = t - below;
    if (frac < 0.5) return below;
    if (frac > 0.5) return below + 1;
    return if (@mod(below, 2) == 0) below else below + 1;
}

/// Activations: the same with the f32 product x * (127 / max|x|) in place of x / scale, and
/// zeros below 2^-121, where 127 / max|x| would overflow.
fn referenceQuantiseInput(x: []const f32, q: []i8) f32 {
    var max_abs: f32 = 0;
    for (x) |e| max_abs = @max(max_abs, @abs(e));
    if (max_abs < 0x1p-121) {
        @memset(q, 0);
        return 0;
    }
    const inv = 127 / max_abs;
    for (x, q) |e, *out| out.* = @intFromFloat(std.math.clamp(halfEven(e * inv), -127, 127));
    return max_abs / 127;
}

const Int8Case = struct {
    w: []f32,
    b: []f32,
    x: []f32,
    wp: []f32,
    bp: []f32,
    xq: []f32,
};

fn int8Case(a: std.mem.Allocator, r: std.Random, s: Shape) !Int8Case {
    const c = Int8Case{
        .w = try a.alloc(f32, s.rows * s.cols),
        .b = try a.alloc(f32, s.rows),
        .x = try a.alloc(f32, s.cols),
        .wp = try a.alloc(f32, s.words()),
        .bp = try a.alloc(f32, padded(s.rows)),
        .xq = try a.alloc(f32, s.inputWords()),
    };
    for (c.w) |*v| v.* = (r.float(f32) - 0.5) * @as(f32, if (r.boolean()) 1 else 1e-3);
    for (c.b) |*v| v.* = r.float(f32) - 0.5;
    for (c.x) |*v| v.* = r.float(f32) * 4 - 2;
    // Rows of zeros and of exact ties (v / scale = k + 0.5) exercise the edges.
    if (s.rows > 2) @memset(c.w[s.cols .. 2 * s.cols], 0);
    if (s.rows > 3) for (c.w[2 * s.cols ..][0..s.cols], 0..) |*v, i| {
        v.* = if (i == 0) 127 else @as(f32, @floatFromInt(i % 7)) - 2.5;
    };
    pack(s, c.w, c.wp);
    packBias(c.b, c.bp);
    return c;
}

test "int8: packing holds the reference quantiser's values, scales and corrections" {
    var arena = std.heap.ArenaAllocator.init(testing.allocator);
    defer arena.deinit();
    const a = arena.allocator();
    var rng = std.Random.DefaultPrng.init(8);
    for (test_shapes) |shape| {
        const s = Shape{ .rows = shape[0], .cols = shape[1], .weight_type = .int8 };
        const c = try int8Case(a, rng.random(), s);
        const q = try a.alloc(i8, s.cols);
        for (0..s.rows) |row| {
            const scale = referenceQuantise(c.w[row * s.cols ..][0..s.cols], q);
            var sum: i32 = 0;
            for (q, 0..) |want, col| {
                try testing.expectEqual(want, s.getQ(c.wp, row, col));
                sum += want;
            }
            const held_scale, const correction = s.rowFooter(c.wp, row);
            try testing.expectEqual(scale, held_scale);
            try testing.expectEqual(128 * sum, correction);
        }
    }
    // Ties go to even: 2.5 -> 2, 3.5 -> 4, -2.5 -> -2 (row scale 127 / 127 = 1).
    try testing.expectEqual(@as(i8, 2), quantiseWeight(2.5, 1));
    try testing.expectEqual(@as(i8, 4), quantiseWeight(3.5, 1));
    try testing.expectEqual(@as(i8, -2), quantiseWeight(-2.5, 1));
    try testing.expectEqual(@as(i8, 127), quantiseWeight(127, 1));
}

test "int8: quantiseInput matches the reference, handles zero, tiny and non-finite x" {
    var rng = std.Random.DefaultPrng.init(9);
    const r = rng.random();
    var x: [67]f32 = undefined;
    var xq: [padded(17)]f32 = undefined;
    var q: [67]i8 = undefined;
    for (0..50) |round| {
        for (&x) |*v| v.* = (r.float(f32) - 0.5) * @as(f32, @floatFromInt(round + 1));
        // Exact ties: with max 127, x * 1 = k + 0.5.
        x[0] = 127;
        x[1] = 2.5;
        x[2] = -3.5;
        const n = 1 + round % x.len;
        const sx = quantiseInput(x[0..n], &xq);
        try testing.expectEqual(referenceQuantiseInput(x[0..n], q[0..n]), sx);
        const bytes: [*]const u8 = @ptrCast(&xq);
        for (q[0..n], 0..) |want, i| try testing.expectEqual(@as(i32, want) + 128, bytes[i]);
        for (n..xq.len * 4) |i| try testing.expectEqual(@as(u8, 128), bytes[i]);
    }
    const zeros: [5]f32 = @splat(0);
    try testing.expectEqual(@as(f32, 0), quantiseInput(&zeros, xq[0..2]));
    const tiny: [2]f32 = .{ 1e-39, -1e-40 }; // subnormal: held as zero
    try testing.expectEqual(@as(f32, 0), quantiseInput(&tiny, xq[0..1]));
    const bad: [3]f32 = .{ 1, std.math.inf(f32), 2 };
    try testing.expect(std.math.isNan(quantiseInput(&bad, xq[0..1])));
    const nan: [3]f32 = .{ 1, std.math.nan(f32), 2 };
    try testing.expect(std.math.isNan(quantiseInput(&nan, xq[0..1])));
}

test "int8: an input too small for 127 / max|x| to be finite quantises to zeros" {
    // Below 127 / floatMax (about 2^-121), 127 / max|x| overflows: 0 * inf made the zeros
    // NaN, which the clamp turned into +127, and every other element became +-127.
    var xq: [1]f32 = undefined;
    const bytes: *const [4]u8 = @ptrCast(&xq);
    const tiny = [4]f32{ 1e-37, 0, -5e-38, 2e-38 };
    try testing.expectEqual(@as(f32, 0), quantiseInput(&tiny, &xq));
    try testing.expectEqual([4]u8{ 128, 128, 128, 128 }, bytes.*);
    // From 2^-121 up, 127 / max|x| is finite and x quantises as usual (ties to even).
    const smallest = [4]f32{ 0x1p-121, 0, -0x1p-122, 0x1p-123 };
    try testing.expectEqual(@as(f32, 0x1p-121 / 127.0), quantiseInput(&smallest, &xq));
    try testing.expectEqual([4]u8{ 128 + 127, 128, 128 - 64, 128 + 32 }, bytes.*);
    var q: [4]i8 = undefined;
    _ = referenceQuantiseInput(&smallest, &q);
    try testing.expectEqual([4]i8{ 127, 0, -64, 32 }, q);
}

/// y = f32(sum q_w q_x) * (sx * scale) + b from the reference quantiser, f32 operations in
/// the kernel's order: the generic and VNNI kernels must give exactly this.
fn int8Expected(s: Shape, c: Int8Case, y: []f32, a: std.mem.Allocator) !void {
    const qx = try a.alloc(i8, s.cols);
    const qw = try a.alloc(i8, s.cols);
    const sx = referenceQuantiseInput(c.x, qx);
    for (y, 0..) |*out, row| {
        const sw = referenceQuantise(c.w[row * s.cols ..][0..s.cols], qw);
        var acc: i64 = 0;
        for (qw, qx) |wv, xv| acc += @as(i64, wv) * xv;
        const sums: f32 = @floatFromInt(acc);
        out.* = simd.madd(sums, sx * sw, c.b[row]);
    }
}

test "int8: generic and VNNI kernels give exactly the reference's integer sums and outputs" {
    var arena = std.heap.ArenaAllocator.init(testing.allocator);
    defer arena.deinit();
    const a = arena.allocator();
    var rng = std.Random.DefaultPrng.init(10);
    const shapes = test_shapes ++ [_][2]usize{ .{ 300, 1000 }, .{ 40, 4 }, .{ 130, 5 } };
    for (shapes) |shape| {
        const s = Shape{ .rows = shape[0], .cols = shape[1], .weight_type = .int8 };
        const c = try int8Case(a, rng.random(), s);
        const want = try a.alloc(f32, s.rows);
        try int8Expected(s, c, want, a);
        const y = try a.alloc(f32, padded(s.rows));
        const sx = quantiseInput(c.x, c.xq);
        const kernels: []const Kernel = if (vnni_available) &.{ .generic, .vnni } else &.{.generic};
        for (kernels) |k| {
            @memset(y, std.math.nan(f32));
            switch (k) {
                inline else => |kc| {
                    matvecInt8(s, c.wp.ptr, c.bp.ptr, @ptrCast(c.xq.ptr), sx, y, kc);
                },
            }
            try testing.expectEqualSlices(f32, want, y[0..s.rows]);
            for (y[s.rows..]) |pad| try testing.expectEqual(0, pad);
        }
        // The public entry (default kernel), rows one at a time through matmul, and a y of
        // exactly `rows` floats.
        const exact = try a.alloc(f32, s.rows + 1);
        exact[s.rows] = 42;
        matvec(s, c.wp, c.bp, c.x, exact[0..s.rows], c.xq);
        try testing.expectEqualSlices(f32, want, exact[0..s.rows]);
        try testing.expectEqual(42, exact[s.rows]);
        const xb = try a.alloc(f32, 2 * s.cols);
        @memcpy(xb[0..s.cols], c.x);
        @memcpy(xb[s.cols..], c.x);
        const yb = try a.alloc(f32, 2 * s.rows);
        matmul(s, c.wp, c.bp, xb, yb, 2, c.xq);
        try testing.expectEqualSlices(f32, want, yb[0..s.rows]);
        try testing.expectEqualSlices(f32, want, yb[s.rows..]);
    }
}

test "int8: the largest sums stay exact at the column limit's rate" {
    // Every weight and input at +-127: |sum| = 127 * 127 * cols, the most a row can reach.
    var arena = std.heap.ArenaAllocator.init(testing.allocator);
    defer arena.deinit();
    const a = arena.allocator();
    const s = Shape{ .rows = 3, .cols = 4099, .weight_type = .int8 };
    const w = try a.alloc(f32, s.rows * s.cols);
    for (w, 0..) |*v, i| v.* = if (i / s.cols == 1) -1 else 1;
    const x = try a.alloc(f32, s.cols);
    @memset(x, 1);
    const wp = try a.alloc(f32, s.words());
    pack(s, w, wp);
    const bp: [padded(3)]f32 = @splat(0);
    const xq = try a.alloc(f32, s.inputWords());
    var y: [3]f32 = undefined;
    matvec(s, wp, &bp, x, &y, xq);
    // acc = +-127^2 * cols, then * (1/127) * (1/127): the f32 steps round a little.
    for (y, [_]f32{ 1, -1, 1 }) |got, sign| {
        try testing.expectApproxEqRel(sign * @as(f32, 4099), got, 1e-6);
    }
}

test "int8: the column limit keeps the exact sum within i32" {
    try testing.expect(int8_cols_max * 127 * 127 <= std.math.maxInt(i32));
    try testing.expect((int8_cols_max + 1) * 127 * 127 > std.math.maxInt(i32));
}
