//! Causal multi-head self-attention in step mode (kind 9) and the pre-norm transformer block
//! (kind 10); docs/DESIGN.md gives the semantics and the tensor order.
//!
//! Each step projects q, k, v with one fused [3d][d] matrix-vector (matvec.zig; every matrix is
//! f32, bf16 or int8, the layer's weight_type; at int8 each matvec quantises its own input:
//! x for q, k, v, the concatenated heads for Wo, LN2(x1) for W1, act(hidden) for W2; the
//! scores and the weighted sums over the cache stay f32), writes k and v
//! into a ring of `context` positions and attends over the filled positions. The cache is kept
//! channel-major (`kT[c][pos]`, `vT[c][pos]`, rows padded to whole vectors) so that both the
//! scores and the weighted sum of values run along positions, whatever the head width.
//!
//! attention weights: Wqkv packed, bqkv [padded 3d], Wo packed, bo [padded d]
//! transformer weights: ln1 g, b [padded d each], the attention part, ln2 g, b, W1 packed,
//!   b1 [padded ff], W2 packed, b2 [padded d]
//! state: ring [lanes] (next write index, filled count, as exact small floats), kT, vT [d][Cp]
const std = @import("std");
const desc = @import("desc.zig");
const act = @import("act.zig");
const mv = @import("matvec.zig");
const simd = @import("../simd.zig");
const norm = @import("norm.zig");

const LayerDesc = desc.LayerDesc;
const lanes = mv.lanes;
const V = mv.V;
const padded = mv.padded;

/// Offsets and lengths of the attention part, shared by both kinds.
const Attn = struct {
    d: usize,
    heads: usize,
    head_dim: usize,
    context: usize,
    /// `context` rounded up to whole vectors: the row length of kT and vT.
    context_padded: usize,
    weight_type: desc.WeightType,

    fn of(d: *const LayerDesc) Attn {
        const width: usize = d.in;
        return .{
            .d = width,
            .heads = d.p[0],
            .head_dim = width / d.p[0],
            .context = d.p[1],
            .context_padded = padded(d.p[1]),
            .weight_type = d.weight_type,
        };
    }

    fn qkvShape(a: Attn) mv.Shape {
        return .{ .rows = 3 * a.d, .cols = a.d, .weight_type = a.weight_type };
    }
    fn outShape(a: Attn) mv.Shape {
        return .{ .rows = a.d, .cols = a.d, .weight_type = a.weight_type };
    }

    // Weights, relative to the start of the attention part.
    fn qkvBias(a: Attn) usize {
        return a.qkvShape().words();
    }
    fn outWeights(a: Attn) usize {
        return a.qkvBias() + padded(3 * a.d);
    }
    fn outBias(a: Attn) usize {
        return a.outWeights() + a.outShape().words();
    }
    fn weightsLen(a: Attn) usize {
        return a.outBias() + padded(a.d);
    }

    // State.
    fn cacheLen(a: Attn) usize {
        return a.d * a.context_padded;
    }
    fn stateLen(a: Attn) usize {
        return lanes + 2 * a.cacheLen();
    }

    // Scratch: qkv [padded 3d], scores [Cp], heads [padded d], projection [padded d], then
    // the quantised input at int8.
    fn scoresAt(a: Attn) usize {
        return padded(3 * a.d);
    }
    fn headsAt(a: Attn) usize {
        return a.scoresAt() + a.context_padded;
    }
    fn projAt(a: Attn) usize {
        return a.headsAt() + padded(a.d);
    }
    fn xqAt(a: Attn) usize {
        return a.projAt() + padded(a.d);
    }
    fn xqLen(a: Attn) usize {
        return a.qkvShape().inputWords();
    }
    fn scratchLen(a: Attn) usize {
        return a.xqAt() + a.xqLen();
    }
};

fn checkAttn(d: *const LayerDesc) ?[]const u8 {
    if (d.in != d.out) return "out must equal in (the model width d)";
    if (d.p[0] == 0) return "p0 (heads) must be at least 1";
    if (d.in % d.p[0] != 0) return "p0 (heads) must divide in (the model width d)";
    if (d.p[1] == 0) return "p1 (context) must be at least 1";
    // Bounds every size (padding included) so that none computed below overflows, even with
    // a 32-bit usize; the model's plan then applies the 1 GiB arena limit.
    const w: u64 = d.in + lanes;
    if (4 * w * w > desc.tensor_elems_max) return "4 * in * in must be at most 2^30 weights";
    if (2 * w * (@as(u64, d.p[1]) + lanes) > desc.tensor_elems_max) {
        return "the KV cache, 2 * in * p1 (context), must be at most 2^30 floats";
    }
    return null;
}

/// Wq, bq, Wk, bk, Wv, bv, Wo, bo.
fn attnLens(d: *const LayerDesc, lens: *[8]u32) void {
    for (0..4) |m| {
        lens[2 * m] = d.in * d.in;
        lens[2 * m + 1] = d.in;
    }
}

fn packAttn(a: Attn, t: []const []const f32, w: []f32) void {
    std.debug.assert(t.len == 8 and w.len == a.weightsLen());
    @memset(w, 0);
    const qkv = w[0..a.qkvBias()];
    for (0..3) |part| {
        const wt, const bt = .{ t[2 * part], t[2 * part + 1] };
        std.debug.assert(wt.len == a.d * a.d and bt.len == a.d);
        for (0..a.d) |r| {
            const row = part * a.d + r;
            const w_row = wt[r * a.d ..][0..a.d];
            mv.rowScale(a.qkvShape(), qkv, row, &.{w_row});
            mv.packRow(a.qkvShape(), w_row, row, 0, qkv);
            w[a.qkvBias() + row] = bt[r];
        }
    }
    mv.pack(a.outShape(), t[6], w[a.outWeights()..a.outBias()]);
    mv.packBias(t[7], w[a.outBias()..a.weightsLen()]);
}

/// Runs the attention part on `x` [d]; the result is in the scratch's projection slot, which
/// this returns ([d]).
fn attend(a: Attn, w: []const f32, state: []f32, scratch: []f32, x: []const f32) []const f32 {
    std.debug.assert(x.len == a.d and w.len == a.weightsLen());
    std.debug.assert(state.len == a.stateLen() and scratch.len >= a.scratchLen());
    const qkv = scratch[0..padded(3 * a.d)];
    const xq = scratch[a.xqAt()..][0..a.xqLen()];
    mv.matvec(a.qkvShape(), w[0..a.qkvBias()], w[a.qkvBias()..a.outWeights()], x, qkv, xq);
    const k_cache = state[lanes..][0..a.cacheLen()];
    const v_cache = state[lanes + a.cacheLen() ..][0..a.cacheLen()];
    const filled = appendKv(a, state[0..2], qkv, k_cache, v_cache);
    const q = qkv[0..a.d];
    const inv_sqrt = 1 / @sqrt(@as(f32, @floatFromInt(a.head_dim)));
    for (q) |*v| v.* *= inv_sqrt;
    const scores = scratch[a.scoresAt()..][0..a.context_padded];
    const heads = scratch[a.headsAt()..][0..padded(a.d)];
    for (0..a.heads) |head| {
        const c0 = head * a.head_dim;
        scoreAll(a, k_cache, q[c0..][0..a.head_dim], c0, filled, scores);
        act.softmax(scores[0..filled]);
        @memset(scores[filled..padded(filled)], 0);
        for (c0..c0 + a.head_dim) |c| {
            heads[c] = dot(scores[0..padded(filled)], v_cache[c * a.context_padded ..]);
        }
    }
    const proj = scratch[a.projAt()..][0..padded(a.d)];
    const wo = w[a.outWeights()..a.outBias()];
    mv.matvec(a.outShape(), wo, w[a.outBias()..], heads[0..a.d], proj, xq);
    return proj[0..a.d];
}

/// Writes this step's k and v at the ring's next position; returns how many positions are filled.
fn appendKv(a: Attn, ring: []f32, qkv: []const f32, k_cache: []f32, v_cache: []f32) usize {
    const context: f32 = @floatFromInt(a.context);
    // The ring words are ours, but a bad value must never index out of the cache.
    const at: usize = if (ring[0] >= 0 and ring[0] < context) @intFromFloat(ring[0]) else 0;
    const had: usize = if (ring[1] >= 0 and ring[1] <= context) @intFromFloat(ring[1]) else 0;
    for (0..a.d) |c| {
        k_cache[c * a.context_padded + at] = qkv[a.d + c];
        v_cache[c * a.context_padded + at] = qkv[2 * a.d + c];
    }
    const filled = @min(had + 1, a.context);
    ring[0] = @floatFromInt((at + 1) % a.context);
    ring[1] = @floatFromInt(filled);
    return filled;
}

/// scores[pos] = q . k[pos] for one head, pos < padded(filled), four vectors of positions at once.
fn scoreAll(
    a: Attn,
    k_cache: []const f32,
    q: []const f32,
    c0: usize,
    filled: usize,
    s: []f32,
) void {
    const vectors = padded(filled) / lanes;
    var b: usize = 0;
    while (b + 4 <= vectors) : (b += 4) scoreBlock(4, a, k_cache, q, c0, b * lanes, s);
    switch (vectors - b) {
        inline 1...3 => |nb| scoreBlock(nb, a, k_cache, q, c0, b * lanes, s),
        else => {},
    }
}

fn scoreBlock(
    comptime nb: usize,
    a: Attn,
    k_cache: []const f32,
    q: []const f32,
    c0: usize,
    pos0: usize,
    s: []f32,
) void {
    var acc: [nb]V = @splat(@splat(0));
    for (q, c0..) |qc, c| {
        const row = c * a.context_padded + pos0;
        const qv: V = @splat(qc);
        inline for (0..nb) |k| {
            acc[k] = simd.madd(qv, simd.load(k_cache, row + k * lanes), acc[k]);
        }
    }
    inline for (0..nb) |k| simd.store(s, pos0 + k * lanes, acc[k]);
}

/// Sum of p[i] * v[i] over p.len (a whole number of vectors).
fn dot(p: []const f32, v: []const f32) f32 {
    std.debug.assert(p.len % lanes == 0);
    var even: V = @splat(0);
    var odd: V = @splat(0);
    var i: usize = 0;
    while (i + 2 * lanes <= p.len) : (i += 2 * lanes) {
        even = simd.madd(simd.load(p, i), simd.load(v, i), even);
        odd = simd.madd(simd.load(p, i + lanes), simd.load(v, i + lanes), odd);
    }
    if (i < p.len) even = simd.madd(simd.load(p, i), simd.load(v, i), even);
    return @reduce(.Add, even + odd);
}

/// y = (x - mean) / sqrt(var + eps) * g + b over x.len elements (biased variance).
/// As norm.zig's layer norm: the mean gets one correction step (a constant x gives variance
/// 0, not an ulp of x over sqrt(eps)), and sums that overflow take the scaled path.
fn layerNorm(x: []const f32, g: []const f32, b: []const f32, eps: f32, y: []f32) void {
    const n: f32 = @floatFromInt(x.len);
    const rough = sum(x, 0, false) / n;
    const mean = rough + sum(x, rough, false) / n;
    const variance = sum(x, mean, true) / n;
    if (!std.math.isFinite(variance) and norm.layerNormScaled(x, g, b, eps, y)) return;
    const inv = 1 / @sqrt(variance + eps);
    const whole = x.len / lanes * lanes;
    var i: usize = 0;
    while (i < whole) : (i += lanes) {
        const centred = (simd.load(x, i) - @as(V, @splat(mean))) * @as(V, @splat(inv));
        simd.store(y, i, simd.madd(centred, simd.load(g, i), simd.load(b, i)));
    }
    for (whole..x.len) |j| y[j] = (x[j] - mean) * inv * g[j] + b[j];
}

/// Sum of (x - centre), or of (x - centre)^2 when `square`. The choice is explicit: a mean of
/// exactly 0 is common (symmetric inputs) and must still give the variance.
fn sum(x: []const f32, centre: f32, comptime square: bool) f32 {
    const whole = x.len / lanes * lanes;
    var acc: V = @splat(0);
    var i: usize = 0;
    while (i < whole) : (i += lanes) {
        const v = simd.load(x, i) - @as(V, @splat(centre));
        acc += if (square) v * v else v;
    }
    var total = @reduce(.Add, acc);
    for (x[whole..]) |v| total += if (square) (v - centre) * (v - centre) else v - centre;
    return total;
}

pub const attention = struct {
    pub fn check(d: *const LayerDesc) ?[]const u8 {
        std.debug.assert(d.kind == .attention);
        if (desc.noFusedActivation(d)) |m| return m;
        return checkAttn(d);
    }

    pub fn tensorLens(d: *const LayerDesc, lens: *[desc.tensors_max]u32) u8 {
        attnLens(d, lens[0..8]);
        return 8;
    }

    /// Tensors that hold weight matrices (bit t for tensor t): Wq, Wk, Wv, Wo.
    pub fn matrixTensors(d: *const LayerDesc) u16 {
        _ = d;
        return 0b0101_0101;
    }

    pub fn matrixGeometry(d: *const LayerDesc) desc.MatrixGeometry {
        return .{ .rows = 4 * @as(u64, d.in), .cols_max = d.in };
    }

    pub fn sizes(d: *const LayerDesc, max_batch: u32) desc.Sizes {
        _ = max_batch; // model.zig runs stateful layers one row at a time
        const a = Attn.of(d);
        return .{ .weights = a.weightsLen(), .state = a.stateLen(), .scratch = a.scratchLen() };
    }

    pub fn pack(d: *const LayerDesc, tensors: []const []const f32, weights: []f32) void {
        packAttn(Attn.of(d), tensors, weights);
    }

    pub fn forward(
        d: *const LayerDesc,
        weights: []const f32,
        state: []f32,
        scratch: []f32,
        x: []const f32,
        y: []f32,
    ) void {
        const out = attend(Attn.of(d), weights, state, scratch, x);
        @memcpy(y[0..out.len], out);
    }
};

/// Offsets of the transformer block's weights and scratch around its attention part.
const Block = struct {
    a: Attn,
    ff: usize,

    fn of(d: *const LayerDesc) Block {
        return .{ .a = Attn.of(d), .ff = d.p[2] };
    }

    fn dp(l: Block) usize {
        return padded(l.a.d);
    }
    fn w1Shape(l: Block) mv.Shape {
        return .{ .rows = l.ff, .cols = l.a.d, .weight_type = l.a.weight_type };
    }
    fn w2Shape(l: Block) mv.Shape {
        return .{ .rows = l.a.d, .cols = l.ff, .weight_type = l.a.weight_type };
    }
    // Weights: ln1 g, ln1 b, attention, ln2 g, ln2 b, W1, b1, W2, b2.
    fn attnAt(l: Block) usize {
        return 2 * l.dp();
    }
    fn ln2At(l: Block) usize {
        return l.attnAt() + l.a.weightsLen();
    }
    fn w1At(l: Block) usize {
        return l.ln2At() + 2 * l.dp();
    }
    fn b1At(l: Block) usize {
        return l.w1At() + l.w1Shape().words();
    }
    fn w2At(l: Block) usize {
        return l.b1At() + padded(l.ff);
    }
    fn b2At(l: Block) usize {
        return l.w2At() + l.w2Shape().words();
    }
    fn weightsLen(l: Block) usize {
        return l.b2At() + l.dp();
    }
    // Scratch after the attention part's: normed [dp], x1 [dp], hidden [padded ff], ff out [dp].
    fn normedAt(l: Block) usize {
        return l.a.scratchLen();
    }
    fn x1At(l: Block) usize {
        return l.normedAt() + l.dp();
    }
    fn hiddenAt(l: Block) usize {
        return l.x1At() + l.dp();
    }
    fn ffOutAt(l: Block) usize {
        return l.hiddenAt() + padded(l.ff);
    }
    fn xqAt(l: Block) usize {
        return l.ffOutAt() + l.dp();
    }
    fn xqLen(l: Block) usize {
        return @max(l.w1Shape().inputWords(), l.w2Shape().inputWords());
    }
    fn scratchLen(l: Block) usize {
        return l.xqAt() + l.xqLen();
    }
};

pub const transformer = struct {
    pub fn check(d: *const LayerDesc) ?[]const u8 {
        std.debug.assert(d.kind == .transformer);
        if (checkAttn(d)) |msg| return msg;
        if (d.p[2] == 0) return "p2 (ffDim) must be at least 1";
        if (!(std.math.isFinite(d.f[0]) and d.f[0] > 0)) {
            return "f0 (epsilon) must be finite and greater than 0";
        }
        if (2 * (@as(u64, d.p[2]) + lanes) * (@as(u64, d.in) + lanes) > desc.tensor_elems_max) {
            return "2 * in * p2 (ffDim) must be at most 2^30 weights";
        }
        return null;
    }

    pub fn tensorLens(d: *const LayerDesc, lens: *[desc.tensors_max]u32) u8 {
        lens[0] = d.in;
        lens[1] = d.in;
        attnLens(d, lens[2..10]);
        lens[10] = d.in;
        lens[11] = d.in;
        lens[12] = d.p[2] * d.in;
        lens[13] = d.p[2];
        lens[14] = d.in * d.p[2];
        lens[15] = d.in;
        return 16;
    }

    /// Tensors that hold weight matrices (bit t for tensor t): Wq, Wk, Wv, Wo, W1, W2.
    pub fn matrixTensors(d: *const LayerDesc) u16 {
        _ = d;
        return 0b0101_0001_0101_0100;
    }

    pub fn matrixGeometry(d: *const LayerDesc) desc.MatrixGeometry {
        const n: u64 = d.in;
        return .{ .rows = 5 * n + d.p[2], .cols_max = @max(n, d.p[2]) };
    }

    pub fn sizes(d: *const LayerDesc, max_batch: u32) desc.Sizes {
        _ = max_batch; // model.zig runs stateful layers one row at a time
        const l = Block.of(d);
        return .{ .weights = l.weightsLen(), .state = l.a.stateLen(), .scratch = l.scratchLen() };
    }

    pub fn pack(d: *const LayerDesc, tensors: []const []const f32, weights: []f32) void {
        const l = Block.of(d);
        const t = tensors;
        std.debug.assert(t.len == 16 and weights.len == l.weightsLen());
        @memset(weights, 0);
        @memcpy(weights[0..l.a.d], t[0]);
        @memcpy(weights[l.dp()..][0..l.a.d], t[1]);
        packAttn(l.a, t[2..10], weights[l.attnAt()..l.ln2At()]);
        @memcpy(weights[l.ln2At()..][0..l.a.d], t[10]);
        @memcpy(weights[l.ln2At() + l.dp() ..][0..l.a.d], t[11]);
        mv.pack(l.w1Shape(), t[12], weights[l.w1At()..l.b1At()]);
        mv.packBias(t[13], weights[l.b1At()..l.w2At()]);
        mv.pack(l.w2Shape(), t[14], weights[l.w2At()..l.b2At()]);
        mv.packBias(t[15], weights[l.b2At()..l.weightsLen()]);
    }

    pub fn forward(
        d: *const LayerDesc,
        weights: []const f32,
        state: []f32,
        scratch: []f32,
        x: []const f32,
        y: []f32,
    ) void {
        const l = Block.of(d);
        const n = l.a.d;
        const w = weights;
        std.debug.assert(w.len == l.weightsLen() and scratch.len >= l.scratchLen());
        std.debug.assert(x.len == n and y.len >= n);
        const normed = scratch[l.normedAt()..][0..n];
        const x1 = scratch[l.x1At()..][0..n];
        layerNorm(x, w[0..n], w[l.dp()..][0..n], d.f[0], normed);
        const attended = attend(l.a, w[l.attnAt()..l.ln2At()], state, scratch, normed);
        for (x1, x, attended) |*o, a, b| o.* = a + b;
        layerNorm(x1, w[l.ln2At()..][0..n], w[l.ln2At() + l.dp() ..][0..n], d.f[0], normed);
        const hidden = scratch[l.hiddenAt()..][0..padded(l.ff)];
        const xq = scratch[l.xqAt()..][0..l.xqLen()];
        mv.matvec(l.w1Shape(), w[l.w1At()..l.b1At()], w[l.b1At()..l.w2At()], normed, hidden, xq);
        act.apply(d.act, hidden[0..l.ff]);
        const ff_out = scratch[l.ffOutAt()..][0..l.dp()];
        const b2 = w[l.b2At()..l.weightsLen()];
        mv.matvec(l.w2Shape(), w[l.w2At()..l.b2At()], b2, hidden[0..l.ff], ff_out, xq);
        for (y[0..n], x1, ff_out[0..n]) |*o, a, b| o.* = a + b;
    }
};

// ---- tests against naive f64 loops ---------------------------------------------------------

const testing = std.testing;
const helpers = @import("../test.zig");

/// Naive f64 model of both kinds: keeps every k and v ever made and attends over the last
/// `context` of them.
const Reference = struct {
    d: usize,
    heads: usize,
    context: usize,
    keys: std.ArrayList([]f64) = .empty,
    values: std.ArrayList([]f64) = .empty,

    fn linear(a: std.mem.Allocator, w: []const f32, b: []const f32, x: []const f64) ![]f64 {
        const y = try a.alloc(f64, b.len);
        for (y, 0..) |*o, r| {
            o.* = b[r];
            for (x, 0..) |xi, i| o.* += @as(f64, w[r * x.len + i]) * xi;
        }
        return y;
    }

    /// t: Wq, bq, Wk, bk, Wv, bv, Wo, bo.
    fn attend(
        ref: *Reference,
        a: std.mem.Allocator,
        t: []const []const f32,
        x: []const f64,
    ) ![]f64 {
        const q = try linear(a, t[0], t[1], x);
        try ref.keys.append(a, try linear(a, t[2], t[3], x));
        try ref.values.append(a, try linear(a, t[4], t[5], x));
        const first = ref.keys.items.len -| ref.context;
        const keys = ref.keys.items[first..];
        const values = ref.values.items[first..];
        const hd = ref.d / ref.heads;
        const heads = try a.alloc(f64, ref.d);
        const p = try a.alloc(f64, keys.len);
        for (0..ref.heads) |h| {
            var m: f64 = -std.math.inf(f64);
            for (p, keys) |*s, k| {
                s.* = 0;
                for (h * hd..(h + 1) * hd) |c| s.* += q[c] * k[c];
                s.* /= @sqrt(@as(f64, @floatFromInt(hd)));
                m = @max(m, s.*);
            }
            var total: f64 = 0;
            for (p) |*s| {
                s.* = @exp(s.* - m);
                total += s.*;
            }
            for (h * hd..(h + 1) * hd) |c| {
                heads[c] = 0;
                for (p, values) |s, v| heads[c] += s / total * v[c];
            }
        }
        return linear(a, t[6], t[7], heads);
    }

    fn layerNorm64(
        a: std.mem.Allocator,
        x: []const f64,
        g: []const f32,
        b: []const f32,
        eps: f32,
    ) ![]f64 {
        var mean: f64 = 0;
        for (x) |v| mean += v / @as(f64, @floatFromInt(x.len));
        var variance: f64 = 0;
        for (x) |v| variance += (v - mean) * (v - mean) / @as(f64, @floatFromInt(x.len));
        const y = try a.alloc(f64, x.len);
        for (y, x, g, b) |*o, v, gi, bi| o.* = (v - mean) / @sqrt(variance + eps) * gi + bi;
        return y;
    }

    fn block(
        ref: *Reference,
        a: std.mem.Allocator,
        t: []const []const f32,
        x: []const f64,
        f: desc.Act,
        eps: f32,
    ) ![]f64 {
        const attended = try ref.attend(a, t[2..10], try layerNorm64(a, x, t[0], t[1], eps));
        const x1 = try a.alloc(f64, x.len);
        for (x1, x, attended) |*o, u, v| o.* = u + v;
        const hidden = try linear(a, t[12], t[13], try layerNorm64(a, x1, t[10], t[11], eps));
        for (hidden) |*v| v.* = switch (f) {
            .gelu => 0.5 * v.* * (1 + act.erf64(v.* * std.math.sqrt1_2)),
            .relu => @max(v.*, 0),
            .tanh => std.math.tanh(v.*),
            else => unreachable,
        };
        const y = try linear(a, t[14], t[15], hidden);
        for (y, x1) |*o, v| o.* += v;
        return y;
    }
};

/// Random tensors scaled by 1/sqrt(width) to keep values near 1.
fn randomTensors(
    a: std.mem.Allocator,
    r: std.Random,
    comptime kernel: type,
    d: *const LayerDesc,
) ![][]f32 {
    return helpers.randomTensors(a, r, kernel, d, 2.4 / @sqrt(@as(f32, @floatFromInt(d.in))));
}

const Case = struct {
    d: u32,
    heads: u32,
    context: u32,
    ff: u32 = 0,
    f: desc.Act = .linear,
    weight_type: desc.WeightType = .f32,
};

fn expectSteps(comptime kernel: type, kind: desc.Kind, case: Case, steps: usize) !void {
    var arena = std.heap.ArenaAllocator.init(testing.allocator);
    defer arena.deinit();
    const a = arena.allocator();
    var rng = std.Random.DefaultPrng.init(case.d * 7919 + case.heads * 31 + case.context);
    const r = rng.random();
    const d = LayerDesc{
        .kind = kind,
        .act = case.f,
        .in = case.d,
        .out = case.d,
        .p = .{ case.heads, case.context, case.ff, 0, 0, 0, 0, 0 },
        .f = .{ 1e-5, 0 },
        .weight_type = case.weight_type,
    };
    try testing.expect(kernel.check(&d) == null);
    const tensors = try randomTensors(a, r, kernel, &d);
    if (kind == .transformer) for ([_]usize{ 0, 10 }) |g| {
        for (tensors[g]) |*v| v.* += 1; // layer-norm gains near 1
    };
    const l = try helpers.packLayer(a, kernel, &d, tensors);
    const matrices = kernel.matrixTensors(&d);
    const stored = try helpers.asStored(a, @ptrCast(tensors), matrices, d.weight_type);
    var ref = Reference{ .d = case.d, .heads = case.heads, .context = case.context };
    const x = try a.alloc(f32, case.d);
    const x64 = try a.alloc(f64, case.d);
    const y = try a.alloc(f32, case.d);
    for (0..steps) |_| {
        for (x, x64) |*v, *w| {
            v.* = (r.float(f32) - 0.5) * 4;
            w.* = v.*;
        }
        kernel.forward(&d, l.weights, l.state, l.scratch, x, y);
        const want = if (kind == .attention)
            try ref.attend(a, stored, x64)
        else
            try ref.block(a, stored, x64, case.f, d.f[0]);
        // f32 dot products of up to 48 terms, the softmax's exp (~1e-7 relative) and, for the
        // block, layer norm dividing by the spread of its input.
        for (want, y) |e, got| try testing.expectApproxEqAbs(e, got, 1e-5);
    }
}

const cases = [_]Case{
    .{ .d = 1, .heads = 1, .context = 1 },
    .{ .d = 3, .heads = 1, .context = 3 },
    .{ .d = 3, .heads = 3, .context = 2 },
    .{ .d = 17, .heads = 1, .context = 5 },
    .{ .d = 33, .heads = 3, .context = 17 },
    .{ .d = 32, .heads = 4, .context = 40 },
};

const weight_types = [_]desc.WeightType{ .f32, .bf16 };

test "attention: matches an f64 reference while the KV ring wraps, f32 and bf16" {
    for (cases) |base| for (weight_types) |wt| {
        var case = base;
        case.weight_type = wt;
        try expectSteps(attention, .attention, case, case.context + 9);
    };
}

test "transformer: block matches an f64 reference while the KV ring wraps, f32 and bf16" {
    const acts = [_]desc.Act{ .gelu, .relu, .tanh };
    for (cases, 0..) |base, i| for (weight_types) |wt| {
        var case = base;
        case.ff = 2 * base.d + 1;
        case.f = acts[i % acts.len];
        case.weight_type = wt;
        try expectSteps(transformer, .transformer, case, case.context + 9);
    };
}

test "attention: reset (zeroed state) restarts the positions" {
    var arena = std.heap.ArenaAllocator.init(testing.allocator);
    defer arena.deinit();
    const a = arena.allocator();
    var rng = std.Random.DefaultPrng.init(5);
    const d = LayerDesc{
        .kind = .attention,
        .act = .linear,
        .in = 17,
        .out = 17,
        .p = .{ 1, 4, 0, 0, 0, 0, 0, 0 },
        .f = @splat(0),
    };
    const tensors = try randomTensors(a, rng.random(), attention, &d);
    const l = try helpers.packLayer(a, attention, &d, tensors);
    var first: [17]f32 = undefined;
    var again: [17]f32 = undefined;
    var x: [17]f32 = undefined;
    for (&x, 0..) |*v, i| v.* = @as(f32, @floatFromInt(i)) * 0.1 - 0.8;
    attention.forward(&d, l.weights, l.state, l.scratch, &x, &first);
    for (0..6) |_| attention.forward(&d, l.weights, l.state, l.scratch, &x, &again);
    @memset(l.state, 0);
    attention.forward(&d, l.weights, l.state, l.scratch, &x, &again);
    try testing.expectEqualSlices(f32, &first, &again);
}

test "attention, transformer: check refuses bad heads, context, width and epsilon" {
    var d = LayerDesc{
        .kind = .attention,
        .act = .linear,
        .in = 12,
        .out = 12,
        .p = .{ 5, 8, 0, 0, 0, 0, 0, 0 },
        .f = @splat(0),
    };
    try testing.expect(attention.check(&d) != null); // 12 % 5
    d.p[0] = 4;
    try testing.expect(attention.check(&d) == null);
    d.p[1] = 0;
    try testing.expect(attention.check(&d) != null);
    d.p[1] = 8;
    d.out = 6;
    try testing.expect(attention.check(&d) != null);
    d = .{
        .kind = .transformer,
        .act = .gelu,
        .in = 12,
        .out = 12,
        .p = .{ 4, 8, 24, 0, 0, 0, 0, 0 },
        .f = .{ 1e-5, 0 },
    };
    try testing.expect(transformer.check(&d) == null);
    d.f[0] = 0;
    try testing.expect(transformer.check(&d) != null);
    d.f[0] = std.math.nan(f32);
    try testing.expect(transformer.check(&d) != null);
    d.f[0] = 1e-5;
    d.p[2] = 0;
    try testing.expect(transformer.check(&d) != null);
    d = .{
        .kind = .attention,
        .act = .linear,
        .in = 65536,
        .out = 65536,
        .p = .{ 1, 8192, 0, 0, 0, 0, 0, 0 },
        .f = @splat(0),
    };
    try testing.expect(attention.check(&d) != null);
}

test "layerNorm: a constant input gives b exactly; sums that overflow f32 still normalise" {
    var g: [37]f32 = undefined;
    var b: [37]f32 = undefined;
    for (&g, &b, 0..) |*gi, *bi, i| {
        gi.* = 1 + @as(f32, @floatFromInt(i)) / 64;
        bi.* = @as(f32, @floatFromInt(i)) / 8 - 2;
    }
    var x: [37]f32 = undefined;
    var y: [37]f32 = undefined;
    for ([_]f32{ 0.1, 1e5, -3.3e7, 3e38 }) |c| for ([_]usize{ 1, 3, 17, 37 }) |n| {
        @memset(x[0..n], c);
        layerNorm(x[0..n], g[0..n], b[0..n], 1e-5, y[0..n]);
        try testing.expectEqualSlices(f32, b[0..n], y[0..n]);
    };
    // (1e20)^2 overflows f32; the layer norm of [1e20, -1e20, 0] is [1, -1, 0] * sqrt(3/2).
    layerNorm(&.{ 1e20, -1e20, 0 }, g[0..3], b[0..3], 1e-5, y[0..3]);
    const s: f32 = @sqrt(1.5);
    for (y[0..3], [_]f32{ s, -s, 0 }, g[0..3], b[0..3]) |got, z, gi, bi| {
        try testing.expectApproxEqAbs(z * gi + bi, got, 1e-6);
    }
}

test "layerNorm: an input with mean exactly 0 is still normalised" {
    const x = [_]f32{ -2, -1, 1, 2 };
    const g = [_]f32{ 1, 1, 1, 1 };
    const b = [_]f32{ 0, 0, 0, 0 };
    var y: [4]f32 = undefined;
    layerNorm(&x, &g, &b, 1e-5, &y);
    // variance 2.5: y = x / sqrt(2.5 + 1e-5)
    for (x, y) |xi, yi| try std.testing.expectApproxEqAbs(xi / @sqrt(2.5 + 1e-5), yi, 1e-6);
}

// ---- training -------------------------------------------------------------------------------

const common = @import("../train/common.zig");
const norm_layers = @import("norm.zig");

/// The training-time form of causal multi-head self-attention over whole sequences:
/// position t attends to positions max(0, t - context + 1)..t, exactly the ring cache's
/// view. Params `Wq`, `bq`, `Wk`, `bk`, `Wv`, `bv`, `Wo`, `bo` (8 tensors, 4 d^2 + 4 d).
/// Saved: q (already scaled by 1/sqrt(head_dim), as the step kernel scales it), k, v, the
/// concatenated heads [rows][d] each, and the attention weights [batch][heads][seq][seq].
fn AttnCore(comptime T: type) type {
    return struct {
        const G = common.Gemm(T);
        const Ctx = common.Ctx(T);

        const Dims = struct {
            d: usize,
            heads: usize,
            context: usize,
            fn hd(m: Dims) usize {
                return m.d / m.heads;
            }
            fn scale(m: Dims) T {
                return 1 / @sqrt(@as(T, @floatFromInt(m.hd())));
            }
        };

        fn savedLen(m: Dims, c: Ctx) usize {
            return 4 * c.rows() * m.d + c.batch * m.heads * c.seq * c.seq;
        }

        fn scratchLen(m: Dims, c: Ctx) usize {
            return 4 * c.rows() * m.d + c.seq;
        }

        const Parts = struct { wq: []const T, bq: []const T, wk: []const T, bk: []const T, wv: []const T, bv: []const T, wo: []const T, bo: []const T };

        fn parts(m: Dims, p: []const T) Parts {
            const dd = m.d * m.d;
            const d = m.d;
            return .{
                .wq = p[0..dd],                  .bq = p[dd..][0..d],
                .wk = p[dd + d ..][0..dd],       .bk = p[2 * dd + d ..][0..d],
                .wv = p[2 * dd + 2 * d ..][0..dd], .bv = p[3 * dd + 2 * d ..][0..d],
                .wo = p[3 * dd + 3 * d ..][0..dd], .bo = p[4 * dd + 3 * d ..][0..d],
            };
        }

        fn gradParts(m: Dims, g: []T) [8][]T {
            const dd = m.d * m.d;
            const d = m.d;
            return .{
                g[0..dd],                  g[dd..][0..d],
                g[dd + d ..][0..dd],       g[2 * dd + d ..][0..d],
                g[2 * dd + 2 * d ..][0..dd], g[3 * dd + 2 * d ..][0..d],
                g[3 * dd + 3 * d ..][0..dd], g[4 * dd + 3 * d ..][0..d],
            };
        }

        fn first(m: Dims, t: usize) usize {
            return (t + 1) -| m.context;
        }

        fn forward(m: Dims, p: []const T, x: []const T, y: []T, saved: []T, c: Ctx) void {
            const rows = c.rows();
            const d = m.d;
            const hd = m.hd();
            const S = c.seq;
            const w = parts(m, p);
            const q = saved[0 .. rows * d];
            const k = saved[rows * d ..][0 .. rows * d];
            const v = saved[2 * rows * d ..][0 .. rows * d];
            const o = saved[3 * rows * d ..][0 .. rows * d];
            const probs = saved[4 * rows * d ..][0 .. c.batch * m.heads * S * S];
            G.nt(rows, d, d, x, d, w.wq, d, q, d, false, c.wt, c.pool);
            G.addBias(rows, d, w.bq, q, d);
            for (q) |*e| e.* *= m.scale();
            G.nt(rows, d, d, x, d, w.wk, d, k, d, false, c.wt, c.pool);
            G.addBias(rows, d, w.bk, k, d);
            G.nt(rows, d, d, x, d, w.wv, d, v, d, false, c.wt, c.pool);
            G.addBias(rows, d, w.bv, v, d);
            @memset(o, 0);
            for (0..c.batch) |b| for (0..m.heads) |h| for (0..S) |t| {
                const pr = probs[((b * m.heads + h) * S + t) * S ..][0..S];
                @memset(pr, 0);
                const qt = q[(b * S + t) * d + h * hd ..][0..hd];
                const lo = first(m, t);
                var mx: T = -std.math.inf(T);
                for (lo..t + 1) |s| {
                    pr[s] = G.dot(qt.ptr, k[(b * S + s) * d + h * hd ..].ptr, hd);
                    mx = @max(mx, pr[s]);
                }
                var total: T = 0;
                for (lo..t + 1) |s| {
                    pr[s] = @exp(pr[s] - mx);
                    total += pr[s];
                }
                const ot = o[(b * S + t) * d + h * hd ..][0..hd];
                for (lo..t + 1) |s| {
                    pr[s] /= total;
                    G.axpy(hd, pr[s], v[(b * S + s) * d + h * hd ..].ptr, ot.ptr);
                }
            };
            G.nt(rows, d, d, o, d, w.wo, d, y, d, false, c.wt, c.pool);
            G.addBias(rows, d, w.bo, y, d);
        }

        /// dy is read only; dx is set (not added to) when given.
        fn backward(m: Dims, p: []const T, x: []const T, saved: []const T, dy: []const T, dx: ?[]T, g: []T, scratch: []T, c: Ctx) void {
            const rows = c.rows();
            const d = m.d;
            const hd = m.hd();
            const S = c.seq;
            const w = parts(m, p);
            const gp = gradParts(m, g);
            const q = saved[0 .. rows * d];
            const k = saved[rows * d ..][0 .. rows * d];
            const v = saved[2 * rows * d ..][0 .. rows * d];
            const o = saved[3 * rows * d ..][0 .. rows * d];
            const probs = saved[4 * rows * d ..][0 .. c.batch * m.heads * S * S];
            const d_o = scratch[0 .. rows * d];
            const dq = scratch[rows * d ..][0 .. rows * d];
            const dk = scratch[2 * rows * d ..][0 .. rows * d];
            const dv = scratch[3 * rows * d ..][0 .. rows * d];
            const dp = scratch[4 * rows * d ..][0..S];
            G.tn(rows, d, d, dy, d, o, d, gp[6], d, c.pool);
            G.sumRows(rows, d, dy, d, gp[7]);
            G.nnSet(rows, d, d, dy, d, w.wo, d, d_o, d, c.pool);
            @memset(dq, 0);
            @memset(dk, 0);
            @memset(dv, 0);
            for (0..c.batch) |b| for (0..m.heads) |h| for (0..S) |t| {
                const pr = probs[((b * m.heads + h) * S + t) * S ..][0..S];
                const at = (b * S + t) * d + h * hd;
                const lo = first(m, t);
                var dot_sum: T = 0;
                for (lo..t + 1) |s| {
                    const as = (b * S + s) * d + h * hd;
                    dp[s] = G.dot(d_o[at..].ptr, v[as..].ptr, hd);
                    dot_sum += pr[s] * dp[s];
                    G.axpy(hd, pr[s], d_o[at..].ptr, dv[as..].ptr);
                }
                for (lo..t + 1) |s| {
                    const as = (b * S + s) * d + h * hd;
                    const ds = pr[s] * (dp[s] - dot_sum);
                    G.axpy(hd, ds, k[as..].ptr, dq[at..].ptr);
                    G.axpy(hd, ds, q[at..].ptr, dk[as..].ptr);
                }
            };
            for (dq) |*e| e.* *= m.scale();
            G.tn(rows, d, d, dq, d, x, d, gp[0], d, c.pool);
            G.sumRows(rows, d, dq, d, gp[1]);
            G.tn(rows, d, d, dk, d, x, d, gp[2], d, c.pool);
            G.sumRows(rows, d, dk, d, gp[3]);
            G.tn(rows, d, d, dv, d, x, d, gp[4], d, c.pool);
            G.sumRows(rows, d, dv, d, gp[5]);
            const out = dx orelse return;
            G.nnSet(rows, d, d, dq, d, w.wq, d, out, d, c.pool);
            G.nn(rows, d, d, dk, d, w.wk, d, out, d, c.pool);
            G.nn(rows, d, d, dv, d, w.wv, d, out, d, c.pool);
        }
    };
}

fn dimsOf(comptime T: type, d: *const LayerDesc) AttnCore(T).Dims {
    return .{ .d = d.in, .heads = d.p[0], .context = d.p[1] };
}

/// The attention layer (kind 9) for training: AttnCore over the layer's params.
pub fn TrainAttention(comptime T: type) type {
    return struct {
        const C = AttnCore(T);
        const Ctx = common.Ctx(T);

        pub fn savedLen(d: *const LayerDesc, c: Ctx) usize {
            return C.savedLen(dimsOf(T, d), c);
        }

        pub fn scratchLen(d: *const LayerDesc, c: Ctx) usize {
            return C.scratchLen(dimsOf(T, d), c);
        }

        pub fn forward(d: *const LayerDesc, p: []const T, x: []const T, y: []T, saved: []T, c: Ctx) void {
            C.forward(dimsOf(T, d), p, x, y, saved, c);
        }

        pub fn backward(d: *const LayerDesc, p: []const T, x: []const T, y: []const T, saved: []const T, dy: []T, dx: ?[]T, g: []T, c: Ctx) void {
            _ = y;
            C.backward(dimsOf(T, d), p, x, saved, dy, dx, g, c.scratch, c);
        }
    };
}

/// The pre-norm transformer block (kind 10) for training:
/// `x1 = x + attention(LN1(x))`, `y = x1 + W2 act(W1 LN2(x1) + b1) + b2`.
/// Saved, in order: LN1(x) [rows][d], LN1's mean and rstd [rows][2], the attention core's
/// saved values, x1, LN2(x1), LN2's mean and rstd, the FF pre-activation and activation
/// [rows][ff] each.
pub fn TrainTransformer(comptime T: type) type {
    return struct {
        const C = AttnCore(T);
        const G = common.Gemm(T);
        const A = act.Grad(T);
        const LN = norm_layers.TrainLayerNorm(T);
        const Ctx = common.Ctx(T);

        const Off = struct {
            d: usize,
            ff: usize,
            rows: usize,
            core: usize,
            // params
            fn attnAt(o: Off) usize {
                return 2 * o.d;
            }
            fn ln2At(o: Off) usize {
                return 2 * o.d + 4 * o.d * o.d + 4 * o.d;
            }
            fn w1At(o: Off) usize {
                return o.ln2At() + 2 * o.d;
            }
            fn b1At(o: Off) usize {
                return o.w1At() + o.ff * o.d;
            }
            fn w2At(o: Off) usize {
                return o.b1At() + o.ff;
            }
            fn b2At(o: Off) usize {
                return o.w2At() + o.d * o.ff;
            }
            // saved
            fn ms1At(o: Off) usize {
                return o.rows * o.d;
            }
            fn coreAt(o: Off) usize {
                return o.ms1At() + 2 * o.rows;
            }
            fn x1At(o: Off) usize {
                return o.coreAt() + o.core;
            }
            fn h2At(o: Off) usize {
                return o.x1At() + o.rows * o.d;
            }
            fn ms2At(o: Off) usize {
                return o.h2At() + o.rows * o.d;
            }
            fn uAt(o: Off) usize {
                return o.ms2At() + 2 * o.rows;
            }
            fn fAt(o: Off) usize {
                return o.uAt() + o.rows * o.ff;
            }
            fn savedLen(o: Off) usize {
                return o.fAt() + o.rows * o.ff;
            }
        };

        fn off(d: *const LayerDesc, c: Ctx) Off {
            return .{ .d = d.in, .ff = d.p[2], .rows = c.rows(), .core = C.savedLen(dimsOf(T, d), c) };
        }

        pub fn savedLen(d: *const LayerDesc, c: Ctx) usize {
            return off(d, c).savedLen();
        }

        pub fn scratchLen(d: *const LayerDesc, c: Ctx) usize {
            const o = off(d, c);
            return C.scratchLen(dimsOf(T, d), c) + o.rows * o.ff + 3 * o.rows * o.d;
        }

        fn norms(o: Off, x: []const T, g: []const T, b: []const T, eps: T, y: []T, ms: []T) void {
            for (0..o.rows) |r| {
                const v = LN.row(x[r * o.d ..][0..o.d], g, b, eps, y[r * o.d ..][0..o.d]);
                ms[2 * r] = v[0];
                ms[2 * r + 1] = v[1];
            }
        }

        pub fn forward(d: *const LayerDesc, p: []const T, x: []const T, y: []T, saved: []T, c: Ctx) void {
            const o = off(d, c);
            const n = o.rows * o.d;
            const eps: T = d.f[0];
            const h1 = saved[0..n];
            norms(o, x, p[0..o.d], p[o.d..][0..o.d], eps, h1, saved[o.ms1At()..][0 .. 2 * o.rows]);
            const x1 = saved[o.x1At()..][0..n];
            C.forward(dimsOf(T, d), p[o.attnAt()..], h1, x1, saved[o.coreAt()..][0..o.core], c);
            for (x1, x[0..n]) |*a, b| a.* += b;
            const h2 = saved[o.h2At()..][0..n];
            norms(o, x1, p[o.ln2At()..][0..o.d], p[o.ln2At() + o.d ..][0..o.d], eps, h2, saved[o.ms2At()..][0 .. 2 * o.rows]);
            const u = saved[o.uAt()..][0 .. o.rows * o.ff];
            const f = saved[o.fAt()..][0 .. o.rows * o.ff];
            G.nt(o.rows, o.ff, o.d, h2, o.d, p[o.w1At()..][0 .. o.ff * o.d], o.d, u, o.ff, false, c.wt, c.pool);
            G.addBias(o.rows, o.ff, p[o.b1At()..][0..o.ff], u, o.ff);
            @memcpy(f, u);
            A.forward(d.act, f, o.ff);
            G.nt(o.rows, o.d, o.ff, f, o.ff, p[o.w2At()..][0 .. o.d * o.ff], o.ff, y, o.d, false, c.wt, c.pool);
            G.addBias(o.rows, o.d, p[o.b2At()..][0..o.d], y, o.d);
            for (y[0..n], x1) |*a, b| a.* += b;
        }

        pub fn backward(d: *const LayerDesc, p: []const T, x: []const T, y: []const T, saved: []const T, dy: []T, dx: ?[]T, g: []T, c: Ctx) void {
            _ = y;
            const o = off(d, c);
            const n = o.rows * o.d;
            const core_scratch = C.scratchLen(dimsOf(T, d), c);
            const df = c.scratch[core_scratch..][0 .. o.rows * o.ff];
            const dh = c.scratch[core_scratch + df.len ..][0..n];
            const dx1 = c.scratch[core_scratch + df.len + n ..][0..n];
            const dtmp = c.scratch[core_scratch + df.len + 2 * n ..][0..n];
            const u = saved[o.uAt()..][0 .. o.rows * o.ff];
            const f = saved[o.fAt()..][0 .. o.rows * o.ff];
            const h2 = saved[o.h2At()..][0..n];
            const x1 = saved[o.x1At()..][0..n];
            // y = x1 + W2 f + b2
            @memcpy(dx1, dy[0..n]);
            G.tn(o.rows, o.d, o.ff, dy, o.d, f, o.ff, g[o.w2At()..][0 .. o.d * o.ff], o.ff, c.pool);
            G.sumRows(o.rows, o.d, dy, o.d, g[o.b2At()..][0..o.d]);
            G.nnSet(o.rows, o.d, o.ff, dy, o.d, p[o.w2At()..][0 .. o.d * o.ff], o.ff, df, o.ff, c.pool);
            A.backward(d.act, f, u, df, o.ff);
            G.tn(o.rows, o.ff, o.d, df, o.ff, h2, o.d, g[o.w1At()..][0 .. o.ff * o.d], o.d, c.pool);
            G.sumRows(o.rows, o.ff, df, o.ff, g[o.b1At()..][0..o.ff]);
            G.nnSet(o.rows, o.ff, o.d, df, o.ff, p[o.w1At()..][0 .. o.ff * o.d], o.d, dh, o.d, c.pool);
            const ms2 = saved[o.ms2At()..];
            for (0..o.rows) |r| {
                LN.rowBackward(x1[r * o.d ..][0..o.d], p[o.ln2At()..][0..o.d], .{ ms2[2 * r], ms2[2 * r + 1] }, dh[r * o.d ..][0..o.d], dtmp[r * o.d ..][0..o.d], g[o.ln2At()..][0..o.d], g[o.ln2At() + o.d ..][0..o.d]);
            }
            for (dx1, dtmp) |*a, b| a.* += b;
            // x1 = x + attention(h1)
            const h1 = saved[0..n];
            C.backward(dimsOf(T, d), p[o.attnAt()..], h1, saved[o.coreAt()..][0..o.core], dx1, dh, g[o.attnAt()..], c.scratch[0..core_scratch], c);
            const ms1 = saved[o.ms1At()..];
            for (0..o.rows) |r| {
                const dxr: ?[]T = if (dx) |v| v[r * o.d ..][0..o.d] else null;
                LN.rowBackward(x[r * o.d ..][0..o.d], p[0..o.d], .{ ms1[2 * r], ms1[2 * r + 1] }, dh[r * o.d ..][0..o.d], dxr, g[0..o.d], g[o.d..][0..o.d]);
            }
            if (dx) |out| for (out[0..n], dx1) |*a, b| {
                a.* += b;
            };
        }
    };
}
