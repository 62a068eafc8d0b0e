//! LSTM layer (kind 2): `z = Wx x + Wh h + b`, gates i, f, g, o; `c' = f c + i g`,
//! `h' = o tanh(c')`. Wx and Wh are fused into one [4 H][in + H] matrix over [x, h] (gate q
//! of unit n is row q * H + n, the PyTorch order, so no row is padding but the last panel's),
//! and one pass of matvec.zig's kernel streams every weight; the cell update then runs a
//! vector of units at a time.
//!
//! weights: the packed matrix (f32, bf16 or int8, the layer's weight_type; an int8 row's scale
//!          covers its Wx and Wh parts, one scale per fused row), then bias [padded 4 H]
//! state:   h [Hp], c [Hp] (Hp = H rounded up to lanes; padding stays 0)
//! scratch: [x, h] [in + H, rounded up to lanes], z [padded 4 H + lanes] (the last vector of
//!          units reads past gate o's rows; those lanes are dropped), then at int8 the
//!          quantised [x, h] (one scale for the whole vector)
const std = @import("std");
const desc = @import("desc.zig");
const act = @import("act.zig");
const mv = @import("matvec.zig");
const simd = @import("../simd.zig");

const LayerDesc = desc.LayerDesc;
const lanes = mv.lanes;
const gates = 4;

pub fn check(d: *const LayerDesc) ?[]const u8 {
    std.debug.assert(d.kind == .lstm);
    return desc.checkGated(d, gates);
}

pub fn tensorLens(d: *const LayerDesc, lens: *[desc.tensors_max]u32) u8 {
    lens[0] = gates * d.out * d.in;
    lens[1] = gates * d.out * d.out;
    lens[2] = gates * d.out;
    return 3;
}

/// Tensors that hold weight matrices (bit t for tensor t): stored as `weight_type`.
pub fn matrixTensors(d: *const LayerDesc) u16 {
    _ = d;
    return 0b11;
}

pub fn matrixGeometry(d: *const LayerDesc) desc.MatrixGeometry {
    return .{ .rows = gates * @as(u64, d.out), .cols_max = @as(u64, d.in) + d.out };
}

const Layout = struct {
    in: usize,
    hidden: usize,
    /// Hidden units rounded up to whole vectors.
    hp: usize,
    shape: mv.Shape,

    fn of(d: *const LayerDesc) Layout {
        const hp = mv.padded(d.out);
        const cols = @as(usize, d.in) + d.out;
        return .{
            .in = d.in,
            .hidden = d.out,
            .hp = hp,
            .shape = .{ .rows = gates * d.out, .cols = cols, .weight_type = d.weight_type },
        };
    }

    fn weightsLen(l: Layout) usize {
        return l.shape.words() + mv.padded(gates * l.hidden);
    }

    fn zAt(l: Layout) usize {
        return mv.padded(l.shape.cols);
    }

    fn zLen(l: Layout) usize {
        return mv.padded(gates * l.hidden) + lanes;
    }

    fn xqAt(l: Layout) usize {
        return l.zAt() + l.zLen();
    }

    fn scratchLen(l: Layout) usize {
        return l.xqAt() + l.shape.inputWords();
    }
};

pub fn sizes(d: *const LayerDesc, max_batch: u32) desc.Sizes {
    _ = max_batch; // model.zig runs stateful layers one row at a time
    const l = Layout.of(d);
    return .{ .weights = l.weightsLen(), .state = 2 * l.hp, .scratch = l.scratchLen() };
}

pub fn pack(d: *const LayerDesc, tensors: []const []const f32, weights: []f32) void {
    const l = Layout.of(d);
    const wx, const wh, const b = .{ tensors[0], tensors[1], tensors[2] };
    std.debug.assert(wx.len == gates * l.hidden * l.in and wh.len == gates * l.hidden * l.hidden);
    std.debug.assert(weights.len == l.weightsLen());
    const matrix = weights[0..l.shape.words()];
    const bias = weights[l.shape.words()..];
    @memset(weights, 0);
    for (0..gates) |q| for (0..l.hidden) |n| {
        const row = q * l.hidden + n;
        const wx_row = wx[row * l.in ..][0..l.in];
        const wh_row = wh[row * l.hidden ..][0..l.hidden];
        mv.rowScale(l.shape, matrix, row, &.{ wx_row, wh_row });
        mv.packRow(l.shape, wx_row, row, 0, matrix);
        mv.packRow(l.shape, wh_row, row, l.in, matrix);
        bias[row] = b[row];
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
    const n = l.hidden;
    std.debug.assert(x.len == l.in and y.len >= n);
    std.debug.assert(state.len == 2 * hp and scratch.len >= l.scratchLen());
    std.debug.assert(weights.len == l.weightsLen());
    const h = state[0..hp];
    const c = state[hp..][0..hp];
    const xh = scratch[0..l.shape.cols];
    simd.copy(xh[0..l.in], x);
    simd.copy(xh[l.in..], h[0..n]);
    const z = scratch[l.zAt()..][0..l.zLen()];
    @memset(z[z.len - lanes ..], 0);
    const words = l.shape.words();
    const xq = scratch[l.xqAt()..l.scratchLen()];
    mv.matvec(l.shape, weights[0..words], weights[words..], xh, z[0 .. z.len - lanes], xq);
    // Two passes over the vectors of units, so that each vector's chain of dependent
    // operations (four gate activations, then tanh of the new cell) overlaps the next
    // vector's: the first writes c and keeps o in gate i's place, the second forms h.
    var u: usize = 0;
    while (u < hp) : (u += lanes) {
        const i = act.sigmoidVec(simd.load(z, u));
        const f = act.sigmoidVec(simd.load(z, n + u));
        const g = act.tanhVec(simd.load(z, 2 * n + u));
        const o = act.sigmoidVec(simd.load(z, 3 * n + u));
        const c_next = simd.madd(f, simd.load(c, u), i * g);
        const units = simd.lanesBelow(n - u);
        simd.store(c, u, @select(f32, units, c_next, simd.splat(0)));
        simd.store(z, u, o);
    }
    u = 0;
    while (u < hp) : (u += lanes) {
        const h_next = simd.load(z, u) * act.tanhVec(simd.load(c, u));
        simd.store(h, u, @select(f32, simd.lanesBelow(n - u), h_next, simd.splat(0)));
    }
    simd.copy(y[0..n], h[0..n]);
}

// ---- tests against a naive f64 step --------------------------------------------------------

const helpers = @import("../test.zig");

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
        const i = helpers.sigmoid64(z[n]);
        const f = helpers.sigmoid64(z[hidden + n]);
        const g = std.math.tanh(z[2 * hidden + n]);
        const o = helpers.sigmoid64(z[3 * hidden + n]);
        c[n] = f * c[n] + i * g;
        h[n] = o * std.math.tanh(c[n]);
    }
}

fn expectSteps(in: u32, hidden: u32, steps: usize, wt: desc.WeightType) !void {
    const gpa = std.testing.allocator;
    var arena = std.heap.ArenaAllocator.init(gpa);
    defer arena.deinit();
    const a = arena.allocator();
    var rng = std.Random.DefaultPrng.init(in * 1000 + hidden);
    const r = rng.random();
    const d = helpers.descOf(.{ .kind = .lstm, .in = in, .out = hidden, .weight_type = wt });
    try std.testing.expect(check(&d) == null);
    const tensors = try helpers.randomTensors(a, r, @This(), &d, 1.2);
    const l = try helpers.packLayer(a, @This(), &d, tensors);
    const stored = try helpers.asStored(a, @ptrCast(tensors), matrixTensors(&d), wt);
    const h64 = try a.alloc(f64, hidden);
    const c64 = try a.alloc(f64, hidden);
    @memset(h64, 0);
    @memset(c64, 0);
    const x = try a.alloc(f32, in);
    const x64 = try a.alloc(f64, in);
    const y = try a.alloc(f32, hidden);
    for (0..steps) |_| {
        helpers.randomInput(r, x, x64);
        forward(&d, l.weights, l.state, l.scratch, x, y);
        referenceStep(in, hidden, stored, x64, h64, c64);
        // f32 sums of up to 66 products plus the activations' ~1e-7 error, over several steps.
        for (h64, y) |want, got| try std.testing.expectApproxEqAbs(want, got, 5e-6);
        for (c64, l.state[mv.padded(hidden)..][0..hidden]) |want, got| {
            try std.testing.expectApproxEqAbs(want, got, 5e-6);
        }
    }
}

test "lstm: matches an f64 reference over several steps on odd sizes, f32 and bf16" {
    const dims = [_]u32{ 1, 3, 17, 33 };
    for (dims) |in| for (dims) |hidden| for ([_]desc.WeightType{ .f32, .bf16 }) |wt| {
        try expectSteps(in, hidden, 6, wt);
    };
}

test "lstm: check refuses a fused activation and sizes past 2^30 weights" {
    const msg = "4 * out * (in + out) must be at most 2^30 weights";
    try helpers.expectGatedCheck(@This(), .lstm, msg);
}

// ---- training -------------------------------------------------------------------------------

const common = @import("../train/common.zig");

/// Training over `batch` sequences (row r = b * seq + t), params canonical: `Wx` [4H][in],
/// `Wh` [4H][H], `b` [4H]. Saves the activated gates [rows][4H] (overwritten by their
/// pre-activation gradients in backward) and the cell [rows][H]; the output is h. Backward is
/// BPTT, cut at the context's truncation window. QAT (f32): each step's [x, h] through the
/// int8 inference kernel with the fused matrix packed as `pack` does, then the same cell
/// arithmetic as `forward`.
pub fn Train(comptime T: type) type {
    return struct {
        const G = common.Gemm(T);
        const Ctx = common.Ctx(T);

        pub fn savedLen(d: *const LayerDesc, c: Ctx) usize {
            return c.rows() * 5 * @as(usize, d.out);
        }

        fn qatDesc(d: *const LayerDesc) LayerDesc {
            var q = d.*;
            q.weight_type = .int8;
            return q;
        }

        pub fn scratchLen(d: *const LayerDesc, c: Ctx) usize {
            const h: usize = d.out;
            const base = 2 * c.batch * h;
            // backward: every position's previous h, for one product into Wh's gradient
            const previous = c.rows() * @as(usize, d.out);
            if (!c.qat) return base + previous;
            const q = qatDesc(d);
            const l = Layout.of(&q);
            return base + @max(previous, l.weightsLen() + l.scratchLen());
        }

        /// The cell update of `forward`, one unit: gates from z, c' = f c + i g, h' = o tanh c'.
        inline fn cell(z: []T, n: usize, u: usize, c_prev: T, c_out: *T, h_out: *T) void {
            const i = common.sigmoid(T, z[u]);
            const f = common.sigmoid(T, z[n + u]);
            const g = common.tanh(T, z[2 * n + u]);
            const o = common.sigmoid(T, z[3 * n + u]);
            const c_next = common.madd(f, c_prev, i * g);
            c_out.* = c_next;
            h_out.* = o * common.tanh(T, c_next);
            z[u] = i;
            z[n + u] = f;
            z[2 * n + u] = g;
            z[3 * n + u] = o;
        }

        /// Every unit of one position: f32 a vector of units at a time exactly as `forward`
        /// does it (the same lanes' arithmetic), the rest one unit at a time.
        fn cellRow(z: []T, n: usize, c_prev: ?[]const T, c_out: []T, h_out: []T) void {
            var u: usize = 0;
            if (T == f32) {
                while (u + lanes <= n) : (u += lanes) {
                    const i = act.sigmoidVec(simd.load(z, u));
                    const f = act.sigmoidVec(simd.load(z, n + u));
                    const g = act.tanhVec(simd.load(z, 2 * n + u));
                    const o = act.sigmoidVec(simd.load(z, 3 * n + u));
                    const cp: simd.V = if (c_prev) |cv| simd.load(cv, u) else @splat(0);
                    const c_next = simd.madd(f, cp, i * g);
                    simd.store(c_out, u, c_next);
                    simd.store(h_out, u, o * act.tanhVec(c_next));
                    simd.store(z, u, i);
                    simd.store(z, n + u, f);
                    simd.store(z, 2 * n + u, g);
                    simd.store(z, 3 * n + u, o);
                }
            }
            while (u < n) : (u += 1) {
                const cp: T = if (c_prev) |cv| cv[u] else 0;
                cell(z, n, u, cp, &c_out[u], &h_out[u]);
            }
        }

        pub fn forward(d: *const LayerDesc, p: []const T, x: []const T, y: []T, saved: []T, c: Ctx) void {
            const in: usize = d.in;
            const n: usize = d.out;
            const g4 = gates * n;
            const rows = c.rows();
            const S = c.seq;
            const wx = p[0 .. g4 * in];
            const wh = p[g4 * in ..][0 .. g4 * n];
            const b = p[g4 * (in + n) ..][0..g4];
            const z_all = saved[0 .. rows * g4];
            const cells = saved[rows * g4 ..][0 .. rows * n];
            if (T == f32 and c.qat) return forwardQat(d, p, x, y, z_all, cells, c);
            G.nt(rows, g4, in, x, in, wx, in, z_all, g4, false, c.wt, c.pool);
            G.addBias(rows, g4, b, z_all, g4);
            G.transpose(g4, n, wh, n, c.wt);
            for (0..S) |t| {
                if (t > 0) G.ntPre(c.batch, g4, n, y[(t - 1) * n ..], S * n, c.wt[0 .. g4 * n], z_all[t * g4 ..], S * g4, true, c.pool);
                for (0..c.batch) |bi| {
                    const r = bi * S + t;
                    const z = z_all[r * g4 ..][0..g4];
                    const c_prev: ?[]const T = if (t > 0) cells[(r - 1) * n ..][0..n] else null;
                    cellRow(z, n, c_prev, cells[r * n ..][0..n], y[r * n ..][0..n]);
                }
            }
        }

        fn forwardQat(d: *const LayerDesc, p: []const f32, x: []const f32, y: []f32, z_all: []f32, cells: []f32, c: Ctx) void {
            const in: usize = d.in;
            const n: usize = d.out;
            const g4 = gates * n;
            const q = qatDesc(d);
            const l = Layout.of(&q);
            const base = 2 * c.batch * n;
            const packed_w = c.scratch[base..][0..l.weightsLen()];
            const work = c.scratch[base + packed_w.len ..][0..l.scratchLen()];
            const tensors = [_][]const f32{ p[0 .. g4 * in], p[g4 * in ..][0 .. g4 * n], p[g4 * (in + n) ..][0..g4] };
            pack(&q, &tensors, packed_w);
            const words = l.shape.words();
            const xh = work[0..l.shape.cols];
            const z = work[l.zAt()..][0..l.zLen()];
            const xq = work[l.xqAt()..l.scratchLen()];
            for (0..c.batch) |bi| for (0..c.seq) |t| {
                const r = bi * c.seq + t;
                @memcpy(xh[0..in], x[r * in ..][0..in]);
                if (t > 0) @memcpy(xh[in..], y[(r - 1) * n ..][0..n]) else @memset(xh[in..], 0);
                mv.matvec(l.shape, packed_w[0..words], packed_w[words..], xh, z[0..g4], xq);
                const zr = z_all[r * g4 ..][0..g4];
                @memcpy(zr, z[0..g4]);
                const c_prev: ?[]const f32 = if (t > 0) cells[(r - 1) * n ..][0..n] else null;
                cellRow(zr, n, c_prev, cells[r * n ..][0..n], y[r * n ..][0..n]);
            };
        }

        pub fn backward(d: *const LayerDesc, p: []const T, x: []const T, y: []const T, saved: []T, dy: []T, dx: ?[]T, g: []T, c: Ctx) void {
            const in: usize = d.in;
            const n: usize = d.out;
            const g4 = gates * n;
            const rows = c.rows();
            const S = c.seq;
            const B = c.batch;
            const wx = p[0 .. g4 * in];
            const wh = p[g4 * in ..][0 .. g4 * n];
            const z_all = saved[0 .. rows * g4];
            const cells = saved[rows * g4 ..][0 .. rows * n];
            const dh = c.scratch[0 .. B * n];
            const dc = c.scratch[B * n ..][0 .. B * n];
            @memset(dh, 0);
            @memset(dc, 0);
            var t = S;
            while (t > 0) {
                t -= 1;
                for (0..B) |bi| {
                    const r = bi * S + t;
                    const z = z_all[r * g4 ..][0..g4];
                    for (0..n) |u| {
                        const i = z[u];
                        const f = z[n + u];
                        const gg = z[2 * n + u];
                        const o = z[3 * n + u];
                        const tc = common.tanh(T, cells[r * n + u]);
                        const c_prev = if (t > 0) cells[(r - 1) * n + u] else 0;
                        const dhv = dy[r * n + u] + dh[bi * n + u];
                        const dcv = dhv * o * (1 - tc * tc) + dc[bi * n + u];
                        dc[bi * n + u] = dcv * f;
                        z[u] = dcv * gg * i * (1 - i);
                        z[n + u] = dcv * c_prev * f * (1 - f);
                        z[2 * n + u] = dcv * i * (1 - gg * gg);
                        z[3 * n + u] = dhv * tc * o * (1 - o);
                    }
                }
                @memset(dh, 0);
                if (c.cut(t)) {
                    @memset(dc, 0);
                } else {
                    G.nn(B, g4, n, z_all[t * g4 ..], S * g4, wh, n, dh, n, c.pool);
                }
            }
            const previous = c.scratch[2 * B * n ..][0 .. rows * n];
            for (0..rows) |r| {
                const h = previous[r * n ..][0..n];
                if (r % S == 0) @memset(h, 0) else @memcpy(h, y[(r - 1) * n ..][0..n]);
            }
            G.tn(rows, g4, n, z_all, g4, previous, n, g[g4 * in ..][0 .. g4 * n], n, c.pool);
            G.tn(rows, g4, in, z_all, g4, x, in, g[0 .. g4 * in], in, c.pool);
            G.sumRows(rows, g4, z_all, g4, g[g4 * (in + n) ..][0..g4]);
            if (dx) |v| {
                G.nnSet(rows, g4, in, z_all, g4, wx, in, v, in, c.pool);
            }
        }
    };
}
