//! Element-wise kinds, in = out = n: batchnorm (folded at load into `x * scale + shift`),
//! layernorm, prelu, and the plain activation layer. All are stateless and need no scratch.
//! Packed vectors are padded to whole simd vectors; x and y are not, so each loop ends with
//! a partial vector.
const std = @import("std");
const desc = @import("desc.zig");
const act = @import("act.zig");
const simd = @import("../simd.zig");

const L = simd.lanes;
const V = simd.V;
const LayerDesc = desc.LayerDesc;

fn checkSquare(d: *const LayerDesc) ?[]const u8 {
    if (d.in != d.out) return "out must equal in";
    return null;
}

/// Sizes of a kind whose weights are two vectors of n, each padded to whole vectors.
fn twoVectorSizes(d: *const LayerDesc, max_batch: u32) desc.Sizes {
    _ = max_batch;
    return .{ .weights = 2 * simd.roundUp(d.out), .state = 0, .scratch = 0 };
}

/// `y[i] = x[i] * a[i] + b[i]` over n = y.len; a and b padded to whole vectors.
fn scaleShift(a: []const f32, b: []const f32, x: []const f32, y: []f32) void {
    const n = y.len;
    std.debug.assert(x.len >= n and a.len >= simd.roundUp(n) and b.len >= simd.roundUp(n));
    var i: usize = 0;
    while (i + L <= n) : (i += L) {
        simd.store(y, i, @mulAdd(V, simd.load(x, i), simd.load(a, i), simd.load(b, i)));
    }
    if (i < n) {
        const v = @mulAdd(V, simd.loadPartial(x[i..n]), simd.load(a, i), simd.load(b, i));
        simd.storePartial(y[i..n], v);
    }
}

/// Layer norm of an x whose f32 sums overflow (|x| beyond about 1e19 / sqrt(n)): the same
/// steps on x scaled by the power of two that brings max|x| into [0.5, 1), which layer norm
/// does not see but through epsilon (scaled by its square). The scaling is exact but for
/// elements that become subnormal, far below the result's precision. A rare path, in plain
/// loops. Returns false, writing nothing, when x holds an infinity or a NaN: the outputs are
/// NaN then, as the usual path gives them.
pub fn layerNormScaled(x: []const f32, g: []const f32, b: []const f32, eps: f32, y: []f32) bool {
    std.debug.assert(g.len >= x.len and b.len >= x.len and y.len == x.len);
    var max_bits: u32 = 0;
    for (x) |v| max_bits = @max(max_bits, @as(u32, @bitCast(v)) & 0x7FFF_FFFF);
    if (max_bits >= 0x7F80_0000) return false;
    const max_abs: f32 = @bitCast(max_bits);
    const k = std.math.ldexp(@as(f32, 1), -std.math.frexp(max_abs).exponent);
    const n: f32 = @floatFromInt(x.len);
    var total: f32 = 0;
    for (x) |v| total += v * k;
    const rough = total / n;
    var deviations: f32 = 0;
    for (x) |v| deviations += v * k - rough;
    const mean = rough + deviations / n;
    var squares: f32 = 0;
    for (x) |v| squares += (v * k - mean) * (v * k - mean);
    // eps * k * k underflows to 0 only where it is negligible beside any nonzero variance;
    // a constant x (every deviation exactly 0) then gives y = b.
    const spread = squares / n + eps * k * k;
    const inv_std = if (spread > 0) 1 / @sqrt(spread) else 0;
    for (y, x, g[0..x.len], b[0..x.len]) |*o, v, gain, bias| {
        o.* = (v * k - mean) * inv_std * gain + bias;
    }
    return true;
}

pub const batchnorm = struct {
    pub fn check(d: *const LayerDesc) ?[]const u8 {
        if (checkSquare(d)) |m| return m;
        if (d.p[0] > 1) return "p0 (affine) must be 0 or 1";
        if (!(d.f[0] >= 0)) return "f0 (epsilon) must be at least 0";
        return null;
    }

    pub fn tensorLens(d: *const LayerDesc, lens: *[desc.tensors_max]u32) u8 {
        const count: u8 = if (d.p[0] == 1) 4 else 2;
        for (lens[0..count]) |*len| len.* = d.out;
        return count;
    }

    /// Runs on the copied tensors before pack: a variance must give a positive denominator.
    /// A slightly negative variance is accepted (Keras files carry them; the RTNeural conv case
    /// has -0.026 with epsilon 5): only var + epsilon matters to the arithmetic.
    /// The fold must stay finite too: an infinite scale or shift would make every output NaN.
    pub fn checkTensors(d: *const LayerDesc, tensors: []const []const f32) ?[]const u8 {
        const variance = tensors[tensors.len - 1];
        for (variance) |v| {
            if (!(v + d.f[0] > 0)) return "var + epsilon must be > 0";
        }
        for (0..d.out) |i| {
            const scale, const shift = fold(d, tensors, i);
            if (!std.math.isFinite(scale) or !std.math.isFinite(shift)) {
                return "gamma / sqrt(var + epsilon) and beta - mean * that must be finite " ++
                    "(they are folded into one scale and shift)";
            }
        }
        return null;
    }

    /// Channel i's `x * scale + shift` form of `(x - mean) / sqrt(var + eps) * gamma + beta`.
    fn fold(d: *const LayerDesc, tensors: []const []const f32, i: usize) struct { f32, f32 } {
        const affine = d.p[0] == 1;
        const mean = tensors[if (affine) 2 else 0][i];
        const variance = tensors[if (affine) 3 else 1][i];
        const gamma = if (affine) tensors[0][i] else 1.0;
        const beta = if (affine) tensors[1][i] else 0.0;
        const scale: f32 = @floatCast(gamma / @sqrt(@as(f64, variance) + d.f[0]));
        return .{ scale, beta - mean * scale };
    }

    pub const sizes = twoVectorSizes;

    pub fn pack(d: *const LayerDesc, tensors: []const []const f32, weights: []f32) void {
        const n: usize = d.out;
        const scale = weights[0..simd.roundUp(n)];
        const shift = weights[simd.roundUp(n)..][0..simd.roundUp(n)];
        @memset(weights, 0);
        for (0..n) |i| scale[i], shift[i] = fold(d, tensors, i);
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
        const n: usize = d.out;
        const padded = simd.roundUp(n);
        scaleShift(weights[0..padded], weights[padded..][0..padded], x[0..n], y[0..n]);
        act.apply(d.act, y[0..n]);
    }
};

pub const layernorm = struct {
    pub fn check(d: *const LayerDesc) ?[]const u8 {
        if (checkSquare(d)) |m| return m;
        if (desc.noFusedActivation(d)) |m| return m;
        if (!(d.f[0] > 0)) return "f0 (epsilon) must be greater than 0";
        return null;
    }

    pub fn tensorLens(d: *const LayerDesc, lens: *[desc.tensors_max]u32) u8 {
        lens[0] = d.out;
        lens[1] = d.out;
        return 2;
    }

    pub const sizes = twoVectorSizes;

    pub fn pack(d: *const LayerDesc, tensors: []const []const f32, weights: []f32) void {
        const padded = simd.roundUp(d.out);
        @memset(weights, 0);
        @memcpy(weights[0..d.out], tensors[0]);
        @memcpy(weights[padded..][0..d.out], tensors[1]);
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
        const n: usize = d.out;
        const padded = simd.roundUp(n);
        const xs = x[0..n];
        const count: f32 = @floatFromInt(n);
        // One correction step makes the mean of a constant x exactly its value (variance 0);
        // a mean off by an ulp of x would otherwise be divided by sqrt(eps).
        const rough = sumOf(.plain, xs, 0) / count;
        const mean = rough + sumOf(.centred, xs, rough) / count;
        const variance = sumOf(.squared, xs, mean) / count;
        const g = weights[0..padded];
        const b = weights[padded..][0..padded];
        if (!std.math.isFinite(variance) and layerNormScaled(xs, g, b, d.f[0], y[0..n])) return;
        const inv_std = 1.0 / @sqrt(variance + d.f[0]);
        normalize(xs, mean, inv_std, g, b, y[0..n]);
    }

    const Term = enum { plain, centred, squared };

    /// Sum of x, `x - center` or `(x - center)^2`; the padding lanes of the last partial
    /// vector are masked out.
    fn sumOf(comptime kind: Term, x: []const f32, center: f32) f32 {
        const c: V = @splat(center);
        var acc: [4]V = @splat(@splat(0));
        var i: usize = 0;
        while (i + 4 * L <= x.len) : (i += 4 * L) {
            inline for (0..4) |k| acc[k] += term(simd.load(x, i + k * L), c, kind);
        }
        while (i + L <= x.len) : (i += L) acc[0] += term(simd.load(x, i), c, kind);
        if (i < x.len) {
            const tail = term(simd.loadPartial(x[i..]), c, kind);
            const valid = std.simd.iota(u32, L) < @as(@Vector(L, u32), @splat(@intCast(x.len - i)));
            acc[1] += @select(f32, valid, tail, @as(V, @splat(0)));
        }
        return simd.sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
    }

    inline fn term(v: V, c: V, comptime kind: Term) V {
        return switch (kind) {
            .plain => v,
            .centred => v - c,
            .squared => (v - c) * (v - c),
        };
    }

    fn normalize(
        x: []const f32,
        mean: f32,
        inv_std: f32,
        g: []const f32,
        b: []const f32,
        y: []f32,
    ) void {
        const m: V = @splat(mean);
        const s: V = @splat(inv_std);
        var i: usize = 0;
        while (i + L <= x.len) : (i += L) {
            const z = (simd.load(x, i) - m) * s;
            simd.store(y, i, @mulAdd(V, z, simd.load(g, i), simd.load(b, i)));
        }
        if (i < x.len) {
            const z = (simd.loadPartial(x[i..]) - m) * s;
            simd.storePartial(y[i..x.len], @mulAdd(V, z, simd.load(g, i), simd.load(b, i)));
        }
    }
};

pub const prelu = struct {
    pub fn check(d: *const LayerDesc) ?[]const u8 {
        if (checkSquare(d)) |m| return m;
        return desc.noFusedActivation(d);
    }

    /// alpha has n elements, or 1 shared by all (the image parser accepts either for prelu).
    pub fn tensorLens(d: *const LayerDesc, lens: *[desc.tensors_max]u32) u8 {
        lens[0] = d.out;
        return 1;
    }

    pub fn sizes(d: *const LayerDesc, max_batch: u32) desc.Sizes {
        _ = max_batch;
        return .{ .weights = simd.roundUp(d.out), .state = 0, .scratch = 0 };
    }

    pub fn pack(d: *const LayerDesc, tensors: []const []const f32, weights: []f32) void {
        const alpha = tensors[0];
        std.debug.assert(alpha.len == 1 or alpha.len == d.out);
        @memset(weights, 0);
        if (alpha.len == 1) {
            @memset(weights[0..d.out], alpha[0]);
        } else {
            @memcpy(weights[0..d.out], alpha);
        }
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
        const n: usize = d.out;
        const zero: V = @splat(0);
        var i: usize = 0;
        while (i + L <= n) : (i += L) {
            const v = simd.load(x, i);
            simd.store(y, i, @select(f32, v > zero, v, v * simd.load(weights, i)));
        }
        if (i < n) {
            const v = simd.loadPartial(x[i..n]);
            simd.storePartial(y[i..n], @select(f32, v > zero, v, v * simd.load(weights, i)));
        }
    }
};

pub const activation = struct {
    pub fn check(d: *const LayerDesc) ?[]const u8 {
        return checkSquare(d);
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

    pub fn forward(
        d: *const LayerDesc,
        weights: []const f32,
        state: []f32,
        scratch: []f32,
        x: []const f32,
        y: []f32,
    ) void {
        _ = weights;
        _ = state;
        _ = scratch;
        @memcpy(y[0..d.out], x[0..d.out]);
        act.apply(d.act, y[0..d.out]);
    }
};

const testing = std.testing;
const helpers = @import("../test.zig");

/// Packs `tensors` for kind K, runs one forward on x and returns y (n <= 64).
fn run(
    comptime K: type,
    d: *const LayerDesc,
    ts: []const []const f32,
    x: []const f32,
    y: []f32,
) !void {
    var weights: [128]f32 = undefined;
    const s = K.sizes(d, 1);
    try testing.expect(s.state == 0 and s.scratch == 0 and s.weights <= weights.len);
    try testing.expectEqual(@as(?[]const u8, null), K.check(d));
    K.pack(d, ts, weights[0..s.weights]);
    K.forward(d, weights[0..s.weights], &.{}, &.{}, x, y);
}

fn square(kind: desc.Kind, a: desc.Act, n: u32, p0: u32, eps: f32) LayerDesc {
    return .{
        .kind = kind,
        .act = a,
        .in = n,
        .out = n,
        .p = helpers.params(p0, 0, 0),
        .f = .{ eps, 0 },
    };
}

test "norm kinds match naive loops on odd sizes" {
    var prng = std.Random.DefaultPrng.init(31);
    const rng = prng.random();
    for ([_]u32{ 1, 3, 17, 33, 64 }) |n| {
        var x: [64]f32 = undefined;
        var t: [4][64]f32 = undefined;
        var y: [64]f32 = undefined;
        var want: [64]f64 = undefined;
        helpers.randomFloats(rng, x[0..n], 3);
        for (&t) |*v| helpers.randomFloats(rng, v[0..n], 1);
        for (t[3][0..n]) |*v| v.* = @abs(v.*) + 0.05;

        const eps: f32 = 1e-3;
        const bn = square(.batchnorm, .relu, n, 1, eps);
        const gamma = t[0][0..n];
        const beta = t[1][0..n];
        const mean_bn = t[2][0..n];
        const var_bn = t[3][0..n];
        try run(batchnorm, &bn, &.{ gamma, beta, mean_bn, var_bn }, x[0..n], y[0..n]);
        for (want[0..n], 0..) |*w, i| {
            const z = (@as(f64, x[i]) - mean_bn[i]) / @sqrt(@as(f64, var_bn[i]) + eps);
            w.* = @max(z * gamma[i] + beta[i], 0);
        }
        try helpers.expectClose(want[0..n], y[0..n], 1e-5);

        const bn_plain = square(.batchnorm, .linear, n, 0, eps);
        try run(batchnorm, &bn_plain, &.{ mean_bn, var_bn }, x[0..n], y[0..n]);
        for (want[0..n], 0..) |*w, i| {
            w.* = (@as(f64, x[i]) - mean_bn[i]) / @sqrt(@as(f64, var_bn[i]) + eps);
        }
        try helpers.expectClose(want[0..n], y[0..n], 1e-5);

        const ln = square(.layernorm, .linear, n, 0, 1e-5);
        try run(layernorm, &ln, &.{ gamma, beta }, x[0..n], y[0..n]);
        var mean: f64 = 0;
        for (x[0..n]) |v| mean += v;
        mean /= @floatFromInt(n);
        var variance: f64 = 0;
        for (x[0..n]) |v| variance += (v - mean) * (v - mean);
        variance /= @floatFromInt(n);
        for (want[0..n], 0..) |*w, i| {
            w.* = (x[i] - mean) / @sqrt(variance + 1e-5) * gamma[i] + beta[i];
        }
        try helpers.expectClose(want[0..n], y[0..n], 1e-4);

        const pr = square(.prelu, .linear, n, 0, 0);
        try run(prelu, &pr, &.{t[0][0..n]}, x[0..n], y[0..n]);
        for (want[0..n], 0..) |*w, i| w.* = if (x[i] > 0) x[i] else @as(f64, t[0][i]) * x[i];
        try helpers.expectClose(want[0..n], y[0..n], 1e-6);
        try run(prelu, &pr, &.{t[1][0..1]}, x[0..n], y[0..n]);
        for (want[0..n], 0..) |*w, i| w.* = if (x[i] > 0) x[i] else @as(f64, t[1][0]) * x[i];
        try helpers.expectClose(want[0..n], y[0..n], 1e-6);

        const sm = square(.activation, .softmax, n, 0, 0);
        try run(activation, &sm, &.{}, x[0..n], y[0..n]);
        var total: f64 = 0;
        for (want[0..n], 0..) |*w, i| {
            w.* = @exp(@as(f64, x[i]));
            total += w.*;
        }
        for (want[0..n]) |*w| w.* /= total;
        try helpers.expectClose(want[0..n], y[0..n], 1e-5);
    }
}

test "layernorm: a zero-mean input still gets its variance" {
    const x = [4]f32{ -2, -1, 1, 2 };
    const g = [4]f32{ 1, 1, 1, 1 };
    const b = [4]f32{ 0, 0, 0, 0 };
    var y: [4]f32 = undefined;
    const d = square(.layernorm, .linear, 4, 0, 1e-6);
    try run(layernorm, &d, &.{ &g, &b }, &x, &y);
    const s: f64 = 1.0 / @sqrt(2.5 + 1e-6);
    try helpers.expectClose(&.{ -2 * s, -1 * s, 1 * s, 2 * s }, &y, 1e-6);
}

test "layernorm: a constant input gives beta exactly, whatever its magnitude" {
    var prng = std.Random.DefaultPrng.init(37);
    const rng = prng.random();
    var g: [64]f32 = undefined;
    var b: [64]f32 = undefined;
    var x: [64]f32 = undefined;
    var y: [64]f32 = undefined;
    helpers.randomFloats(rng, &g, 1);
    helpers.randomFloats(rng, &b, 1);
    // The mean of a constant is not its value in f32 (n * c / n rounds): an ulp of 1e5 over
    // sqrt(1e-5) made the outputs +-1 * gamma.
    for ([_]f32{ 0.1, -7.3, 1e5, 123456.7, -3.3e7, 2.5e30 }) |c| {
        for ([_]u32{ 1, 3, 7, 17, 33, 64 }) |n| {
            @memset(x[0..n], c);
            const d = square(.layernorm, .linear, n, 0, 1e-5);
            try run(layernorm, &d, &.{ g[0..n], b[0..n] }, x[0..n], y[0..n]);
            try testing.expectEqualSlices(f32, b[0..n], y[0..n]);
        }
    }
}

/// f64 layer norm with gain 1 and bias 0, the reference of the tests below.
fn layerNorm64(x: []const f32, eps: f64, y: []f64) void {
    const n: f64 = @floatFromInt(x.len);
    var mean: f64 = 0;
    for (x) |v| mean += v;
    mean /= n;
    var variance: f64 = 0;
    for (x) |v| variance += (v - mean) * (v - mean);
    variance /= n;
    for (y, x) |*o, v| o.* = (v - mean) / @sqrt(variance + eps);
}

test "layernorm: inputs whose sums overflow f32 are still normalised" {
    // Squares of 1e20 (and the sum of 4096 squares of 1e18) overflow f32: the variance was
    // infinite and every output was beta. 3e38 + 3e38 overflows the mean's sum as well.
    var wide: [4099]f32 = undefined;
    for (&wide, 0..) |*v, i| v.* = if (i % 2 == 0) 1e18 else -1e18;
    const inputs = [_][]const f32{
        &.{ 1e20, -1e20, 3e19 },
        &.{ 3e38, 3e38, -3e38, 1 },
        &.{ 3e38, 3e38, 3e38 },
        &wide,
    };
    var g: [4099]f32 = undefined;
    @memset(&g, 1);
    var b: [4099]f32 = undefined;
    @memset(&b, 0);
    var y: [4099]f32 = undefined;
    var want: [4099]f64 = undefined;
    for (inputs) |x| {
        const n: u32 = @intCast(x.len);
        const d = square(.layernorm, .linear, n, 0, 1e-5);
        const padded = simd.roundUp(n);
        var weights: [2 * 4112]f32 = undefined;
        layernorm.pack(&d, &.{ g[0..n], b[0..n] }, weights[0 .. 2 * padded]);
        layernorm.forward(&d, weights[0 .. 2 * padded], &.{}, &.{}, x, y[0..n]);
        layerNorm64(x, 1e-5, want[0..n]);
        try helpers.expectClose(want[0..n], y[0..n], 1e-5);
    }
}

test "norm checks name the field" {
    const no_eps = square(.layernorm, .linear, 3, 0, 0);
    var wide = square(.batchnorm, .linear, 3, 0, 0);
    wide.out = 4;
    const cases = [_]struct { []const u8, ?[]const u8 }{
        .{ "out must equal in", batchnorm.check(&wide) },
        .{ "f0 (epsilon) must be greater than 0", layernorm.check(&no_eps) },
        .{
            "act must be 0 (linear): this kind has no fused activation",
            prelu.check(&square(.prelu, .tanh, 3, 0, 0)),
        },
        .{ "p0 (affine) must be 0 or 1", batchnorm.check(&square(.batchnorm, .linear, 3, 2, 0)) },
    };
    for (cases) |c| try testing.expectEqualStrings(c[0], c[1].?);
}

// ---- training -------------------------------------------------------------------------------

const common = @import("../train/common.zig");

/// The activation layer: y = act(x) over rows of n.
pub fn TrainActivation(comptime T: type) type {
    return struct {
        const A = act.Grad(T);
        const Ctx = common.Ctx(T);

        pub fn savedLen(d: *const LayerDesc, c: Ctx) usize {
            return if (A.needsPre(d.act)) c.rows() * d.out else 0;
        }

        pub fn scratchLen(d: *const LayerDesc, c: Ctx) usize {
            _ = .{ d, c };
            return 0;
        }

        pub fn forward(d: *const LayerDesc, p: []const T, x: []const T, y: []T, saved: []T, c: Ctx) void {
            _ = p;
            const n = c.rows() * d.out;
            @memcpy(y[0..n], x[0..n]);
            if (A.needsPre(d.act)) @memcpy(saved[0..n], x[0..n]);
            A.forward(d.act, y[0..n], d.out);
        }

        pub fn backward(d: *const LayerDesc, p: []const T, x: []const T, y: []const T, saved: []const T, dy: []T, dx: ?[]T, g: []T, c: Ctx) void {
            _ = .{ p, x, g };
            const n = c.rows() * d.out;
            A.backward(d.act, y[0..n], saved, dy[0..n], d.out);
            if (dx) |v| @memcpy(v[0..n], dy[0..n]);
        }
    };
}

/// Layer norm over rows of n: params `gamma` [n], `beta` [n]; saves each row's mean and
/// 1 / sqrt(var + eps) (biased variance).
pub fn TrainLayerNorm(comptime T: type) type {
    return struct {
        const Ctx = common.Ctx(T);

        pub fn savedLen(d: *const LayerDesc, c: Ctx) usize {
            _ = d;
            return 2 * c.rows();
        }

        pub fn scratchLen(d: *const LayerDesc, c: Ctx) usize {
            _ = .{ d, c };
            return 0;
        }

        const VL = common.vectorLen(T);
        const VT = @Vector(VL, T);

        /// sum_i f(i) over n terms: VL partial sums, then the tail, in a fixed order.
        inline fn total(n: usize, f: anytype) T {
            var acc: VT = @splat(0);
            var i: usize = 0;
            while (i + VL <= n) : (i += VL) acc += f.vec(i);
            var sum = @reduce(.Add, acc);
            while (i < n) : (i += 1) sum += f.one(i);
            return sum;
        }

        inline fn at(v: []const T, i: usize) VT {
            return v[i..][0..VL].*;
        }

        /// One row: y = (x - mean) * rstd * g + b; returns mean and rstd.
        pub fn row(x: []const T, g: []const T, b: []const T, eps: T, y: []T) [2]T {
            const n: T = @floatFromInt(x.len);
            const Sum = struct {
                x: []const T,
                fn vec(f: @This(), i: usize) VT {
                    return at(f.x, i);
                }
                fn one(f: @This(), i: usize) T {
                    return f.x[i];
                }
            };
            const mean = total(x.len, Sum{ .x = x }) / n;
            const Sq = struct {
                x: []const T,
                m: T,
                fn vec(f: @This(), i: usize) VT {
                    const dv = at(f.x, i) - @as(VT, @splat(f.m));
                    return dv * dv;
                }
                fn one(f: @This(), i: usize) T {
                    return (f.x[i] - f.m) * (f.x[i] - f.m);
                }
            };
            const q = total(x.len, Sq{ .x = x, .m = mean });
            const rstd = 1 / @sqrt(q / n + eps);
            for (y, x, g, b) |*o, v, gi, bi| o.* = (v - mean) * rstd * gi + bi;
            return .{ mean, rstd };
        }

        /// One row's backward: dx (set) from dy, g_g and g_b accumulated.
        pub fn rowBackward(x: []const T, g: []const T, ms: [2]T, dy: []const T, dx: ?[]T, gg: []T, gb: []T) void {
            const n: T = @floatFromInt(x.len);
            const mean, const rstd = ms;
            for (x, dy, gg, gb) |v, dv, *ggi, *gbi| {
                ggi.* += dv * ((v - mean) * rstd);
                gbi.* += dv;
            }
            const out = dx orelse return;
            const Parts = struct {
                x: []const T,
                g: []const T,
                dy: []const T,
                m: T,
                r: T,
                square: bool,
                fn vec(f: @This(), i: usize) VT {
                    const dxh = at(f.dy, i) * at(f.g, i);
                    if (!f.square) return dxh;
                    return dxh * ((at(f.x, i) - @as(VT, @splat(f.m))) * @as(VT, @splat(f.r)));
                }
                fn one(f: @This(), i: usize) T {
                    const dxh = f.dy[i] * f.g[i];
                    return if (f.square) dxh * ((f.x[i] - f.m) * f.r) else dxh;
                }
            };
            const s1 = total(x.len, Parts{ .x = x, .g = g, .dy = dy, .m = mean, .r = rstd, .square = false });
            const s2 = total(x.len, Parts{ .x = x, .g = g, .dy = dy, .m = mean, .r = rstd, .square = true });
            for (out, x, g, dy) |*o, v, gi, dv| {
                const xh = (v - mean) * rstd;
                o.* = rstd / n * (n * dv * gi - s1 - xh * s2);
            }
        }

        pub fn forward(d: *const LayerDesc, p: []const T, x: []const T, y: []T, saved: []T, c: Ctx) void {
            const n: usize = d.out;
            const eps: T = d.f[0];
            for (0..c.rows()) |r| {
                const ms = row(x[r * n ..][0..n], p[0..n], p[n..][0..n], eps, y[r * n ..][0..n]);
                saved[2 * r] = ms[0];
                saved[2 * r + 1] = ms[1];
            }
        }

        pub fn backward(d: *const LayerDesc, p: []const T, x: []const T, y: []const T, saved: []const T, dy: []T, dx: ?[]T, g: []T, c: Ctx) void {
            _ = y;
            const n: usize = d.out;
            for (0..c.rows()) |r| {
                const dxr: ?[]T = if (dx) |v| v[r * n ..][0..n] else null;
                const ms = .{ saved[2 * r], saved[2 * r + 1] };
                rowBackward(x[r * n ..][0..n], p[0..n], ms, dy[r * n ..][0..n], dxr, g[0..n], g[n..][0..n]);
            }
        }
    };
}

/// batchnorm with frozen statistics: y = act((x - mean) / sqrt(var + eps) * gamma + beta);
/// every tensor gets its true gradient, but the trainer updates only `gamma` and `beta`
/// (`mean` and `var` are frozen: engine.zig's LayerSpec.frozen).
pub fn TrainBatchNorm(comptime T: type) type {
    return struct {
        const A = act.Grad(T);
        const Ctx = common.Ctx(T);

        pub fn savedLen(d: *const LayerDesc, c: Ctx) usize {
            return if (A.needsPre(d.act)) c.rows() * d.out else 0;
        }

        pub fn scratchLen(d: *const LayerDesc, c: Ctx) usize {
            _ = .{ d, c };
            return 0;
        }

        const Parts = struct { gamma: ?[]const T, beta: ?[]const T, mean: []const T, variance: []const T };

        fn parts(d: *const LayerDesc, p: []const T) Parts {
            const n: usize = d.out;
            if (d.p[0] == 1) return .{ .gamma = p[0..n], .beta = p[n..][0..n], .mean = p[2 * n ..][0..n], .variance = p[3 * n ..][0..n] };
            return .{ .gamma = null, .beta = null, .mean = p[0..n], .variance = p[n..][0..n] };
        }

        pub fn forward(d: *const LayerDesc, p: []const T, x: []const T, y: []T, saved: []T, c: Ctx) void {
            const n: usize = d.out;
            const q = parts(d, p);
            const eps: T = d.f[0];
            for (0..c.rows()) |r| {
                for (0..n) |i| {
                    var v = (x[r * n + i] - q.mean[i]) / @sqrt(q.variance[i] + eps);
                    if (q.gamma) |gm| v = v * gm[i] + q.beta.?[i];
                    y[r * n + i] = v;
                }
            }
            const total = c.rows() * n;
            if (A.needsPre(d.act)) @memcpy(saved[0..total], y[0..total]);
            A.forward(d.act, y[0..total], n);
        }

        pub fn backward(d: *const LayerDesc, p: []const T, x: []const T, y: []const T, saved: []const T, dy: []T, dx: ?[]T, g: []T, c: Ctx) void {
            const n: usize = d.out;
            const q = parts(d, p);
            const eps: T = d.f[0];
            const total = c.rows() * n;
            A.backward(d.act, y[0..total], saved, dy[0..total], n);
            for (0..c.rows()) |r| {
                for (0..n) |i| {
                    const rstd = 1 / @sqrt(q.variance[i] + eps);
                    const dv = dy[r * n + i];
                    const centred = x[r * n + i] - q.mean[i];
                    var scale = rstd;
                    const stats = if (q.gamma) |gm| blk: {
                        g[i] += dv * centred * rstd;
                        g[n + i] += dv;
                        scale *= gm[i];
                        break :blk 2 * n;
                    } else 0;
                    // The frozen statistics' true gradients (the trainer does not update them).
                    g[stats + i] -= dv * scale;
                    g[stats + n + i] -= dv * scale * centred * 0.5 * rstd * rstd;
                    if (dx) |v| v[r * n + i] = dv * scale;
                }
            }
        }
    };
}

/// prelu: y = x for x > 0, alpha x otherwise; alpha has n elements or 1 (broadcast).
pub fn TrainPrelu(comptime T: type) type {
    return struct {
        const Ctx = common.Ctx(T);

        pub fn savedLen(d: *const LayerDesc, c: Ctx) usize {
            _ = .{ d, c };
            return 0;
        }

        pub fn scratchLen(d: *const LayerDesc, c: Ctx) usize {
            _ = .{ d, c };
            return 0;
        }

        pub fn forward(d: *const LayerDesc, p: []const T, x: []const T, y: []T, saved: []T, c: Ctx) void {
            _ = saved;
            const n: usize = d.out;
            for (0..c.rows() * n) |k| {
                const alpha = if (p.len == 1) p[0] else p[k % n];
                y[k] = if (x[k] > 0) x[k] else alpha * x[k];
            }
        }

        pub fn backward(d: *const LayerDesc, p: []const T, x: []const T, y: []const T, saved: []const T, dy: []T, dx: ?[]T, g: []T, c: Ctx) void {
            _ = .{ y, saved };
            const n: usize = d.out;
            for (0..c.rows() * n) |k| {
                const ai = if (p.len == 1) 0 else k % n;
                if (x[k] > 0) {
                    if (dx) |v| v[k] = dy[k];
                } else {
                    g[ai] += dy[k] * x[k];
                    if (dx) |v| v[k] = dy[k] * p[ai];
                }
            }
        }
    };
}
