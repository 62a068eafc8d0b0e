//! GRU layer (kind 3), reset_after as Keras and PyTorch: gates z, r, n;
//! `n = tanh(Wx_n x + bx_n + r * (Wh_n h + bh_n))`, `h' = (1 - z) n + z h`.
//! One pass over [x, h] per group of `lanes` hidden units: the x columns feed three
//! accumulators (z, r, n) and the h columns three more, so `Wh_n h + bh_n` stays separate for
//! the reset gate while z and r simply add the two halves.
//!
//! weights: packed [groups][in + H][3][lanes], then bx [groups][3][lanes], bh [groups][3][lanes]
//! state:   h [Hp] (Hp = H rounded up to lanes; padding stays 0)
//! scratch: h' [Hp]
const std = @import("std");
const desc = @import("desc.zig");
const act = @import("act.zig");
const mv = @import("matvec.zig");
const simd = @import("../simd.zig");

const LayerDesc = desc.LayerDesc;
const lanes = mv.lanes;
const V = mv.V;
const gates = 3;

pub fn check(d: *const LayerDesc) ?[]const u8 {
    std.debug.assert(d.kind == .gru);
    if (d.act != .linear) return "act must be 0 (linear): this kind has no fused activation";
    // Bounds the packed size (padding included) so that no size computed below overflows,
    // even with a 32-bit usize; the model's plan then applies the 1 GiB arena limit.
    const h: u64 = d.out;
    if (gates * (h + lanes) * (d.in + h + 2) > desc.tensor_elems_max) {
        return "3 * out * (in + out) must be at most 2^30 weights";
    }
    return null;
}

pub fn tensorLens(d: *const LayerDesc, lens: *[desc.tensors_max]u32) u8 {
    lens[0] = gates * d.out * d.in;
    lens[1] = gates * d.out * d.out;
    lens[2] = gates * d.out;
    lens[3] = gates * d.out;
    return 4;
}

const Layout = struct {
    in: usize,
    hidden: usize,
    groups: usize,
    cols: usize,
    bx_at: usize,
    bh_at: usize,

    fn of(d: *const LayerDesc) Layout {
        const groups = mv.padded(d.out) / lanes;
        const cols = @as(usize, d.in) + d.out;
        const bx_at = groups * gates * lanes * cols;
        return .{
            .in = d.in,
            .hidden = d.out,
            .groups = groups,
            .cols = cols,
            .bx_at = bx_at,
            .bh_at = bx_at + groups * gates * lanes,
        };
    }

    fn hiddenPadded(l: Layout) usize {
        return l.groups * lanes;
    }

    fn weightsLen(l: Layout) usize {
        return l.bh_at + l.groups * gates * lanes;
    }

    fn weightAt(l: Layout, q: usize, n: usize, col: usize) usize {
        const block = (n / lanes) * gates * lanes * l.cols;
        return block + (col * gates + q) * lanes + n % lanes;
    }

    /// Offset of gate q's bias for unit n within either bias array.
    fn biasAt(q: usize, n: usize) usize {
        return ((n / lanes) * gates + q) * lanes + n % lanes;
    }
};

pub fn sizes(d: *const LayerDesc, max_batch: u32) desc.Sizes {
    _ = max_batch; // model.zig runs stateful layers one row at a time
    const l = Layout.of(d);
    return .{ .weights = l.weightsLen(), .state = l.hiddenPadded(), .scratch = l.hiddenPadded() };
}

pub fn pack(d: *const LayerDesc, tensors: []const []const f32, weights: []f32) void {
    const l = Layout.of(d);
    const wx, const wh, const bx, const bh = .{ tensors[0], tensors[1], tensors[2], tensors[3] };
    std.debug.assert(wx.len == gates * l.hidden * l.in and wh.len == gates * l.hidden * l.hidden);
    std.debug.assert(weights.len == l.weightsLen());
    @memset(weights, 0);
    for (0..gates) |q| for (0..l.hidden) |n| {
        const row = q * l.hidden + n;
        for (wx[row * l.in ..][0..l.in], 0..) |v, i| weights[l.weightAt(q, n, i)] = v;
        const hrow = wh[row * l.hidden ..][0..l.hidden];
        for (hrow, l.in..) |v, col| weights[l.weightAt(q, n, col)] = v;
        weights[l.bx_at + Layout.biasAt(q, n)] = bx[row];
        weights[l.bh_at + Layout.biasAt(q, n)] = bh[row];
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
    std.debug.assert(state.len == hp and scratch.len >= hp);
    std.debug.assert(weights.len == l.weightsLen());
    const h = state[0..hp];
    const h_next = scratch[0..hp];
    for (0..l.groups) |u| {
        var ax: [gates]V = undefined;
        var ah: [gates]V = undefined;
        inline for (0..gates) |q| {
            ax[q] = simd.load(weights, l.bx_at + (u * gates + q) * lanes);
            ah[q] = simd.load(weights, l.bh_at + (u * gates + q) * lanes);
        }
        const block = weights[u * gates * lanes * l.cols ..].ptr;
        mv.accumulate(gates, block, x, &ax);
        mv.accumulate(gates, block + l.in * gates * lanes, h[0..l.hidden], &ah);
        const z = act.sigmoidVec(ax[0] + ah[0]);
        const r = act.sigmoidVec(ax[1] + ah[1]);
        const n = act.tanhVec(mv.madd(r, ah[2], ax[2]));
        simd.store(h_next, u * lanes, mv.madd(z, simd.load(h, u * lanes) - n, n));
    }
    @memcpy(h, h_next);
    @memcpy(y[0..l.hidden], h_next[0..l.hidden]);
}

// ---- tests against a naive f64 step --------------------------------------------------------

fn sigmoid64(v: f64) f64 {
    return 1 / (1 + @exp(-v));
}

fn dot64(w: []const f32, v: []const f64) f64 {
    var s: f64 = 0;
    for (w, v) |a, b| s += a * b;
    return s;
}

/// One GRU step in f64 on the unpacked tensors; h is updated in place.
fn referenceStep(in: usize, hidden: usize, t: []const []const f32, x: []const f64, h: []f64) void {
    var next: [64]f64 = undefined;
    for (0..hidden) |n| {
        var gx: [gates]f64 = undefined;
        var gh: [gates]f64 = undefined;
        for (0..gates) |q| {
            const row = q * hidden + n;
            gx[q] = t[2][row] + dot64(t[0][row * in ..][0..in], x);
            gh[q] = t[3][row] + dot64(t[1][row * hidden ..][0..hidden], h);
        }
        const z = sigmoid64(gx[0] + gh[0]);
        const r = sigmoid64(gx[1] + gh[1]);
        const cand = std.math.tanh(gx[2] + r * gh[2]);
        next[n] = (1 - z) * cand + z * h[n];
    }
    @memcpy(h, next[0..hidden]);
}

fn expectSteps(in: u32, hidden: u32, steps: usize) !void {
    var arena = std.heap.ArenaAllocator.init(std.testing.allocator);
    defer arena.deinit();
    const a = arena.allocator();
    var rng = std.Random.DefaultPrng.init(in * 1000 + hidden);
    const r = rng.random();
    const d = LayerDesc{
        .kind = .gru,
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
    @memset(h64, 0);
    const x = try a.alloc(f32, in);
    const x64 = try a.alloc(f64, in);
    const y = try a.alloc(f32, hidden);
    for (0..steps) |_| {
        for (x, x64) |*v, *w| {
            v.* = (r.float(f32) - 0.5) * 4;
            w.* = v.*;
        }
        forward(&d, weights, state, scratch, x, y);
        referenceStep(in, hidden, @ptrCast(tensors), x64, h64);
        // f32 sums of up to 33 products plus the activations' ~1e-7 error, over several steps.
        for (h64, y) |want, got| try std.testing.expectApproxEqAbs(want, got, 5e-6);
    }
}

test "gru: matches an f64 reference over several steps on odd sizes" {
    const dims = [_]u32{ 1, 3, 17, 33 };
    for (dims) |in| for (dims) |hidden| try expectSteps(in, hidden, 6);
}

test "gru: keeps the recurrent n-gate term apart from the input term" {
    // Only bh_n is non-zero: with reset_after, r (= 0.5 here) scales it; summed with bx_n it
    // would not be. h' = (1 - 0.5) tanh(0.5 * 2) + 0.5 * 0 at the first step.
    const d = LayerDesc{
        .kind = .gru,
        .act = .linear,
        .in = 1,
        .out = 1,
        .p = @splat(0),
        .f = @splat(0),
    };
    const zeros = [_]f32{ 0, 0, 0 };
    const bh = [_]f32{ 0, 0, 2 };
    var weights: [sizes(&d, 1).weights]f32 = undefined;
    pack(&d, &.{ &zeros, &zeros, &zeros, &bh }, &weights);
    var state: [lanes]f32 = @splat(0);
    var scratch: [lanes]f32 = undefined;
    var y: [1]f32 = undefined;
    forward(&d, &weights, &state, &scratch, &.{0.0}, &y);
    try std.testing.expectApproxEqAbs(0.5 * std.math.tanh(@as(f32, 1)), y[0], 1e-7);
}

test "gru: check refuses a fused activation and sizes past 2^30 weights" {
    const d = LayerDesc{
        .kind = .gru,
        .act = .linear,
        .in = 65536,
        .out = 65536,
        .p = @splat(0),
        .f = @splat(0),
    };
    const msg = "3 * out * (in + out) must be at most 2^30 weights";
    try std.testing.expectEqualStrings(msg, check(&d).?);
    var tanh_act = d;
    tanh_act.in = 3;
    tanh_act.out = 3;
    tanh_act.act = .tanh;
    try std.testing.expect(check(&tanh_act) != null);
}
