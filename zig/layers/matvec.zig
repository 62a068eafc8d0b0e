//! Batch-1 matrix-vector products over weights repacked into row panels (NOTES.md, "Matrix-vector
//! kernels"). A panel holds `lanes` rows; up to `block_panels` panels are interleaved column by
//! column, so the kernel reads one linear stream, broadcasts x[i] once per column and keeps one
//! accumulator per panel (twice that, split by column parity, to hide the FMA latency).
//!
//! Layout of a packed [rows][cols] matrix: panels p = 0..ceil(rows/lanes), grouped in blocks of
//! `block_panels` (the last block may hold fewer, np). Row r = p*lanes + l, column i lives at
//! `block_start + (i*np + p%block_panels)*lanes + l`; rows past `rows` are zero.
const std = @import("std");
const builtin = @import("builtin");
const simd = @import("../simd.zig");

pub const lanes = simd.lanes;
pub const V = simd.V;
pub const block_panels = 4;

/// a*b + c, fused where the target has FMA; elsewhere `@mulAdd` would become a call per lane.
pub inline fn madd(a: anytype, b: @TypeOf(a), c: @TypeOf(a)) @TypeOf(a) {
    const fused = switch (builtin.cpu.arch) {
        .x86_64, .x86 => std.Target.x86.featureSetHas(builtin.cpu.features, .fma),
        .aarch64 => true,
        else => false,
    };
    return if (fused) @mulAdd(@TypeOf(a), a, b, c) else a * b + c;
}

/// `n` rounded up to whole vectors.
pub fn padded(n: usize) usize {
    return (n + lanes - 1) / lanes * lanes;
}

/// Floats a packed [rows][cols] matrix takes.
pub fn packedLen(rows: usize, cols: usize) usize {
    return padded(rows) * cols;
}

/// Where packed row `r`, column 0 lands, and the stride between its columns.
pub const Slot = struct { at: usize, stride: usize };

/// The slot of row `r` in a packed [rows][cols] matrix; column i is at `at + i * stride`.
pub fn slot(rows: usize, cols: usize, r: usize) Slot {
    std.debug.assert(r < rows);
    const panels = padded(rows) / lanes;
    const p = r / lanes;
    const block = p / block_panels;
    const np: usize = @min(block_panels, panels - block * block_panels);
    const start = block * block_panels * lanes * cols;
    return .{ .at = start + (p % block_panels) * lanes + r % lanes, .stride = np * lanes };
}

/// Packs row-major `w` [rows][cols] into `dst` [packedLen(rows, cols)].
pub fn pack(w: []const f32, rows: usize, cols: usize, dst: []f32) void {
    std.debug.assert(w.len == rows * cols);
    std.debug.assert(dst.len == packedLen(rows, cols));
    @memset(dst, 0);
    for (0..rows) |r| packRow(w[r * cols ..][0..cols], slot(rows, cols, r), 0, dst);
}

/// Writes `src` into a packed row's columns `col0..col0 + src.len`.
pub fn packRow(src: []const f32, s: Slot, col0: usize, dst: []f32) void {
    for (src, col0..) |v, i| dst[s.at + i * s.stride] = v;
}

/// Copies `b` [rows] into `dst` [padded(rows)], zeroing the padding.
pub fn packBias(b: []const f32, dst: []f32) void {
    std.debug.assert(dst.len == padded(b.len));
    @memset(dst, 0);
    @memcpy(dst[0..b.len], b);
}

/// acc[j] += sum_i x[i] * panel_j[i] over a block of `np` panels whose columns start at `w`.
pub inline fn accumulate(comptime np: usize, w: [*]const f32, x: []const f32, acc: *[np]V) void {
    const step = np * lanes;
    var even = acc.*;
    var odd: [np]V = @splat(@splat(0));
    var i: usize = 0;
    var o: usize = 0;
    while (i + 2 <= x.len) : (i += 2) {
        const x0: V = @splat(x[i]);
        const x1: V = @splat(x[i + 1]);
        inline for (0..np) |j| {
            even[j] = madd(x0, w[o + j * lanes ..][0..lanes].*, even[j]);
            odd[j] = madd(x1, w[o + step + j * lanes ..][0..lanes].*, odd[j]);
        }
        o += 2 * step;
    }
    if (i < x.len) {
        const x0: V = @splat(x[i]);
        inline for (0..np) |j| even[j] = madd(x0, w[o + j * lanes ..][0..lanes].*, even[j]);
    }
    inline for (0..np) |j| acc[j] = even[j] + odd[j];
}

/// y[0..padded(rows)] = W x + b, W packed by `pack`, b by `packBias`.
pub fn matvec(w: []const f32, b: []const f32, rows: usize, x: []const f32, y: []f32) void {
    const cols = x.len;
    std.debug.assert(w.len == packedLen(rows, cols));
    std.debug.assert(b.len == padded(rows) and y.len >= padded(rows));
    const panels = padded(rows) / lanes;
    const whole = panels / block_panels;
    for (0..whole) |k| runBlock(block_panels, w, b, k, x, y);
    switch (panels - whole * block_panels) {
        inline 1...block_panels - 1 => |np| runBlock(np, w, b, whole, x, y),
        else => {},
    }
}

fn runBlock(
    comptime np: usize,
    w: []const f32,
    b: []const f32,
    k: usize,
    x: []const f32,
    y: []f32,
) void {
    const first = k * block_panels * lanes;
    var acc: [np]V = undefined;
    inline for (0..np) |j| acc[j] = simd.load(b, first + j * lanes);
    accumulate(np, w[first * x.len ..].ptr, x, &acc);
    inline for (0..np) |j| simd.store(y, first + j * lanes, acc[j]);
}

/// Naive f64 reference for tests: y = W x + b with row-major W.
pub fn reference(w: []const f32, b: []const f32, x: []const f64, y: []f64) void {
    for (y, 0..) |*out, r| {
        var s: f64 = b[r];
        for (x, 0..) |xi, i| s += @as(f64, w[r * x.len + i]) * xi;
        out.* = s;
    }
}

test "matvec: matches the f64 reference on odd shapes" {
    const gpa = std.testing.allocator;
    var rng = std.Random.DefaultPrng.init(7);
    const r = rng.random();
    const shapes = [_][2]usize{
        .{ 1, 1 },
        .{ 3, 17 },
        .{ 17, 3 },
        .{ 33, 33 },
        .{ 100, 5 },
        .{ 129, 64 },
    };
    for (shapes) |shape| {
        const rows, const cols = shape;
        const w = try gpa.alloc(f32, rows * cols);
        defer gpa.free(w);
        const b = try gpa.alloc(f32, rows);
        defer gpa.free(b);
        const x = try gpa.alloc(f32, cols);
        defer gpa.free(x);
        for (w) |*v| v.* = r.float(f32) - 0.5;
        for (b) |*v| v.* = r.float(f32) - 0.5;
        for (x) |*v| v.* = r.float(f32) * 2 - 1;
        const wp = try gpa.alloc(f32, packedLen(rows, cols));
        defer gpa.free(wp);
        const bp = try gpa.alloc(f32, padded(rows));
        defer gpa.free(bp);
        const y = try gpa.alloc(f32, padded(rows));
        defer gpa.free(y);
        pack(w, rows, cols, wp);
        packBias(b, bp);
        matvec(wp, bp, rows, x, y);
        const x64 = try gpa.alloc(f64, cols);
        defer gpa.free(x64);
        for (x64, x) |*a, v| a.* = v;
        const want = try gpa.alloc(f64, rows);
        defer gpa.free(want);
        reference(w, b, x64, want);
        // Sums of `cols` products of magnitude <= 0.5 in f32: a few ulps of the largest partials.
        for (want, y[0..rows]) |e, got| try std.testing.expectApproxEqAbs(e, got, 1e-5);
        for (y[rows..]) |pad| try std.testing.expectEqual(0, pad);
    }
}
