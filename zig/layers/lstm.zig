//! LSTM layer (kind 2): `z = Wx x + Wh h + b`, gates i, f, g, o; `c' = f c + i g`,
//! `h' = o tanh(c')`. One fused matrix-vector over [x, h]: at pack time the four gate rows of
//! each group of `lanes` hidden units are interleaved into one block of four panels (matvec.zig),
//! so a block's accumulators hold i, f, g, o for those units and the cell update runs in
//! registers right after the block is summed.
//!
//! weights: packed [groups][in + H][4][lanes], then bias [groups][4][lanes]
//! state:   h [Hp], c [Hp] (Hp = H rounded up to lanes; padding stays 0)
//! scratch: h' [Hp] (h must stay intact until every block has read it)
const std = @import("std");
const desc = @import("desc.zig");
const act = @import("act.zig");
const mv = @import("matvec.zig");
const simd = @import("../simd.zig");

const LayerDesc = desc.LayerDesc;
const lanes = mv.lanes;
const V = mv.V;
const gates = 4;

pub fn check(d: *const LayerDesc) ?[]const u8 {
    std.debug.assert(d.kind == .lstm);
    if (d.act != .linear) return "act must be 0 (linear): this kind has no fused activation";
    // Bounds the packed size (padding included) so that no size computed below overflows,
    // even with a 32-bit usize; the model's plan then applies the 1 GiB arena limit.
    const h: u64 = d.out;
    if (gates * (h + lanes) * (d.in + h + 2) > desc.tensor_elems_max) {
        return "4 * out * (in + out) must be at most 2^30 weights";
    }
    return null;
}

pub fn tensorLens(d: *const LayerDesc, lens: *[desc.tensors_max]u32) u8 {
    lens[0] = gates * d.out * d.in;
    lens[1] = gates * d.out * d.out;
    lens[2] = gates * d.out;
    return 3;
}

const Layout = struct {
    in: usize,
    hidden: usize,
    groups: usize,
    /// Columns of the fused matrix: x then h.
    cols: usize,
    bias_at: usize,

    fn of(d: *const LayerDesc) Layout {
        const groups = mv.padded(d.out) / lanes;
        const cols = @as(usize, d.in) + d.out;
        return .{
            .in = d.in,
            .hidden = d.out,
            .groups = groups,
            .cols = cols,
            .bias_at = groups * gates * lanes * cols,
        };
    }

    fn hiddenPadded(l: Layout) usize {
        return l.groups * lanes;
    }

    /// Index of gate q's row for hidden unit n, column col, in the packed matrix.
    fn weightAt(l: Layout, q: usize, n: usize, col: usize) usize {
        const block = (n / lanes) * gates * lanes * l.cols;
        return block + (col * gates + q) * lanes + n % lanes;
    }

    fn biasAt(l: Layout, q: usize, n: usize) usize {
        return l.bias_at + ((n / lanes) * gates + q) * lanes + n % lanes;
    }
};

pub fn sizes(d: *const LayerDesc, max_batch: u32) desc.Sizes {
    _ = max_batch; // model.zig runs stateful layers one row at a time
    const l = Layout.of(d);
    const hp = l.hiddenPadded();
    return .{ .weights = l.bias_at + l.groups * gates * lanes, .state = 2 * hp, .scratch = hp };
}

pub fn pack(d: *const LayerDesc, tensors: []const []const f32, weights: []f32) void {
    const l = Layout.of(d);
    const wx, const wh, const b = .{ tensors[0], tensors[1], tensors[2] };
    std.debug.assert(wx.len == gates * l.hidden * l.in and wh.len == gates * l.hidden * l.hidden);
    std.debug.assert(weights.len == sizes(d, 1).weights);
    @memset(weights, 0);
    for (0..gates) |q| for (0..l.hidden) |n| {
        const row = q * l.hidden + n;
        for (wx[row * l.in ..][0..l.in], 0..) |v, i| weights[l.weightAt(q, n, i)] = v;
        const hrow = wh[row * l.hidden ..][0..l.hidden];
        for (hrow, l.in..) |v, col| weights[l.weightAt(q, n, col)] = v;
        weights[l.biasAt(q, n)] = b[row];
    };
}

pub fn forward(
    d: *const LayerDesc,
    weights: []const f32,
    state: []f32,
    scratch: []f32,
    x: []const f32,
    y: []f32,
) void {
    const l = Layout.of(d);
    const hp = l.hiddenPadded();
    std.debug.assert(x.len == l.in and y.len >= l.hidden);
    std.debug.assert(state.len == 2 * hp and scratch.len >= hp);
    std.debug.assert(weights.len == l.bias_at + l.groups * gates * lanes);
    const h = state[0..hp];
    const c = state[hp..][0..hp];
    const h_next = scratch[0..hp];
    for (0..l.groups) |u| {
        var acc: [gates]V = undefined;
        inline for (0..gates) |q| acc[q] = simd.load(weights, l.bias_at + (u * gates + q) * lanes);
        const block = weights[u * gates * lanes * l.cols ..].ptr;
        mv.accumulate(gates, block, x, &acc);
        mv.accumulate(gates, block + l.in * gates * lanes, h[0..l.hidden], &acc);
        const i = act.sigmoidVec(acc[0]);
        const f = act.sigmoidVec(acc[1]);
        const g = act.tanhVec(acc[2]);
        const o = act.sigmoidVec(acc[3]);
        const c_next = mv.madd(f, simd.load(c, u * lanes), i * g);
        simd.store(c, u * lanes, c_next);
        simd.store(h_next, u * lanes, o * act.tanhVec(c_next));
    }
    @memcpy(h, h_next);
    @memcpy(y[0..l.hidden], h_next[0..l.hidden]);
}

// ---- tests against a naive f64 step --------------------------------------------------------

fn sigmoid64(v: f64) f64 {
    return 1 / (1 + @exp(-v));
}

/// One LSTM step in f64 on the unpacked tensors; h and c are updated in place.
fn referenceStep(
    in: usize,
    hidden: usize,
    t: []const []const f32,
    x: []const f64,
    h: []f64,
    c: []f64,
) void {
    var z: [gates * 64]f64 = undefined;
    for (0..gates * hidden) |r| {
        var s: f64 = t[2][r];
        for (0..in) |i| s += @as(f64, t[0][r * in + i]) * x[i];
        for (0..hidden) |j| s += @as(f64, t[1][r * hidden + j]) * h[j];
        z[r] = s;
    }
    for (0..hidden) |n| {
        const i = sigmoid64(z[n]);
        const f = sigmoid64(z[hidden + n]);
        const g = std.math.tanh(z[2 * hidden + n]);
        const o = sigmoid64(z[3 * hidden + n]);
        c[n] = f * c[n] + i * g;
        h[n] = o * std.math.tanh(c[n]);
    }
}

fn expectSteps(in: u32, hidden: u32, steps: usize) !void {
    const gpa = std.testing.allocator;
    var arena = std.heap.ArenaAllocator.init(gpa);
    defer arena.deinit();
    const a = arena.allocator();
    var rng = std.Random.DefaultPrng.init(in * 1000 + hidden);
    const r = rng.random();
    const d = LayerDesc{
        .kind = .lstm,
        .act = .linear,
        .in = in,
        .out = hidden,
        .p = @splat(0),
        .f = @splat(0),
    };
    try std.testing.expect(check(&d) == null);
    var lens: [desc.tensors_max]u32 = undefined;
    const count = tensorLens(&d, &lens);
    const tensors = try a.alloc([]f32, count);
    for (tensors, lens[0..count]) |*t, len| {
        t.* = try a.alloc(f32, len);
        for (t.*) |*v| v.* = (r.float(f32) - 0.5) * 1.2;
    }
    const s = sizes(&d, 1);
    const weights = try a.alloc(f32, s.weights);
    const state = try a.alloc(f32, s.state);
    const scratch = try a.alloc(f32, s.scratch);
    pack(&d, @ptrCast(tensors), weights);
    @memset(state, 0);
    const h64 = try a.alloc(f64, hidden);
    const c64 = try a.alloc(f64, hidden);
    @memset(h64, 0);
    @memset(c64, 0);
    const x = try a.alloc(f32, in);
    const x64 = try a.alloc(f64, in);
    const y = try a.alloc(f32, hidden);
    for (0..steps) |_| {
        for (x, x64) |*v, *w| {
            v.* = (r.float(f32) - 0.5) * 4;
            w.* = v.*;
        }
        forward(&d, weights, state, scratch, x, y);
        referenceStep(in, hidden, @ptrCast(tensors), x64, h64, c64);
        // f32 sums of up to 66 products plus the activations' ~1e-7 error, over several steps.
        for (h64, y) |want, got| try std.testing.expectApproxEqAbs(want, got, 5e-6);
        for (c64, state[mv.padded(hidden)..][0..hidden]) |want, got| {
            try std.testing.expectApproxEqAbs(want, got, 5e-6);
        }
    }
}

test "lstm: matches an f64 reference over several steps on odd sizes" {
    const dims = [_]u32{ 1, 3, 17, 33 };
    for (dims) |in| for (dims) |hidden| try expectSteps(in, hidden, 6);
}

test "lstm: check refuses a fused activation and sizes past 2^30 weights" {
    const d = LayerDesc{
        .kind = .lstm,
        .act = .linear,
        .in = 65536,
        .out = 65536,
        .p = @splat(0),
        .f = @splat(0),
    };
    const msg = "4 * out * (in + out) must be at most 2^30 weights";
    try std.testing.expectEqualStrings(msg, check(&d).?);
    var tanh_act = d;
    tanh_act.in = 3;
    tanh_act.out = 3;
    tanh_act.act = .tanh;
    try std.testing.expect(check(&tanh_act) != null);
}
