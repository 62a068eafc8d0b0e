//! Streaming causal 1-D convolution (docs/DESIGN.md): each step takes one input frame and
//! gives one output frame. `k` taps spaced by `dilation` frames; tap k-1 is the newest input.
//!
//! Each group is a dense matrix over its gathered taps: column `t * in_g + c` holds
//! `W[o][c][t]`, rows are the group's outputs, packed for matvec.zig (f32, bf16 or int8, the
//! layer's weight_type; at int8 each output channel has its scale and each group's gathered
//! taps are one input vector, quantised with their own scale). The state is a
//! ring of the last `(k-1) * dilation + 1` input frames, preceded by the ring position (u32
//! bits in one float, so a zeroed state is a fresh one). With k == 1 the layer is stateless.
const std = @import("std");
const desc = @import("desc.zig");
const act = @import("act.zig");
const mv = @import("matvec.zig");
const simd = @import("../simd.zig");

const LayerDesc = desc.LayerDesc;

/// Floats before the first ring frame (the ring position).
const ring_header = 1;

const Geometry = struct {
    taps: usize,
    dilation: usize,
    groups: usize,
    in_g: usize,
    out_g: usize,
    /// Frames in the ring: the history plus the newest frame.
    frames: usize,
    /// Columns of one group's matrix: taps * in_g.
    cols: usize,
    /// One group's matrix: out_g rows, cols columns.
    shape: mv.Shape,

    fn of(d: *const LayerDesc) Geometry {
        const taps: usize = d.p[0];
        const dilation: usize = d.p[1];
        const groups: usize = d.p[2];
        const in_g = d.in / groups;
        const out_g = d.out / groups;
        return .{
            .taps = taps,
            .dilation = dilation,
            .groups = groups,
            .in_g = in_g,
            .out_g = out_g,
            .frames = (taps - 1) * dilation + 1,
            .cols = taps * in_g,
            .shape = .{ .rows = out_g, .cols = taps * in_g, .weight_type = d.weight_type },
        };
    }

    fn biasOffset(g: Geometry) usize {
        return g.groups * g.shape.words();
    }

    /// Scratch: the gathered taps (when k > 1), then the quantised input at int8.
    fn xqAt(g: Geometry, in: usize) usize {
        return if (g.taps == 1) 0 else simd.roundUp(g.taps * in);
    }
};

pub fn check(d: *const LayerDesc) ?[]const u8 {
    if (d.p[0] < 1) return "p0 (kernelSize) must be at least 1";
    if (d.p[1] < 1) return "p1 (dilation) must be at least 1";
    if (d.p[2] < 1) return "p2 (groups) must be at least 1";
    if (d.in % d.p[2] != 0) return "in must be a multiple of p2 (groups)";
    if (d.out % d.p[2] != 0) return "out must be a multiple of p2 (groups)";
    if (!desc.elemsFit(&.{ d.out, d.in / d.p[2], d.p[0] })) {
        return "out * in/groups * kernelSize must be at most 2^30 weights";
    }
    return null;
}

pub fn tensorLens(d: *const LayerDesc, lens: *[desc.tensors_max]u32) u8 {
    lens[0] = d.out * (d.in / d.p[2]) * d.p[0];
    lens[1] = d.out;
    return 2;
}

/// Tensors that hold weight matrices (bit t for tensor t): stored as `weight_type`.
pub fn matrixTensors(d: *const LayerDesc) u16 {
    _ = d;
    return 0b1;
}

pub fn matrixGeometry(d: *const LayerDesc) desc.MatrixGeometry {
    return .{ .rows = d.out, .cols_max = @as(u64, d.in / d.p[2]) * d.p[0] };
}

pub fn sizes(d: *const LayerDesc, max_batch: u32) desc.Sizes {
    _ = max_batch;
    const g = Geometry.of(d);
    // The bias of a group's ragged last panel reads into the next group's (or the padding).
    const weights = g.biasOffset() + simd.roundUp(d.out + simd.lanes);
    const xq = g.shape.inputWords();
    if (g.taps == 1) return .{ .weights = weights, .state = 0, .scratch = xq };
    return .{
        .weights = weights,
        .state = ring_header + g.frames * d.in,
        .scratch = g.xqAt(d.in) + xq,
    };
}

pub fn pack(d: *const LayerDesc, tensors: []const []const f32, weights: []f32) void {
    const g = Geometry.of(d);
    const w = tensors[0];
    std.debug.assert(w.len == d.out * g.in_g * g.taps);
    @memset(weights, 0);
    const words = g.shape.words();
    for (0..g.groups) |group| {
        const panels = weights[group * words ..][0..words];
        for (0..g.out_g) |r| {
            const o = group * g.out_g + r;
            mv.rowScale(g.shape, panels, r, &.{w[o * g.cols ..][0..g.cols]});
            for (0..g.in_g) |c| {
                for (0..g.taps) |t| {
                    g.shape.put(panels, r, t * g.in_g + c, w[(o * g.in_g + c) * g.taps + t]);
                }
            }
        }
    }
    @memcpy(weights[g.biasOffset()..][0..d.out], tensors[1]);
}

pub fn forward(
    d: *const LayerDesc,
    weights: []const f32,
    state: []f32,
    scratch: []f32,
    x: []const f32,
    y: []f32,
) void {
    const g = Geometry.of(d);
    std.debug.assert(x.len >= d.in and y.len >= d.out);
    const taps_in = if (g.taps == 1) x[0..d.in] else gather(g, d.in, state, scratch, x);
    const bias = weights[g.biasOffset()..];
    const words = g.shape.words();
    const xq = scratch[g.xqAt(d.in)..][0..g.shape.inputWords()];
    for (0..g.groups) |group| {
        mv.matvec(
            g.shape,
            weights[group * words ..][0..words],
            bias[group * g.out_g ..],
            taps_in[group * g.cols ..][0..g.cols],
            y[group * g.out_g ..][0..g.out_g],
            xq,
        );
    }
    act.apply(d.act, y[0..d.out]);
}

/// Writes x into the ring and lays the taps out group by group in scratch:
/// `scratch[(group * taps + t) * in_g + c]` is channel `group * in_g + c` of tap t.
fn gather(g: Geometry, in: usize, state: []f32, scratch: []f32, x: []const f32) []const f32 {
    std.debug.assert(state.len == ring_header + g.frames * in);
    std.debug.assert(scratch.len >= g.taps * in);
    // Only this function and reset write the position, but a bad value must never index
    // past the ring.
    const stored: usize = @as(u32, @bitCast(state[0]));
    const pos = if (stored < g.frames) stored else 0;
    const ring = state[ring_header..];
    @memcpy(ring[pos * in ..][0..in], x[0..in]);
    for (0..g.taps) |t| {
        const back = (g.taps - 1 - t) * g.dilation;
        const frame = ring[((pos + g.frames - back) % g.frames) * in ..][0..in];
        for (0..g.groups) |group| {
            @memcpy(
                scratch[(group * g.taps + t) * g.in_g ..][0..g.in_g],
                frame[group * g.in_g ..][0..g.in_g],
            );
        }
    }
    const next: u32 = @intCast((pos + 1) % g.frames);
    state[0] = @bitCast(next);
    return scratch[0 .. g.taps * in];
}

const testing = std.testing;
const helpers = @import("../test.zig");

/// One streaming step in f64 over the whole input history `xs` (frames of d.in), newest last.
fn naive(d: *const LayerDesc, w: []const f32, b: []const f32, xs: []const f32, y: []f64) void {
    const taps: usize = d.p[0];
    const dilation: usize = d.p[1];
    const groups: usize = d.p[2];
    const in_g = d.in / groups;
    const out_g = d.out / groups;
    const steps = xs.len / d.in;
    for (0..d.out) |o| {
        const group = o / out_g;
        var s: f64 = b[o];
        for (0..in_g) |c| for (0..taps) |t| {
            const back = (taps - 1 - t) * dilation;
            if (back >= steps) continue;
            const frame = xs[(steps - 1 - back) * d.in ..][0..d.in];
            const wv = w[(o * in_g + c) * taps + t];
            const stored = if (d.weight_type == .bf16) mv.roundBf16(wv) else wv;
            s += @as(f64, stored) * frame[group * in_g + c];
        };
        y[o] = s;
    }
}

test "conv1d: streaming steps match a naive causal convolution, f32 and bf16" {
    const a = testing.allocator;
    var prng = std.Random.DefaultPrng.init(23);
    const rng = prng.random();
    const cases = [_][5]u32{
        // in, out, kernelSize, dilation, groups
        .{ 1, 1, 1, 1, 1 }, .{ 1, 12, 5, 1, 1 },   .{ 3, 17, 3, 2, 1 }, .{ 17, 33, 2, 3, 1 },
        .{ 6, 4, 3, 2, 2 }, .{ 33, 33, 4, 1, 33 }, .{ 8, 24, 3, 1, 4 }, .{ 5, 3, 1, 1, 1 },
    };
    for (cases) |cs| for ([_]desc.WeightType{ .f32, .bf16 }) |wt| {
        const d = LayerDesc{
            .kind = .conv1d,
            .act = .linear,
            .in = cs[0],
            .out = cs[1],
            .p = helpers.params(cs[2], cs[3], cs[4]),
            .f = .{ 0, 0 },
            .weight_type = wt,
        };
        try testing.expectEqual(@as(?[]const u8, null), check(&d));
        var lens: [desc.tensors_max]u32 = undefined;
        try testing.expectEqual(@as(u8, 2), tensorLens(&d, &lens));
        const w = try a.alloc(f32, lens[0]);
        defer a.free(w);
        const b = try a.alloc(f32, lens[1]);
        defer a.free(b);
        helpers.randomFloats(rng, w, 1);
        helpers.randomFloats(rng, b, 1);
        const s = sizes(&d, 1);
        const buf = try a.alloc(f32, s.weights + s.state + s.scratch);
        defer a.free(buf);
        const weights = buf[0..s.weights];
        const state = buf[s.weights..][0..s.state];
        const scratch = buf[s.weights + s.state ..];
        pack(&d, &.{ w, b }, weights);
        @memset(state, 0);
        const steps = 12;
        const xs = try a.alloc(f32, steps * d.in);
        defer a.free(xs);
        helpers.randomFloats(rng, xs, 1);
        var y: [33]f32 = undefined;
        var want: [33]f64 = undefined;
        for (1..steps + 1) |n| {
            forward(&d, weights, state, scratch, xs[(n - 1) * d.in ..][0..d.in], y[0..d.out]);
            naive(&d, w, b, xs[0 .. n * d.in], want[0..d.out]);
            try helpers.expectClose(want[0..d.out], y[0..d.out], 1e-5);
        }
    };
}

test "conv1d: a ring position past the ring restarts at frame 0, never indexes past it" {
    const a = testing.allocator;
    const d = LayerDesc{
        .kind = .conv1d,
        .act = .linear,
        .in = 3,
        .out = 2,
        .p = helpers.params(3, 2, 1),
        .f = .{ 0, 0 },
    };
    var lens: [desc.tensors_max]u32 = undefined;
    _ = tensorLens(&d, &lens);
    const w = try a.alloc(f32, lens[0]);
    defer a.free(w);
    @memset(w, 0.5);
    const b = [2]f32{ 0, 0 };
    const s = sizes(&d, 1);
    const buf = try a.alloc(f32, s.weights + s.state + s.scratch);
    defer a.free(buf);
    const weights = buf[0..s.weights];
    const state = buf[s.weights..][0..s.state];
    const scratch = buf[s.weights + s.state ..];
    pack(&d, &.{ w, &b }, weights);
    const frames = Geometry.of(&d).frames;
    var y: [2]f32 = undefined;
    for ([_]u32{ @intCast(frames), 0xFFFF_FFFF }) |bad| {
        @memset(state, 0);
        state[0] = @bitCast(bad);
        forward(&d, weights, state, scratch, &.{ 1, 1, 1 }, &y);
        try testing.expectEqual(@as(u32, 1), @as(u32, @bitCast(state[0])));
        try testing.expectEqualSlices(f32, &.{ 1.5, 1.5 }, &y);
    }
}

test "conv1d: check names the field" {
    var d = LayerDesc{
        .kind = .conv1d,
        .act = .linear,
        .in = 6,
        .out = 4,
        .p = undefined,
        .f = .{ 0, 0 },
    };
    d.p = helpers.params(3, 1, 4);
    try testing.expectEqualStrings("in must be a multiple of p2 (groups)", check(&d).?);
    d.p[2] = 0;
    try testing.expectEqualStrings("p2 (groups) must be at least 1", check(&d).?);
}

// ---- training -------------------------------------------------------------------------------

const common = @import("../train/common.zig");

/// Training over `batch` sequences (row r = b * seq + t), params canonical: `W`
/// [out][in/groups][k], `b` [out]. The forward gathers every position's taps (zeros before
/// the sequence starts, as a reset ring gives) into im2col rows `[group][c][tap]`, saved for
/// backward, then one product per group; backward scatters the taps' gradients back.
pub fn Train(comptime T: type) type {
    return struct {
        const G = common.Gemm(T);
        const A = act.Grad(T);
        const Ctx = common.Ctx(T);

        fn colsLen(d: *const LayerDesc) usize {
            return @as(usize, d.in) * d.p[0];
        }

        pub fn savedLen(d: *const LayerDesc, c: Ctx) usize {
            const pre: usize = if (A.needsPre(d.act)) d.out else 0;
            return c.rows() * (colsLen(d) + pre);
        }

        pub fn scratchLen(d: *const LayerDesc, c: Ctx) usize {
            return c.rows() * colsLen(d);
        }

        pub fn forward(d: *const LayerDesc, p: []const T, x: []const T, y: []T, saved: []T, c: Ctx) void {
            const g = Geometry.of(d);
            const in: usize = d.in;
            const out: usize = d.out;
            const wide = colsLen(d);
            const rows = c.rows();
            const cols = saved[0 .. rows * wide];
            for (0..c.batch) |bi| for (0..c.seq) |t| {
                const r = bi * c.seq + t;
                for (0..g.groups) |group| for (0..g.in_g) |ch| for (0..g.taps) |tap| {
                    const back = (g.taps - 1 - tap) * g.dilation;
                    const v = if (back <= t) x[(r - back) * in + group * g.in_g + ch] else 0;
                    cols[r * wide + (group * g.in_g + ch) * g.taps + tap] = v;
                };
            };
            const w = p[0 .. out * g.cols];
            for (0..g.groups) |group| {
                G.nt(rows, g.out_g, g.cols, cols[group * g.cols ..], wide, w[group * g.out_g * g.cols ..], g.cols, y[group * g.out_g ..], out, false, c.wt, c.pool);
            }
            G.addBias(rows, out, p[out * g.cols ..][0..out], y, out);
            if (A.needsPre(d.act)) @memcpy(saved[rows * wide ..][0 .. rows * out], y[0 .. rows * out]);
            A.forward(d.act, y[0 .. rows * out], out);
        }

        pub fn backward(d: *const LayerDesc, p: []const T, x: []const T, y: []const T, saved: []const T, dy: []T, dx: ?[]T, g_out: []T, c: Ctx) void {
            _ = x;
            const g = Geometry.of(d);
            const in: usize = d.in;
            const out: usize = d.out;
            const wide = colsLen(d);
            const rows = c.rows();
            const cols = saved[0 .. rows * wide];
            const pre = if (A.needsPre(d.act)) saved[rows * wide ..][0 .. rows * out] else saved[0..0];
            A.backward(d.act, y[0 .. rows * out], pre, dy[0 .. rows * out], out);
            const w = p[0 .. out * g.cols];
            for (0..g.groups) |group| {
                G.tn(rows, g.out_g, g.cols, dy[group * g.out_g ..], out, cols[group * g.cols ..], wide, g_out[group * g.out_g * g.cols ..][0 .. g.out_g * g.cols], g.cols, c.pool);
            }
            G.sumRows(rows, out, dy, out, g_out[out * g.cols ..][0..out]);
            const dxv = dx orelse return;
            const dcols = c.scratch[0 .. rows * wide];
            @memset(dcols, 0);
            for (0..g.groups) |group| {
                G.nn(rows, g.out_g, g.cols, dy[group * g.out_g ..], out, w[group * g.out_g * g.cols ..], g.cols, dcols[group * g.cols ..], wide, c.pool);
            }
            @memset(dxv[0 .. rows * in], 0);
            for (0..c.batch) |bi| for (0..c.seq) |t| {
                const r = bi * c.seq + t;
                for (0..g.groups) |group| for (0..g.in_g) |ch| for (0..g.taps) |tap| {
                    const back = (g.taps - 1 - tap) * g.dilation;
                    if (back > t) continue;
                    dxv[(r - back) * in + group * g.in_g + ch] += dcols[r * wide + (group * g.in_g + ch) * g.taps + tap];
                };
            };
        }
    };
}
