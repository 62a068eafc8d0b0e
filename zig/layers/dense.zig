//! Dense layer: `y = act(W x + b)`. W is packed for matvec.zig, the kernel every layer
//! shares, as f32, bf16 or int8 (the layer's weight_type); the bias stays f32, padded to whole
//! vectors. The scratch holds the quantised input at int8 (one row at a time). A sparse dense
//! layer (image word 15 = 3, p1 = the nonzero count of W) holds W as compressed sparse rows
//! and runs sparse.zig's kernel instead (pruned layers where that is faster).
const std = @import("std");
const desc = @import("desc.zig");
const act = @import("act.zig");
const mv = @import("matvec.zig");
const sparse = @import("sparse.zig");

const LayerDesc = desc.LayerDesc;

pub fn check(d: *const LayerDesc) ?[]const u8 {
    if (d.p[0] > 1) return "p0 (bias) must be 0 or 1";
    if (!desc.elemsFit(&.{ d.in, d.out })) return "in * out must be at most 2^30 weights";
    if (d.sparse and @as(u64, d.p[1]) > @as(u64, d.in) * d.out) {
        return "p1 (nonzeros of a sparse W) must be at most in * out";
    }
    return null;
}

/// A sparse layer's p1 must be the true nonzero count of W (the held size depends on it).
pub fn checkTensors(d: *const LayerDesc, tensors: []const []const f32) ?[]const u8 {
    if (!d.sparse) return null;
    if (sparse.countNonzeros(tensors[0]) != d.p[1]) {
        return "p1 (nonzeros of a sparse W) differs from the number of nonzero entries of W";
    }
    return null;
}

pub fn tensorLens(d: *const LayerDesc, lens: *[desc.tensors_max]u32) u8 {
    lens[0] = d.out * d.in;
    if (d.p[0] == 0) return 1;
    lens[1] = d.out;
    return 2;
}

/// Tensors that hold weight matrices (bit t for tensor t): stored as `weight_type`.
pub fn matrixTensors(d: *const LayerDesc) u16 {
    _ = d;
    return 0b1;
}

pub fn matrixGeometry(d: *const LayerDesc) desc.MatrixGeometry {
    return .{ .rows = d.out, .cols_max = d.in };
}

fn shape(d: *const LayerDesc) mv.Shape {
    return .{ .rows = d.out, .cols = d.in, .weight_type = d.weight_type };
}

/// Words of the held matrix: packed panels, or compressed sparse rows.
fn matrixWords(d: *const LayerDesc) usize {
    return if (d.sparse) sparse.words(d.out, d.p[1]) else shape(d).words();
}

pub fn sizes(d: *const LayerDesc, max_batch: u32) desc.Sizes {
    _ = max_batch;
    const s = shape(d);
    return .{ .weights = matrixWords(d) + mv.padded(d.out), .state = 0, .scratch = s.inputWords() };
}

pub fn pack(d: *const LayerDesc, tensors: []const []const f32, weights: []f32) void {
    const s = shape(d);
    std.debug.assert(weights.len == sizes(d, 1).weights);
    const n = matrixWords(d);
    if (d.sparse) {
        sparse.pack(d.out, d.in, d.p[1], tensors[0], weights[0..n]);
    } else {
        mv.pack(s, tensors[0], weights[0..n]);
    }
    const bias = weights[n..];
    @memset(bias, 0);
    if (d.p[0] == 1) @memcpy(bias[0..d.out], tensors[1]);
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
    const s = shape(d);
    const xq = scratch[0..s.inputWords()];
    if (d.sparse) {
        const n = matrixWords(d);
        sparse.matvec(d.out, d.p[1], weights[0..n], weights[n..], x[0..d.in], y[0..d.out]);
    } else {
        mv.matvec(s, weights[0..s.words()], weights[s.words()..], x[0..d.in], y[0..d.out], xq);
    }
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
    const s = shape(d);
    const xq = scratch[0..s.inputWords()];
    if (d.sparse) {
        const n = matrixWords(d);
        for (0..batch) |r| {
            const xr = x[r * d.in ..][0..d.in];
            sparse.matvec(d.out, d.p[1], weights[0..n], weights[n..], xr, y[r * d.out ..][0..d.out]);
        }
    } else {
        mv.matmul(s, weights[0..s.words()], weights[s.words()..], x, y, batch, xq);
    }
    for (0..batch) |r| act.apply(d.act, y[r * d.out ..][0..d.out]);
}

const testing = std.testing;
const helpers = @import("../test.zig");

/// y = act(W x + b) in f64 with W rounded as d.weight_type stores it, act limited to the two
/// the tests use.
fn naive(d: *const LayerDesc, w: []const f32, b: ?[]const f32, x: []const f32, y: []f64) void {
    for (0..d.out) |o| {
        var s: f64 = if (b) |bias| bias[o] else 0;
        for (0..d.in) |i| {
            const wv = w[o * d.in + i];
            const stored = if (d.weight_type == .bf16) mv.roundBf16(wv) else wv;
            s += @as(f64, stored) * x[i];
        }
        y[o] = switch (d.act) {
            .linear => s,
            .relu => @max(s, 0),
            else => unreachable,
        };
    }
}

test "dense: batch 1 and batch n match a naive loop on odd sizes, f32 and bf16" {
    const a = testing.allocator;
    var prng = std.Random.DefaultPrng.init(17);
    const rng = prng.random();
    const widths = [_]u32{ 1, 3, 17, 33, 64 };
    const types = [_]desc.WeightType{ .f32, .bf16 };
    for (widths) |in| for (widths) |out| for ([_]u32{ 0, 1 }) |bias| for (types) |wt| {
        const d = LayerDesc{
            .kind = .dense,
            .act = if (bias == 1) .relu else .linear,
            .in = in,
            .out = out,
            .p = helpers.params(bias, 0, 0),
            .f = .{ 0, 0 },
            .weight_type = wt,
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

// ---- training -------------------------------------------------------------------------------

const common = @import("../train/common.zig");

/// Training over rows = batch * seq positions, params in the canonical layout (`W` [out][in],
/// then `b` [out] if bias). QAT (f32): each row through the int8 inference kernel, with the
/// weights packed from the current parameters, exactly as `forward` at weight_type int8.
pub fn Train(comptime T: type) type {
    return struct {
        const G = common.Gemm(T);
        const A = act.Grad(T);
        const Ctx = common.Ctx(T);

        pub fn savedLen(d: *const LayerDesc, c: Ctx) usize {
            return if (A.needsPre(d.act)) c.rows() * d.out else 0;
        }

        fn qatShape(d: *const LayerDesc) mv.Shape {
            return .{ .rows = d.out, .cols = d.in, .weight_type = .int8 };
        }

        pub fn scratchLen(d: *const LayerDesc, c: Ctx) usize {
            if (!c.qat) return 0;
            const s = qatShape(d);
            return s.words() + mv.padded(d.out) + s.inputWords();
        }

        pub fn forward(d: *const LayerDesc, p: []const T, x: []const T, y: []T, saved: []T, c: Ctx) void {
            const rows = c.rows();
            const in: usize = d.in;
            const out: usize = d.out;
            const w = p[0 .. out * in];
            if (T == f32 and c.qat) {
                const s = qatShape(d);
                const packed_w = c.scratch[0..s.words()];
                const bias = c.scratch[s.words()..][0..mv.padded(out)];
                const xq = c.scratch[s.words() + bias.len ..][0..s.inputWords()];
                mv.pack(s, w, packed_w);
                @memset(bias, 0);
                if (d.p[0] == 1) @memcpy(bias[0..out], p[out * in ..][0..out]);
                for (0..rows) |r| {
                    mv.matvec(s, packed_w, bias, x[r * in ..][0..in], y[r * out ..][0..out], xq);
                }
            } else {
                G.nt(rows, out, in, x, in, w, in, y, out, false, c.wt, c.pool);
                if (d.p[0] == 1) G.addBias(rows, out, p[out * in ..], y, out);
            }
            if (A.needsPre(d.act)) @memcpy(saved[0 .. rows * out], y[0 .. rows * out]);
            A.forward(d.act, y[0 .. rows * out], out);
        }

        /// dy (overwritten) -> gradients added to g, and dx (set) when given.
        pub fn backward(
            d: *const LayerDesc,
            p: []const T,
            x: []const T,
            y: []const T,
            saved: []const T,
            dy: []T,
            dx: ?[]T,
            g: []T,
            c: Ctx,
        ) void {
            const rows = c.rows();
            const in: usize = d.in;
            const out: usize = d.out;
            A.backward(d.act, y[0 .. rows * out], saved, dy[0 .. rows * out], out);
            G.tn(rows, out, in, dy, out, x, in, g[0 .. out * in], in, c.pool);
            if (d.p[0] == 1) G.sumRows(rows, out, dy, out, g[out * in ..][0..out]);
            if (dx) |dxv| {
                G.nnSet(rows, out, in, dy, out, p[0 .. out * in], in, dxv, in, c.pool);
            }
        }
    };
}
