//! Dense layer: `y = act(W x + b)`. At load, W is repacked into panels of `simd.lanes` rows:
//! element (r, c) lives at `((r / lanes) * cols + c) * lanes + r % lanes`, rows padded with
//! zeros to whole panels, so one broadcast input meets a full vector of outputs. The panel
//! kernels here are shared with conv1d.
const std = @import("std");
const desc = @import("desc.zig");
const act = @import("act.zig");
const simd = @import("../simd.zig");

const L = simd.lanes;
const V = simd.V;
const LayerDesc = desc.LayerDesc;

pub fn check(d: *const LayerDesc) ?[]const u8 {
    if (d.p[0] > 1) return "p0 (bias) must be 0 or 1";
    if (!desc.elemsFit(&.{ d.in, d.out })) return "in * out must be at most 2^30 weights";
    return null;
}

pub fn tensorLens(d: *const LayerDesc, lens: *[desc.tensors_max]u32) u8 {
    lens[0] = d.out * d.in;
    if (d.p[0] == 0) return 1;
    lens[1] = d.out;
    return 2;
}

pub fn sizes(d: *const LayerDesc, max_batch: u32) desc.Sizes {
    _ = max_batch;
    return .{ .weights = panelFloats(d.out, d.in) + simd.roundUp(d.out), .state = 0, .scratch = 0 };
}

pub fn pack(d: *const LayerDesc, tensors: []const []const f32, weights: []f32) void {
    const rows: usize = d.out;
    const cols: usize = d.in;
    std.debug.assert(tensors[0].len == rows * cols);
    const panel_len = panelFloats(rows, cols);
    @memset(weights, 0);
    for (0..rows) |r| {
        for (0..cols) |c| weights[panelIndex(r, c, cols)] = tensors[0][r * cols + c];
    }
    if (d.p[0] == 1) @memcpy(weights[panel_len..][0..rows], tensors[1]);
}

pub fn forward(
    d: *const LayerDesc,
    weights: []const f32,
    state: []f32,
    scratch: []f32,
    x: []const f32,
    y: []f32,
) void {
    _ = state;
    _ = scratch;
    const panel_len = panelFloats(d.out, d.in);
    matVec(weights[0..panel_len], weights[panel_len..], x[0..d.in], y[0..d.out]);
    act.apply(d.act, y[0..d.out]);
}

pub fn forwardBatch(
    d: *const LayerDesc,
    weights: []const f32,
    scratch: []f32,
    x: []const f32,
    y: []f32,
    batch: usize,
) void {
    _ = scratch;
    const panel_len = panelFloats(d.out, d.in);
    matMul(weights[0..panel_len], weights[panel_len..], d.in, d.out, x, y, batch);
    for (0..batch) |r| act.apply(d.act, y[r * d.out ..][0..d.out]);
}

/// Floats taken by a `rows` x `cols` matrix in panels (rows padded to whole panels).
pub fn panelFloats(rows: usize, cols: usize) usize {
    return simd.roundUp(rows) * cols;
}

/// Where element (r, c) of a `cols`-wide matrix lives in the panel layout.
pub inline fn panelIndex(r: usize, c: usize, cols: usize) usize {
    return ((r / L) * cols + c) * L + r % L;
}

/// Panels handled together by matVec: each keeps two accumulators, so eight FMA chains run.
const mv_panels = 4;

/// `y = Wp x + bias` with rows = y.len, cols = x.len. `wp` holds the panels; `bias` must be
/// readable for roundUp(rows) floats (the padding lanes are computed and dropped).
pub fn matVec(wp: []const f32, bias: []const f32, x: []const f32, y: []f32) void {
    const cols = x.len;
    const panels = simd.roundUp(y.len) / L;
    std.debug.assert(wp.len >= panels * L * cols);
    std.debug.assert(bias.len >= panels * L);
    var p: usize = 0;
    while (p + mv_panels <= panels) : (p += mv_panels) {
        matVecPanels(mv_panels, wp.ptr + p * L * cols, bias.ptr + p * L, x, y, p * L);
    }
    switch (panels - p) {
        0 => {},
        inline 1...mv_panels - 1 => |n| {
            matVecPanels(n, wp.ptr + p * L * cols, bias.ptr + p * L, x, y, p * L);
        },
        else => unreachable,
    }
}

fn matVecPanels(
    comptime P: usize,
    w: [*]const f32,
    bias: [*]const f32,
    x: []const f32,
    y: []f32,
    row0: usize,
) void {
    const cols = x.len;
    var acc_even: [P]V = undefined;
    var acc_odd: [P]V = undefined;
    inline for (0..P) |p| {
        acc_even[p] = simd.loadPtr(bias + p * L);
        acc_odd[p] = @splat(0);
    }
    var c: usize = 0;
    while (c + 2 <= cols) : (c += 2) {
        const x_even: V = @splat(x[c]);
        const x_odd: V = @splat(x[c + 1]);
        inline for (0..P) |p| {
            const wc = w + (p * cols + c) * L;
            acc_even[p] = @mulAdd(V, simd.loadPtr(wc), x_even, acc_even[p]);
            acc_odd[p] = @mulAdd(V, simd.loadPtr(wc + L), x_odd, acc_odd[p]);
        }
    }
    if (c < cols) {
        const x_last: V = @splat(x[c]);
        inline for (0..P) |p| {
            acc_even[p] = @mulAdd(V, simd.loadPtr(w + (p * cols + c) * L), x_last, acc_even[p]);
        }
    }
    inline for (0..P) |p| storeRow(y, row0 + p * L, acc_even[p] + acc_odd[p]);
}

/// Stores one panel's outputs at y[row0..], dropping the padding lanes past y.len.
inline fn storeRow(y: []f32, row0: usize, v: V) void {
    if (row0 + L <= y.len) {
        y[row0..][0..L].* = v;
    } else {
        simd.storePartial(y[row0..], v);
    }
}

/// Register block of the batch kernel: mm_rows input rows by mm_panels panels of outputs.
/// 6 x 4 uses 24 accumulators + 4 weight vectors + 1 broadcast of 32 registers; with 16
/// registers 6 x 2 leaves room for the same.
const mm_rows = 6;
const mm_panels = if (simd.many_registers) 4 else 2;

/// `y[b] = Wp x[b] + bias` for `batch` rows; x is batch x cols, y is batch x rows, both dense.
pub fn matMul(
    wp: []const f32,
    bias: []const f32,
    cols: usize,
    rows: usize,
    x: []const f32,
    y: []f32,
    batch: usize,
) void {
    const panels = simd.roundUp(rows) / L;
    std.debug.assert(wp.len >= panels * L * cols);
    std.debug.assert(bias.len >= panels * L);
    std.debug.assert(x.len >= batch * cols and y.len >= batch * rows);
    const m = Mat{ .w = wp.ptr, .bias = bias.ptr, .cols = cols, .rows = rows };
    var b: usize = 0;
    while (b + mm_rows <= batch) : (b += mm_rows) {
        m.rowBlock(mm_rows, x[b * cols ..], y[b * rows ..], panels);
    }
    switch (batch - b) {
        0 => {},
        inline 1...mm_rows - 1 => |n| m.rowBlock(n, x[b * cols ..], y[b * rows ..], panels),
        else => unreachable,
    }
}

const Mat = struct {
    w: [*]const f32,
    bias: [*]const f32,
    cols: usize,
    rows: usize,

    fn rowBlock(m: Mat, comptime R: usize, x: []const f32, y: []f32, panels: usize) void {
        var p: usize = 0;
        while (p + mm_panels <= panels) : (p += mm_panels) m.block(R, mm_panels, x, y, p);
        switch (panels - p) {
            0 => {},
            inline 1...mm_panels - 1 => |n| m.block(R, n, x, y, p),
            else => unreachable,
        }
    }

    /// R rows of x times P panels starting at panel p0, all accumulators in registers.
    fn block(
        m: Mat,
        comptime R: usize,
        comptime P: usize,
        x: []const f32,
        y: []f32,
        p0: usize,
    ) void {
        const cols = m.cols;
        std.debug.assert(x.len >= R * cols and y.len >= (R - 1) * m.rows + m.rows);
        const w = m.w + p0 * L * cols;
        var acc: [R][P]V = undefined;
        inline for (0..P) |p| {
            const b = simd.loadPtr(m.bias + (p0 + p) * L);
            inline for (0..R) |r| acc[r][p] = b;
        }
        for (0..cols) |c| {
            var wv: [P]V = undefined;
            inline for (0..P) |p| wv[p] = simd.loadPtr(w + (p * cols + c) * L);
            inline for (0..R) |r| {
                const xv: V = @splat(x.ptr[r * cols + c]);
                inline for (0..P) |p| acc[r][p] = @mulAdd(V, wv[p], xv, acc[r][p]);
            }
        }
        inline for (0..R) |r| {
            const y_row = y[r * m.rows ..][0..m.rows];
            inline for (0..P) |p| storeRow(y_row, (p0 + p) * L, acc[r][p]);
        }
    }
};

const testing = std.testing;
const helpers = @import("../test.zig");

/// y = act(W x + b) in f64, act limited to the two the tests use.
fn naive(d: *const LayerDesc, w: []const f32, b: ?[]const f32, x: []const f32, y: []f64) void {
    for (0..d.out) |o| {
        var s: f64 = if (b) |bias| bias[o] else 0;
        for (0..d.in) |i| s += @as(f64, w[o * d.in + i]) * x[i];
        y[o] = switch (d.act) {
            .linear => s,
            .relu => @max(s, 0),
            else => unreachable,
        };
    }
}

test "dense: batch 1 and batch n match a naive loop on odd sizes" {
    const a = testing.allocator;
    var prng = std.Random.DefaultPrng.init(17);
    const rng = prng.random();
    const widths = [_]u32{ 1, 3, 17, 33, 64 };
    for (widths) |in| for (widths) |out| for ([_]u32{ 0, 1 }) |bias| {
        const d = LayerDesc{
            .kind = .dense,
            .act = if (bias == 1) .relu else .linear,
            .in = in,
            .out = out,
            .p = helpers.params(bias, 0, 0),
            .f = .{ 0, 0 },
        };
        try testing.expectEqual(@as(?[]const u8, null), check(&d));
        const batch = 13;
        const w = try a.alloc(f32, in * out);
        defer a.free(w);
        var b: [64]f32 = undefined;
        helpers.randomFloats(rng, w, 1);
        helpers.randomFloats(rng, &b, 1);
        const tensors = [_][]const f32{ w, b[0..out] };
        const packed_w = try a.alloc(f32, sizes(&d, batch).weights);
        defer a.free(packed_w);
        pack(&d, tensors[0 .. 1 + bias], packed_w);
        const x = try a.alloc(f32, in * batch);
        defer a.free(x);
        helpers.randomFloats(rng, x, 2);
        var y: [64 * batch]f32 = undefined;
        var want: [64 * batch]f64 = undefined;
        const b_used: ?[]const f32 = if (bias == 1) b[0..out] else null;
        for (0..batch) |r| naive(&d, w, b_used, x[r * in ..][0..in], want[r * out ..][0..out]);
        forward(&d, packed_w, &.{}, &.{}, x[0..in], y[0..out]);
        try helpers.expectClose(want[0..out], y[0..out], 1e-5);
        for ([_]usize{ 1, 2, 6, 7, 13 }) |n| {
            @memset(&y, std.math.nan(f32));
            forwardBatch(&d, packed_w, &.{}, x[0 .. in * n], y[0 .. out * n], n);
            try helpers.expectClose(want[0 .. out * n], y[0 .. out * n], 1e-5);
        }
    };
}
