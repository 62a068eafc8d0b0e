//! skip: adds the model's input to the previous layer's output, `y[i] = x[i] + input[i]` for
//! i < n (in = out = n <= the model's input_size): the skip connection of guitar-amp models
//! (output plus the input sample) and of residual graphs whose branch starts at the input.
//! It is the one kind that reads the model input, which the generic `forward` signature does
//! not carry, so model.zig calls `add` for it instead of `forward`.
const std = @import("std");
const desc = @import("desc.zig");
const simd = @import("../simd.zig");

const L = simd.lanes;
const LayerDesc = desc.LayerDesc;

pub fn check(d: *const LayerDesc) ?[]const u8 {
    if (d.in != d.out) return "out must equal in";
    return desc.noFusedActivation(d);
}

pub fn tensorLens(d: *const LayerDesc, lens: *[desc.tensors_max]u32) u8 {
    _ = d;
    _ = lens;
    return 0;
}

pub fn sizes(d: *const LayerDesc, max_batch: u32) desc.Sizes {
    _ = d;
    _ = max_batch;
    return .{ .weights = 0, .state = 0, .scratch = 0 };
}

pub fn pack(d: *const LayerDesc, tensors: []const []const f32, weights: []f32) void {
    _ = d;
    std.debug.assert(tensors.len == 0 and weights.len == 0);
}

/// `batch` rows: row r of y is row r of x plus the first n values of row r of `input`
/// (rows of `input_stride` values). y may be x.
pub fn add(
    d: *const LayerDesc,
    input: []const f32,
    input_stride: usize,
    x: []const f32,
    y: []f32,
    batch: u32,
) void {
    const n: usize = d.out;
    std.debug.assert(n <= input_stride and input.len >= input_stride * batch);
    std.debug.assert(x.len >= n * batch and y.len >= n * batch);
    for (0..batch) |r| {
        const a = x[r * n ..][0..n];
        const b = input[r * input_stride ..][0..n];
        const out = y[r * n ..][0..n];
        var i: usize = 0;
        while (i + L <= n) : (i += L) {
            simd.store(out, i, simd.load(a, i) + simd.load(b, i));
        }
        while (i < n) : (i += 1) out[i] = a[i] + b[i];
    }
}

const testing = std.testing;

test "skip adds the first n input values to each row" {
    const d = LayerDesc{ .kind = .skip, .act = .linear, .in = 2, .out = 2, .p = @splat(0), .f = @splat(0) };
    const input = [_]f32{ 1, 2, 3, 10, 20, 30 };
    const x = [_]f32{ 0.5, -0.5, 4, 5 };
    var y: [4]f32 = undefined;
    add(&d, &input, 3, &x, &y, 2);
    try testing.expectEqualSlices(f32, &.{ 1.5, 1.5, 14, 25 }, &y);
    try testing.expect(check(&d) == null);
    var wide = d;
    wide.out = 3;
    try testing.expect(check(&wide) != null);
}
