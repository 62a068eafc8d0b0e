//! GRU layer (kind 3), reset_after as Keras and PyTorch: gates z, r, n;
//! `n = tanh(Wx_n x + bx_n + r * (Wh_n h + bh_n))`, `h' = (1 - z) n + z h`.
//! Wx and Wh are two matrices for matvec.zig's kernel (gate q of unit n is row q * H + n, as
//! the tensors have it), so `Wh_n h + bh_n` stays apart from the input term for the reset
//! gate; the state update then runs a vector of units at a time.
//!
//! weights: Wx packed [3 H][in], Wh packed [3 H][H] (f32, bf16 or int8, the layer's
//!          weight_type; at int8 each matrix row has its own scale),
//!          then bx, bh [padded 3 H each]
//! state:   h [Hp] (Hp = H rounded up to lanes; padding stays 0)
//! scratch: zx, zh [padded 3 H + lanes each] (the last vector of units reads past gate n's
//!          rows; those lanes are dropped), then at int8 the quantised x or h (each its own
//!          vector with its own scale, one after the other)
const std = @import("std");
const desc = @import("desc.zig");
const act = @import("act.zig");
const mv = @import("matvec.zig");
const simd = @import("../simd.zig");

const LayerDesc = desc.LayerDesc;
const lanes = mv.lanes;
const gates = 3;

pub fn check(d: *const LayerDesc) ?[]const u8 {
    std.debug.assert(d.kind == .gru);
    return desc.checkGated(d, gates);
}

pub fn tensorLens(d: *const LayerDesc, lens: *[desc.tensors_max]u32) u8 {
    lens[0] = gates * d.out * d.in;
    lens[1] = gates * d.out * d.out;
    lens[2] = gates * d.out;
    lens[3] = gates * d.out;
    return 4;
}

/// Tensors that hold weight matrices (bit t for tensor t): stored as `weight_type`.
pub fn matrixTensors(d: *const LayerDesc) u16 {
    _ = d;
    return 0b11;
}

pub fn matrixGeometry(d: *const LayerDesc) desc.MatrixGeometry {
    return .{ .rows = 2 * gates * @as(u64, d.out), .cols_max = @max(d.in, d.out) };
}

const Layout = struct {
    in: usize,
    hidden: usize,
    hp: usize,
    sx: mv.Shape,
    sh: mv.Shape,

    fn of(d: *const LayerDesc) Layout {
        const hp = mv.padded(d.out);
        const t = d.weight_type;
        return .{
            .in = d.in,
            .hidden = d.out,
            .hp = hp,
            .sx = .{ .rows = gates * d.out, .cols = d.in, .weight_type = t },
            .sh = .{ .rows = gates * d.out, .cols = d.out, .weight_type = t },
        };
    }

    /// Padded rows of either matrix: the length of each bias.
    fn rowsPadded(l: Layout) usize {
        return mv.padded(gates * l.hidden);
    }
    fn zLen(l: Layout) usize {
        return l.rowsPadded() + lanes;
    }

    fn whAt(l: Layout) usize {
        return l.sx.words();
    }
    fn bxAt(l: Layout) usize {
        return l.whAt() + l.sh.words();
    }
    fn bhAt(l: Layout) usize {
        return l.bxAt() + l.rowsPadded();
    }
    fn weightsLen(l: Layout) usize {
        return l.bhAt() + l.rowsPadded();
    }
    fn scratchLen(l: Layout) usize {
        return 2 * l.zLen() + @max(l.sx.inputWords(), l.sh.inputWords());
    }
};

pub fn sizes(d: *const LayerDesc, max_batch: u32) desc.Sizes {
    _ = max_batch; // model.zig runs stateful layers one row at a time
    const l = Layout.of(d);
    return .{ .weights = l.weightsLen(), .state = l.hp, .scratch = l.scratchLen() };
}

pub fn pack(d: *const LayerDesc, tensors: []const []const f32, weights: []f32) void {
    const l = Layout.of(d);
    const wx, const wh, const bx, const bh = .{ tensors[0], tensors[1], tensors[2], tensors[3] };
    std.debug.assert(wx.len == gates * l.hidden * l.in and wh.len == gates * l.hidden * l.hidden);
    std.debug.assert(weights.len == l.weightsLen());
    @memset(weights, 0);
    const wx_packed = weights[0..l.whAt()];
    const wh_packed = weights[l.whAt()..l.bxAt()];
    for (0..gates) |q| for (0..l.hidden) |n| {
        const row = q * l.hidden + n;
        const wx_row = wx[row * l.in ..][0..l.in];
        const wh_row = wh[row * l.hidden ..][0..l.hidden];
        mv.rowScale(l.sx, wx_packed, row, &.{wx_row});
        mv.rowScale(l.sh, wh_packed, row, &.{wh_row});
        mv.packRow(l.sx, wx_row, row, 0, wx_packed);
        mv.packRow(l.sh, wh_row, row, 0, wh_packed);
        weights[l.bxAt() + row] = bx[row];
        weights[l.bhAt() + row] = bh[row];
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
    const hp = l.hp;
    const m = l.hidden;
    std.debug.assert(x.len == l.in and y.len >= m);
    std.debug.assert(state.len == hp and scratch.len >= l.scratchLen());
    std.debug.assert(weights.len == l.weightsLen());
    const h = state[0..hp];
    const zx = scratch[0..l.zLen()];
    const zh = scratch[l.zLen()..][0..l.zLen()];
    const rows = l.rowsPadded();
    @memset(zx[rows..], 0);
    @memset(zh[rows..], 0);
    const w = weights;
    const xq = scratch[2 * l.zLen() .. l.scratchLen()];
    mv.matvec(l.sx, w[0..l.whAt()], w[l.bxAt()..l.bhAt()], x, zx[0..rows], xq);
    mv.matvec(l.sh, w[l.whAt()..l.bxAt()], w[l.bhAt()..], h[0..m], zh[0..rows], xq);
    var u: usize = 0;
    while (u < hp) : (u += lanes) {
        const z = act.sigmoidVec(simd.load(zx, u) + simd.load(zh, u));
        const r = act.sigmoidVec(simd.load(zx, m + u) + simd.load(zh, m + u));
        const n = act.tanhVec(simd.madd(r, simd.load(zh, 2 * m + u), simd.load(zx, 2 * m + u)));
        const h_next = simd.madd(z, simd.load(h, u) - n, n);
        simd.store(h, u, @select(f32, simd.lanesBelow(m - u), h_next, simd.splat(0)));
    }
    simd.copy(y[0..m], h[0..m]);
}

// ---- tests against a naive f64 step --------------------------------------------------------

const helpers = @import("../test.zig");

fn dot64(w: []const f32, v: []const f64) f64 {
    var s: f64 = 0;
    for (w, v) |a, b| s += a * b;
    return s;
}

/// One GRU step in f64 on the unpacked tensors; h is updated in place.
fn referenceStep(
    in: usize,
    hidden: usize,
    t: []const []const f32,
    x: []const f64,
    h: []f64,
) void {
    var next: [64]f64 = undefined;
    for (0..hidden) |n| {
        var gx: [gates]f64 = undefined;
        var gh: [gates]f64 = undefined;
        for (0..gates) |q| {
            const row = q * hidden + n;
            gx[q] = t[2][row] + dot64(t[0][row * in ..][0..in], x);
            gh[q] = t[3][row] + dot64(t[1][row * hidden ..][0..hidden], h);
        }
        const z = helpers.sigmoid64(gx[0] + gh[0]);
        const r = helpers.sigmoid64(gx[1] + gh[1]);
        const cand = std.math.tanh(gx[2] + r * gh[2]);
        next[n] = (1 - z) * cand + z * h[n];
    }
    @memcpy(h, next[0..hidden]);
}

fn expectSteps(in: u32, hidden: u32, steps: usize, wt: desc.WeightType) !void {
    var arena = std.heap.ArenaAllocator.init(std.testing.allocator);
    defer arena.deinit();
    const a = arena.allocator();
    var rng = std.Random.DefaultPrng.init(in * 1000 + hidden);
    const r = rng.random();
    const d = helpers.descOf(.{ .kind = .gru, .in = in, .out = hidden, .weight_type = wt });
    try std.testing.expect(check(&d) == null);
    const tensors = try helpers.randomTensors(a, r, @This(), &d, 1.2);
    const l = try helpers.packLayer(a, @This(), &d, tensors);
    const stored = try helpers.asStored(a, @ptrCast(tensors), matrixTensors(&d), wt);
    const h64 = try a.alloc(f64, hidden);
    @memset(h64, 0);
    const x = try a.alloc(f32, in);
    const x64 = try a.alloc(f64, in);
    const y = try a.alloc(f32, hidden);
    for (0..steps) |_| {
        helpers.randomInput(r, x, x64);
        forward(&d, l.weights, l.state, l.scratch, x, y);
        referenceStep(in, hidden, stored, x64, h64);
        // f32 sums of up to 33 products plus the activations' ~1e-7 error, over several steps.
        for (h64, y) |want, got| try std.testing.expectApproxEqAbs(want, got, 5e-6);
    }
}

test "gru: matches an f64 reference over several steps on odd sizes, f32 and bf16" {
    const dims = [_]u32{ 1, 3, 17, 33 };
    for (dims) |in| for (dims) |hidden| for ([_]desc.WeightType{ .f32, .bf16 }) |wt| {
        try expectSteps(in, hidden, 6, wt);
    };
}

test "gru: keeps the recurrent n-gate term apart from the input term" {
    // Only bh_n is non-zero: with reset_after, r (= 0.5 here) scales it; summed with bx_n it
    // would not be. h' = (1 - 0.5) tanh(0.5 * 2) + 0.5 * 0 at the first step.
    const d = comptime helpers.descOf(.{ .kind = .gru, .in = 1, .out = 1 });
    const zeros = [_]f32{ 0, 0, 0 };
    const bh = [_]f32{ 0, 0, 2 };
    var weights: [sizes(&d, 1).weights]f32 = undefined;
    pack(&d, &.{ &zeros, &zeros, &zeros, &bh }, &weights);
    var state: [lanes]f32 = @splat(0);
    var scratch: [sizes(&d, 1).scratch]f32 = undefined;
    var y: [1]f32 = undefined;
    forward(&d, &weights, &state, &scratch, &.{0.0}, &y);
    try std.testing.expectApproxEqAbs(0.5 * std.math.tanh(@as(f32, 1)), y[0], 1e-7);
}

test "gru: check refuses a fused activation and sizes past 2^30 weights" {
    const msg = "3 * out * (in + out) must be at most 2^30 weights";
    try helpers.expectGatedCheck(@This(), .gru, msg);
}

// ---- training -------------------------------------------------------------------------------

const common = @import("../train/common.zig");

/// Training over `batch` sequences (row r = b * seq + t), params canonical: `Wx` [3H][in],
/// `Wh` [3H][H], `bx` [3H], `bh` [3H]. Saves the activated gates z, r, n [rows][3H] and the
/// hidden products Wh h + bh [rows][3H] (both overwritten by their gradients in backward).
/// BPTT, cut at the truncation window. QAT (f32): x and h each through the int8 inference
/// kernel, as `forward` at int8.
pub fn Train(comptime T: type) type {
    return struct {
        const G = common.Gemm(T);
        const Ctx = common.Ctx(T);

        pub fn savedLen(d: *const LayerDesc, c: Ctx) usize {
            return c.rows() * 6 * @as(usize, d.out);
        }

        fn qatDesc(d: *const LayerDesc) LayerDesc {
            var q = d.*;
            q.weight_type = .int8;
            return q;
        }

        pub fn scratchLen(d: *const LayerDesc, c: Ctx) usize {
            const base = 2 * c.batch * @as(usize, d.out);
            // backward: every position's previous h, for one product into Wh's gradient
            const previous = c.rows() * @as(usize, d.out);
            if (!c.qat) return base + previous;
            const q = qatDesc(d);
            const l = Layout.of(&q);
            return base + @max(previous, l.weightsLen() + l.scratchLen());
        }

        inline fn cell(zx: []T, zh: []const T, n: usize, u: usize, h_prev: T) T {
            const z = common.sigmoid(T, zx[u] + zh[u]);
            const r = common.sigmoid(T, zx[n + u] + zh[n + u]);
            const cand = common.tanh(T, common.madd(r, zh[2 * n + u], zx[2 * n + u]));
            zx[u] = z;
            zx[n + u] = r;
            zx[2 * n + u] = cand;
            return common.madd(z, h_prev - cand, cand);
        }

        /// Every unit of one position: f32 a vector of units at a time exactly as `forward`
        /// does it (the same lanes' arithmetic), the rest one unit at a time.
        fn cellRow(zx: []T, zh: []const T, n: usize, h_prev: ?[]const T, h_out: []T) void {
            var u: usize = 0;
            if (T == f32) {
                while (u + lanes <= n) : (u += lanes) {
                    const z = act.sigmoidVec(simd.load(zx, u) + simd.load(zh, u));
                    const r = act.sigmoidVec(simd.load(zx, n + u) + simd.load(zh, n + u));
                    const cand = act.tanhVec(simd.madd(r, simd.load(zh, 2 * n + u), simd.load(zx, 2 * n + u)));
                    const hp: simd.V = if (h_prev) |h| simd.load(h, u) else @splat(0);
                    simd.store(h_out, u, simd.madd(z, hp - cand, cand));
                    simd.store(zx, u, z);
                    simd.store(zx, n + u, r);
                    simd.store(zx, 2 * n + u, cand);
                }
            }
            while (u < n) : (u += 1) h_out[u] = cell(zx, zh, n, u, if (h_prev) |h| h[u] else 0);
        }

        pub fn forward(d: *const LayerDesc, p: []const T, x: []const T, y: []T, saved: []T, c: Ctx) void {
            const in: usize = d.in;
            const n: usize = d.out;
            const g3 = gates * n;
            const rows = c.rows();
            const S = c.seq;
            const wx = p[0 .. g3 * in];
            const wh = p[g3 * in ..][0 .. g3 * n];
            const bx = p[g3 * (in + n) ..][0..g3];
            const bh = p[g3 * (in + n) + g3 ..][0..g3];
            const zx_all = saved[0 .. rows * g3];
            const zh_all = saved[rows * g3 ..][0 .. rows * g3];
            if (T == f32 and c.qat) return forwardQat(d, p, x, y, zx_all, zh_all, c);
            G.nt(rows, g3, in, x, in, wx, in, zx_all, g3, false, c.wt, c.pool);
            G.addBias(rows, g3, bx, zx_all, g3);
            G.transpose(g3, n, wh, n, c.wt);
            for (0..S) |t| {
                for (0..c.batch) |bi| @memcpy(zh_all[(bi * S + t) * g3 ..][0..g3], bh);
                if (t > 0) G.ntPre(c.batch, g3, n, y[(t - 1) * n ..], S * n, c.wt[0 .. g3 * n], zh_all[t * g3 ..], S * g3, true, c.pool);
                for (0..c.batch) |bi| {
                    const r = bi * S + t;
                    const h_prev: ?[]const T = if (t > 0) y[(r - 1) * n ..][0..n] else null;
                    cellRow(zx_all[r * g3 ..][0..g3], zh_all[r * g3 ..][0..g3], n, h_prev, y[r * n ..][0..n]);
                }
            }
        }

        fn forwardQat(d: *const LayerDesc, p: []const f32, x: []const f32, y: []f32, zx_all: []f32, zh_all: []f32, c: Ctx) void {
            const in: usize = d.in;
            const n: usize = d.out;
            const g3 = gates * n;
            const q = qatDesc(d);
            const l = Layout.of(&q);
            const base = 2 * c.batch * n;
            const w = c.scratch[base..][0..l.weightsLen()];
            const work = c.scratch[base + w.len ..][0..l.scratchLen()];
            const tensors = [_][]const f32{
                p[0 .. g3 * in],              p[g3 * in ..][0 .. g3 * n],
                p[g3 * (in + n) ..][0..g3], p[g3 * (in + n) + g3 ..][0..g3],
            };
            pack(&q, &tensors, w);
            const xq = work[2 * l.zLen() .. l.scratchLen()];
            const zero = work[0..n];
            @memset(zero, 0);
            for (0..c.batch) |bi| for (0..c.seq) |t| {
                const r = bi * c.seq + t;
                const zx = zx_all[r * g3 ..][0..g3];
                const zh = zh_all[r * g3 ..][0..g3];
                mv.matvec(l.sx, w[0..l.whAt()], w[l.bxAt()..l.bhAt()], x[r * in ..][0..in], zx, xq);
                const h: []const f32 = if (t > 0) y[(r - 1) * n ..][0..n] else zero;
                mv.matvec(l.sh, w[l.whAt()..l.bxAt()], w[l.bhAt()..], h, zh, xq);
                cellRow(zx, zh, n, if (t > 0) h else null, y[r * n ..][0..n]);
            };
        }

        pub fn backward(d: *const LayerDesc, p: []const T, x: []const T, y: []const T, saved: []T, dy: []T, dx: ?[]T, g: []T, c: Ctx) void {
            const in: usize = d.in;
            const n: usize = d.out;
            const g3 = gates * n;
            const rows = c.rows();
            const S = c.seq;
            const B = c.batch;
            const wx = p[0 .. g3 * in];
            const wh = p[g3 * in ..][0 .. g3 * n];
            const zx_all = saved[0 .. rows * g3];
            const zh_all = saved[rows * g3 ..][0 .. rows * g3];
            const g_wx = g[0 .. g3 * in];
            const g_wh = g[g3 * in ..][0 .. g3 * n];
            const g_bx = g[g3 * (in + n) ..][0..g3];
            const g_bh = g[g3 * (in + n) + g3 ..][0..g3];
            var carry = c.scratch[0 .. B * n];
            var next = c.scratch[B * n ..][0 .. B * n];
            @memset(carry, 0);
            var t = S;
            while (t > 0) {
                t -= 1;
                for (0..B) |bi| {
                    const r = bi * S + t;
                    const zx = zx_all[r * g3 ..][0..g3];
                    const zh = zh_all[r * g3 ..][0..g3];
                    for (0..n) |u| {
                        const z = zx[u];
                        const rg = zx[n + u];
                        const cand = zx[2 * n + u];
                        const h_prev = if (t > 0) y[(r - 1) * n + u] else 0;
                        const dhv = dy[r * n + u] + carry[bi * n + u];
                        const da_n = dhv * (1 - z) * (1 - cand * cand);
                        const da_r = da_n * zh[2 * n + u] * rg * (1 - rg);
                        const da_z = dhv * (h_prev - cand) * z * (1 - z);
                        next[bi * n + u] = dhv * z;
                        zx[u] = da_z;
                        zx[n + u] = da_r;
                        zx[2 * n + u] = da_n;
                        zh[u] = da_z;
                        zh[n + u] = da_r;
                        zh[2 * n + u] = da_n * rg;
                    }
                }
                if (c.cut(t)) {
                    @memset(next, 0);
                } else {
                    G.nn(B, g3, n, zh_all[t * g3 ..], S * g3, wh, n, next, n, c.pool);
                }
                const tmp = carry;
                carry = next;
                next = tmp;
            }
            const previous = c.scratch[2 * B * n ..][0 .. rows * n];
            for (0..rows) |r| {
                const h = previous[r * n ..][0..n];
                if (r % S == 0) @memset(h, 0) else @memcpy(h, y[(r - 1) * n ..][0..n]);
            }
            G.tn(rows, g3, n, zh_all, g3, previous, n, g_wh, n, c.pool);
            G.tn(rows, g3, in, zx_all, g3, x, in, g_wx, in, c.pool);
            G.sumRows(rows, g3, zx_all, g3, g_bx);
            G.sumRows(rows, g3, zh_all, g3, g_bh);
            if (dx) |v| {
                G.nnSet(rows, g3, in, zx_all, g3, wx, in, v, in, c.pool);
            }
        }
    };
}
