//! Sparse f32 matrix-vector product for pruned dense layers (image word 15 = 3, "sparse"):
//! compressed sparse rows. A [rows][cols] matrix with `nnz` nonzero entries is held in f32
//! words as
//!   rows + 1 row offsets (u32 bits): row r's entries are offsets[r] .. offsets[r + 1]
//!   nnz values (f32), row by row, columns ascending
//!   ceil(nnz / 2) words of u16 column indices (entry k in half-word k)
//! `y[r] = sum over row r's entries of value * x[column] + bias[r]`: the same sum as the dense
//! kernel's up to the order of the f32 additions. Entries that are 0 (either sign) are not
//! stored; where x holds an infinity or NaN the result is what the dense product gives (an
//! output whose row has a zero weight at such a column is NaN, as 0 * inf is), so the layer
//! stays a drop-in for its dense form. Columns must be at most 65536 (u16 indices).
const std = @import("std");
const simd = @import("../simd.zig");

/// The most columns a u16 index reaches (every width is at most 65536).
pub const cols_max: usize = 65536;

/// f32 words the matrix takes.
pub fn words(rows: usize, nnz: usize) usize {
    return rows + 1 + nnz + (nnz + 1) / 2;
}

/// Nonzero entries of a dense row-major matrix (-0.0 counts as zero).
pub fn countNonzeros(w: []const f32) usize {
    var n: usize = 0;
    for (w) |v| n += @intFromBool(v != 0);
    return n;
}

/// Bytes the held matrix takes: 4 per value, 2 per index, 4 per row offset.
pub fn heldBytes(rows: u64, nnz: u64) u64 {
    return 6 * nnz + 4 * (rows + 1);
}

const Parts = struct { offsets: []u32, values: []f32, cols: []u16 };

fn parts(rows: usize, nnz: usize, dst: []f32) Parts {
    std.debug.assert(dst.len == words(rows, nnz));
    const offsets: [*]u32 = @ptrCast(dst.ptr);
    const cols: [*]u16 = @ptrCast(dst[rows + 1 + nnz ..].ptr);
    return .{
        .offsets = offsets[0 .. rows + 1],
        .values = dst[rows + 1 ..][0..nnz],
        .cols = cols[0..nnz],
    };
}

fn partsConst(rows: usize, nnz: usize, w: []const f32) struct {
    offsets: []const u32,
    values: []const f32,
    cols: []const u16,
} {
    const p = parts(rows, nnz, @constCast(w));
    return .{ .offsets = p.offsets, .values = p.values, .cols = p.cols };
}

/// Packs the nonzero entries of `w` ([rows][cols], row-major); `nnz` must be their count.
pub fn pack(rows: usize, cols: usize, nnz: usize, w: []const f32, dst: []f32) void {
    std.debug.assert(w.len == rows * cols and cols <= cols_max);
    const p = parts(rows, nnz, dst);
    if (nnz % 2 == 1) dst[dst.len - 1] = 0;
    var k: usize = 0;
    for (0..rows) |r| {
        p.offsets[r] = @intCast(k);
        for (0..cols) |c| {
            const v = w[r * cols + c];
            if (v == 0) continue;
            p.values[k] = v;
            p.cols[k] = @intCast(c);
            k += 1;
        }
    }
    std.debug.assert(k == nnz);
    p.offsets[rows] = @intCast(k);
}

/// Lanes of the gathered products: 8 measured faster than 16 or scalar sums (the gather is a
/// chain of element loads; docs/PRUNING.md).
const gather_lanes = 8;
const G = @Vector(gather_lanes, f32);

/// y[0..rows] = W x + bias[0..rows] for a packed W (`cols` = x.len).
pub fn matvec(rows: usize, nnz: usize, w: []const f32, bias: []const f32, x: []const f32, y: []f32) void {
    std.debug.assert(y.len >= rows and bias.len >= rows and x.len <= cols_max);
    const p = partsConst(rows, nnz, w);
    const xs = x.ptr;
    for (0..rows) |r| {
        var k: usize = p.offsets[r];
        const end: usize = p.offsets[r + 1];
        std.debug.assert(k <= end and end <= nnz);
        var acc: G = @splat(0);
        while (k + gather_lanes <= end) : (k += gather_lanes) {
            var g: G = undefined;
            inline for (0..gather_lanes) |l| g[l] = xs[p.cols[k + l]];
            acc = simd.madd(@as(G, p.values[k..][0..gather_lanes].*), g, acc);
        }
        var s: f32 = @reduce(.Add, acc);
        while (k < end) : (k += 1) s += p.values[k] * xs[p.cols[k]];
        y[r] = s + bias[r];
    }
    if (!allFinite(x)) poisonZeros(rows, p.offsets, p.cols, x, y);
}

fn allFinite(x: []const f32) bool {
    // x - x is 0 for every finite x and NaN for NaN and the infinities; NaN != 0.
    var bad: usize = 0;
    for (x) |v| bad += @intFromBool(v - v != 0);
    return bad == 0;
}

/// The rare path: where x[c] is not finite, a row that does not store column c would have
/// added 0 * x[c] = NaN in the dense product.
fn poisonZeros(rows: usize, offsets: []const u32, cols: []const u16, x: []const f32, y: []f32) void {
    for (x, 0..) |v, c| {
        if (v - v == 0) continue;
        for (0..rows) |r| {
            const row = cols[offsets[r]..offsets[r + 1]];
            if (std.sort.binarySearch(u16, row, @as(u16, @intCast(c)), order) == null) {
                y[r] = std.math.nan(f32);
            }
        }
    }
}

fn order(key: u16, item: u16) std.math.Order {
    return std.math.order(key, item);
}

const testing = std.testing;
const helpers = @import("../test.zig");

test "sparse: matvec equals a float64 dense product on odd sizes and sparsities" {
    const a = testing.allocator;
    var prng = std.Random.DefaultPrng.init(29);
    const rng = prng.random();
    const widths = [_]usize{ 1, 3, 17, 33, 70 };
    const sparsities = [_]f32{ 0, 0.5, 0.9, 1 };
    for (widths) |rows| for (widths) |cols| for (sparsities) |s| {
        const w = try a.alloc(f32, rows * cols);
        defer a.free(w);
        helpers.randomFloats(rng, w, 1);
        for (w) |*v| if (rng.float(f32) < s) {
            v.* = if (rng.boolean()) 0 else -0.0;
        };
        const nnz = countNonzeros(w);
        const held = try a.alloc(f32, words(rows, nnz));
        defer a.free(held);
        pack(rows, cols, nnz, w, held);
        const x = try a.alloc(f32, cols);
        defer a.free(x);
        helpers.randomFloats(rng, x, 2);
        const bias = try a.alloc(f32, rows);
        defer a.free(bias);
        helpers.randomFloats(rng, bias, 1);
        const y = try a.alloc(f32, rows);
        defer a.free(y);
        const want = try a.alloc(f64, rows);
        defer a.free(want);
        for (0..rows) |r| {
            var acc: f64 = bias[r];
            for (0..cols) |c| acc += @as(f64, w[r * cols + c]) * x[c];
            want[r] = acc;
        }
        matvec(rows, nnz, held, bias, x, y);
        try helpers.expectClose(want, y, 1e-5);
    };
}

test "sparse: an infinity or NaN in x gives the dense product's NaNs and infinities" {
    // Row 0 stores column 1 only, row 1 both, row 2 none.
    const w = [_]f32{ 0, 2, 3, -1, 0, 0 };
    var held: [words(3, 3)]f32 = undefined;
    pack(3, 2, 3, &w, &held);
    const bias = [_]f32{ 0.5, 0.5, 0.5 };
    var y: [3]f32 = undefined;
    const inf = std.math.inf(f32);
    matvec(3, 3, &held, &bias, &.{ 1, inf }, &y);
    // Dense: 0 * 1 + 2 * inf = inf; 3 * 1 - inf = -inf; 0 * 1 + 0 * inf = NaN.
    try testing.expectEqual(inf, y[0]);
    try testing.expectEqual(-inf, y[1]);
    try testing.expect(std.math.isNan(y[2]));
    matvec(3, 3, &held, &bias, &.{ inf, 1 }, &y);
    // Row 0 has a zero weight at column 0: NaN; row 1: 3 * inf - 1 = inf.
    try testing.expect(std.math.isNan(y[0]));
    try testing.expectEqual(inf, y[1]);
    try testing.expect(std.math.isNan(y[2]));
}
