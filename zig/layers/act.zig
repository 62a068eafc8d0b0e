//! Activations, vectorised. Each approximation accepts any f32 (huge values saturate, NaN stays
//! NaN, infinities never meet each other in a subtraction); the tests at the bottom measure the
//! maximum absolute error against f64 and assert a bound. `apply` works on a whole slice in place.
const std = @import("std");
const builtin = @import("builtin");
const desc = @import("desc.zig");
const simd = @import("../simd.zig");
const madd = simd.madd;

const lanes = simd.lanes;
const V = simd.V;

inline fn vsplat(comptime T: type, x: f32) T {
    return @splat(x);
}

/// max(x, lo) and min(x, hi) that keep a NaN x: the select form is the x86 maxps/minps
/// (wasm pmax/pmin) operand order, one instruction, where `@max`/`@min` (which return the
/// number when one side is NaN) take three.
inline fn atLeast(x: anytype, lo: f32) @TypeOf(x) {
    const l = vsplat(@TypeOf(x), lo);
    return @select(f32, x < l, l, x);
}

inline fn atMost(x: anytype, hi: f32) @TypeOf(x) {
    const h = vsplat(@TypeOf(x), hi);
    return @select(f32, x > h, h, x);
}

/// vrcp14ps (x86 with AVX-512F and VL): 1/d within a relative 2^-14, specified bit for bit by
/// the instruction set, so every AVX-512 CPU gives the same result. Zig's own x86 backend
/// (Debug builds) does not assemble it: those divide.
const has_rcp14 = switch (builtin.cpu.arch) {
    .x86_64 => builtin.zig_backend == .stage2_llvm and
        std.Target.x86.featureSetHas(builtin.cpu.features, .avx512f) and
        std.Target.x86.featureSetHas(builtin.cpu.features, .avx512vl),
    else => false,
};

inline fn rcp14(d: anytype) @TypeOf(d) {
    const T = @TypeOf(d);
    const n = @typeInfo(T).vector.len;
    const w = if (n <= 4) 4 else if (n <= 8) 8 else 16;
    comptime std.debug.assert(n <= 16);
    if (n == w) return rcp14Asm(d);
    // Narrower vectors (the scalar forms) go through the next width, padded with ones: the
    // same instruction per lane, so the same bits as a full vector.
    var wide: [w]f32 = @splat(1);
    const a: [n]f32 = d;
    @memcpy(wide[0..n], &a);
    const r: [w]f32 = rcp14Asm(@as(@Vector(w, f32), wide));
    return r[0..n].*;
}

inline fn rcp14Asm(d: anytype) @TypeOf(d) {
    return asm ("vrcp14ps %[d], %[y]"
        : [y] "=v" (-> @TypeOf(d)),
        : [d] "v" (d),
    );
}

/// 1 / d for d >= 1 (finite or NaN). With vrcp14ps: the estimate and one Newton step,
/// y1 = y0 + y0 (1 - d y0), relative error about 2^-28 before the last rounding (within one
/// ulp of the quotient), no divider; elsewhere the division.
inline fn recip(d: anytype) @TypeOf(d) {
    const T = @TypeOf(d);
    if (!has_rcp14) return vsplat(T, 1) / d;
    const y0 = rcp14(d);
    return madd(y0, madd(-d, y0, vsplat(T, 1)), y0);
}

/// 1 / (d + err) for d in [1, 2] and err the rounding error of d (|err| <= ulp(d) / 2): a
/// Newton step on d + err from 1/d (vrcp14ps's estimate or the quotient), so that the
/// rounding of d does not reach the result.
inline fn recipOfSum(d: anytype, err: @TypeOf(d)) @TypeOf(d) {
    const T = @TypeOf(d);
    const y0 = if (has_rcp14) rcp14(d) else vsplat(T, 1) / d;
    const t = madd(-err, y0, madd(-d, y0, vsplat(T, 1)));
    return madd(y0, t, y0);
}

/// ln(2^-126): e^x below it leaves the normal range.
const exp_low: f32 = -87.33654;
/// Just under 127.5 ln 2, so that k <= 127 and 2^k is a normal float.
const exp_high: f32 = 88.37626;

/// e^x - 1 = 2^k (1 + q) - 1 for x in [exp_low, exp_high] (or NaN, which stays NaN), as its
/// two parts: `pow2` = 2^k and `q` = e^r - 1, r = x - k ln 2, |r| <= ln2/2.
inline fn expParts(x: anytype) struct { pow2: @TypeOf(x), q: @TypeOf(x) } {
    const T = @TypeOf(x);
    const n = @typeInfo(T).vector.len;
    // Adding 1.5 * 2^23 rounds x log2(e) to the integer k (to nearest), held in the low
    // mantissa bits of t: no float-to-int conversion, which a NaN would make undefined.
    const magic: f32 = 0x1.8p23;
    const t = madd(x, vsplat(T, std.math.log2e), vsplat(T, magic));
    const k = t - vsplat(T, magic);
    // ln 2 in two parts so that k * ln2_hi is exact for |k| <= 128.
    var r = madd(k, vsplat(T, -0.693145751953125), x);
    r = madd(k, vsplat(T, -1.428606765330187e-6), r);
    // e^r - 1 = r + r^2 P(r), P of degree 4 fitted for least maximum relative error of e^r on
    // |r| <= ln2/2 (about 4e-9 with these f32 coefficients, against 2e-7 for degree 3). The
    // r + r^2 P form keeps the relative accuracy of e^r - 1 for tiny r.
    var p = vsplat(T, 0x1.6a2164p-10);
    inline for (.{ 0x1.123b96p-7, 0x1.5558fcp-5, 0x1.55549p-3, 0x1.fffffcp-2 }) |c| {
        p = madd(p, r, vsplat(T, c));
    }
    const q = madd(r * r, p, r);
    // 2^k from t's bits: bits(t) = bits(1.5 * 2^23) + k, and the shift drops the high bits.
    const U = @Vector(n, u32);
    const bits: U = @bitCast(t);
    const pow2: T = @bitCast((bits +% @as(U, @splat(127))) << @splat(23));
    return .{ .pow2 = pow2, .q = q };
}

/// e^x for x <= 88.37 (larger x saturate at e^88.37, about 2.4e38), 0 below -87.33 where e^x
/// leaves the normal range. Relative error about 1e-7 (f32 rounding of the last steps).
pub inline fn expVec(x: anytype) @TypeOf(x) {
    const T = @TypeOf(x);
    const e = expParts(atMost(atLeast(x, exp_low), exp_high));
    const y = madd(e.q, e.pow2, e.pow2);
    return @select(f32, x < vsplat(T, exp_low), vsplat(T, 0), y);
}

/// e^x - 1 for x <= 0 or NaN; -1 below exp_low. Relative accuracy near 0 (no cancellation).
inline fn expm1NonPositive(x: anytype) @TypeOf(x) {
    const T = @TypeOf(x);
    const e = expParts(atLeast(x, exp_low));
    return madd(e.q, e.pow2, e.pow2 - vsplat(T, 1));
}

/// tanh |x| = -m / (1 + e) with e = e^(-2|x|) and m = e - 1 in (-1, 0] from the same range
/// reduction: no cancellation near 0 (m keeps its relative accuracy, so tiny x give x), 1 for
/// large |x|, the sign copied from x. The denominator's rounding is corrected in the Newton
/// step (its error is exact, 1 + e being in [1, 2]). NaN passes through every step.
pub inline fn tanhVec(x: anytype) @TypeOf(x) {
    const T = @TypeOf(x);
    const U = @Vector(@typeInfo(T).vector.len, u32);
    const parts = expParts(atLeast(@abs(x) * vsplat(T, -2), exp_low));
    const one = vsplat(T, 1);
    const m = madd(parts.q, parts.pow2, parts.pow2 - one); // e^(-2|x|) - 1
    // The denominator from e itself, not from the rounded m, so that m's rounding does not
    // enter numerator and denominator both.
    const e = madd(parts.q, parts.pow2, parts.pow2);
    const d = e + one;
    const neg = m * recipOfSum(d, e - (d - one)); // -tanh |x|, in [-1, 0]
    const sign: U = @splat(0x8000_0000);
    const bits_x: U = @bitCast(x);
    const bits_n: U = @bitCast(neg);
    return @bitCast((bits_n & ~sign) | (bits_x & sign));
}

/// 1 / (1 + e^-x), with e^-x saturating at about 2.4e38 (x below -87.33 gives 0) and 2^-126
/// for large x (1 + 2^-126 rounds to 1). NaN passes through.
pub inline fn sigmoidVec(x: anytype) @TypeOf(x) {
    const T = @TypeOf(x);
    const e = expParts(atMost(atLeast(-x, exp_low), exp_high));
    const y = recip(madd(e.q, e.pow2, e.pow2 + vsplat(T, 1)));
    return @select(f32, x < vsplat(T, exp_low), vsplat(T, 0), y);
}

/// x for x > 0, e^x - 1 otherwise (alpha 1).
pub inline fn eluVec(x: anytype) @TypeOf(x) {
    const T = @TypeOf(x);
    return @select(f32, x > vsplat(T, 0), x, expm1NonPositive(atMost(x, 0)));
}

/// 0.5 x (1 + erf(x / sqrt 2)), written as x * (1 - erfc/2) or x * erfc/2 by sign so that
/// no term cancels; erfc by Abramowitz and Stegun 7.1.26 (error below 1.5e-7), whose
/// P(t) e^(-a^2) form decays with the true erfc.
pub inline fn geluVec(x: anytype) @TypeOf(x) {
    const T = @TypeOf(x);
    // erfc is 0 in f32 well before |x| / sqrt 2 = 16; the clamp keeps recip's input finite.
    const a = atMost(@abs(x) * vsplat(T, std.math.sqrt1_2), 16);
    const t = recip(madd(a, vsplat(T, 0.3275911), vsplat(T, 1)));
    var p = vsplat(T, 1.061405429);
    inline for (.{ -1.453152027, 1.421413741, -0.284496736, 0.254829592 }) |c| {
        p = madd(p, t, vsplat(T, c));
    }
    const half_erfc = p * t * expVec(-(a * a)) * vsplat(T, 0.5);
    const factor = @select(f32, x < vsplat(T, 0), half_erfc, vsplat(T, 1) - half_erfc);
    // gelu(-16) is about -1e-57: clamping keeps -inf * 0 from producing NaN. A NaN x stays
    // NaN through every step.
    return atLeast(x, -16) * factor;
}

/// max(x, 0) that keeps NaN (`@max` would return 0). Decided on the bits, exactly: a float
/// comparison reads a subnormal as 0 under denormals-are-zero (fpenv.zig) and would keep a
/// negative one.
pub inline fn reluVec(x: anytype) @TypeOf(x) {
    const U = @Vector(@typeInfo(@TypeOf(x)).vector.len, u32);
    const bits: U = @bitCast(x);
    // Negative and not NaN: bits in [0x8000_0001 (-min subnormal), 0xFF80_0000 (-inf)].
    const negative = bits -% @as(U, @splat(0x8000_0001)) <= @as(U, @splat(0x7F7F_FFFF));
    return @bitCast(@select(u32, negative, @as(U, @splat(0)), bits));
}

pub fn tanh(x: f32) f32 {
    return tanhVec(@as(@Vector(1, f32), @splat(x)))[0];
}

pub fn sigmoid(x: f32) f32 {
    return sigmoidVec(@as(@Vector(1, f32), @splat(x)))[0];
}

/// Applies `a` to every element of `y` in place; softmax normalises over all of `y`.
pub fn apply(a: desc.Act, y: []f32) void {
    switch (a) {
        .linear => {},
        .tanh => map(tanhVec, y),
        .sigmoid => map(sigmoidVec, y),
        .relu => map(reluVec, y),
        .elu => map(eluVec, y),
        .gelu => map(geluVec, y),
        .softmax => softmax(y),
        .logsoftmax => logSoftmax(y),
    }
}

fn map(comptime f: anytype, y: []f32) void {
    const whole = y.len / lanes * lanes;
    var i: usize = 0;
    while (i < whole) : (i += lanes) simd.store(y, i, f(simd.load(y, i)));
    if (whole == y.len) return;
    var tail: [lanes]f32 = @splat(0);
    const rest = y[whole..];
    @memcpy(tail[0..rest.len], rest);
    tail = f(@as(V, tail));
    @memcpy(rest, tail[0..rest.len]);
}

/// softmax over all of `y` in place. With +inf entries the mass is shared among them; if every
/// entry is -inf the result is uniform; a NaN anywhere makes every output NaN.
pub fn softmax(y: []f32) void {
    if (y.len == 0) return;
    const m = maxOf(y);
    if (m == std.math.inf(f32) or m == -std.math.inf(f32)) return softmaxInfinite(y, m);
    const shift: V = @splat(m);
    const whole = y.len / lanes * lanes;
    var sum: V = @splat(0);
    var i: usize = 0;
    while (i < whole) : (i += lanes) {
        const e = expVec(simd.load(y, i) - shift);
        simd.store(y, i, e);
        sum += e;
    }
    if (whole < y.len) {
        var tail: [lanes]f32 = @splat(-std.math.inf(f32));
        const rest = y[whole..];
        @memcpy(tail[0..rest.len], rest);
        const e = expVec(@as(V, tail) - shift);
        sum += e;
        tail = e;
        @memcpy(rest, tail[0..rest.len]);
    }
    scale(y, 1.0 / @reduce(.Add, sum));
}

/// log(softmax(y)) over all of `y` in place: `(y - max) - log(sum e^(y - max))`, which never
/// takes the log of a rounded-to-zero share. Infinite maxima take softmax's shares (then their
/// logs: 0 -> -inf); a NaN anywhere makes every output NaN.
pub fn logSoftmax(y: []f32) void {
    if (y.len == 0) return;
    const m = maxOf(y);
    if (m == std.math.inf(f32) or m == -std.math.inf(f32)) {
        softmaxInfinite(y, m);
        for (y) |*v| v.* = @log(v.*);
        return;
    }
    const shift: V = @splat(m);
    const whole = y.len / lanes * lanes;
    var sum: V = @splat(0);
    var i: usize = 0;
    while (i < whole) : (i += lanes) sum += expVec(simd.load(y, i) - shift);
    var tail: [lanes]f32 = @splat(-std.math.inf(f32));
    @memcpy(tail[0 .. y.len - whole], y[whole..]);
    sum += expVec(@as(V, tail) - shift);
    const log_sum = @log(@reduce(.Add, sum));
    for (y) |*v| v.* = (v.* - m) - log_sum;
}

fn maxOf(y: []const f32) f32 {
    var m: V = @splat(-std.math.inf(f32));
    var nan = false;
    const whole = y.len / lanes * lanes;
    var i: usize = 0;
    while (i < whole) : (i += lanes) m = @max(m, simd.load(y, i));
    var best = @reduce(.Max, m);
    for (y[whole..]) |v| best = @max(best, v);
    // `@max` skips NaN; the exponentials below turn a NaN input into NaN outputs anyway.
    for (y) |v| nan = nan or v != v;
    return if (nan) std.math.nan(f32) else best;
}

fn softmaxInfinite(y: []f32, m: f32) void {
    var count: f32 = 0;
    for (y) |*v| {
        v.* = if (v.* == m) 1 else 0;
        count += v.*;
    }
    scale(y, 1.0 / count);
}

fn scale(y: []f32, s: f32) void {
    for (y) |*v| v.* *= s;
}

// ---- accuracy against f64 -------------------------------------------------------------------

/// erf in f64, the reference the tests measure against.
pub fn erf64(x: f64) f64 {
    // erf x = 2/sqrt(pi) e^(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)): positive terms only.
    const a = @abs(x);
    if (a > 6) return std.math.sign(x);
    var term = a;
    var sum = a;
    var n: f64 = 0;
    while (term > sum * 1e-17) : (n += 1) {
        term *= 2 * a * a / (2 * n + 3);
        sum += term;
    }
    return std.math.sign(x) * 2 / @sqrt(std.math.pi) * @exp(-a * a) * sum;
}

const Ref = struct {
    fn tanh(x: f64) f64 {
        return std.math.tanh(x);
    }
    fn sigmoid(x: f64) f64 {
        return 1 / (1 + @exp(-x));
    }
    fn elu(x: f64) f64 {
        return if (x > 0) x else std.math.expm1(x);
    }
    fn gelu(x: f64) f64 {
        return 0.5 * x * (1 + erf64(x * std.math.sqrt1_2));
    }
};

/// Points of the sweep: [-20, 20] in steps of 2^-12, then the extremes.
fn sweepPoint(k: usize) f32 {
    const dense = 40 * 4096 + 1;
    if (k < dense) return -20 + @as(f32, @floatFromInt(k)) / 4096.0;
    const extremes = [_]f32{ 1e30, -1e30, std.math.inf(f32), -std.math.inf(f32), 88, -88, 1e-30 };
    return extremes[k - dense];
}
const sweep_len = 40 * 4096 + 1 + 7;

fn maxError(comptime f: anytype, comptime ref: fn (f64) f64) f64 {
    var worst: f64 = 0;
    var k: usize = 0;
    while (k < sweep_len) : (k += lanes) {
        var x: [lanes]f32 = undefined;
        for (&x, 0..) |*v, j| v.* = sweepPoint(@min(k + j, sweep_len - 1));
        const y: [lanes]f32 = f(@as(V, x));
        for (x, y) |xi, yi| {
            const want = ref(xi);
            if (std.math.isInf(want) and want == yi) continue;
            worst = @max(worst, @abs(want - yi));
        }
    }
    return worst;
}

test "act: tanh, sigmoid, elu, gelu max absolute error over [-20, 20] and the extremes" {
    const err_tanh = maxError(tanhVec, Ref.tanh);
    const err_sigmoid = maxError(sigmoidVec, Ref.sigmoid);
    const err_elu = maxError(eluVec, Ref.elu);
    const err_gelu = maxError(geluVec, Ref.gelu);
    std.debug.print("act max abs error: tanh {e:.2} sigmoid {e:.2} elu {e:.2} gelu {e:.2}\n", .{
        err_tanh, err_sigmoid, err_elu, err_gelu,
    });
    try std.testing.expect(err_tanh <= 2e-7);
    try std.testing.expect(err_sigmoid <= 2e-7);
    try std.testing.expect(err_elu <= 2e-7);
    try std.testing.expect(err_gelu <= 5e-7);
}

test "act: exp relative error over its whole range" {
    var worst: f64 = 0;
    var x: f32 = -87.3;
    while (x < 88.3) : (x += 1.0 / 1024.0) {
        const got = expVec(@as(@Vector(1, f32), @splat(x)))[0];
        const want = @exp(@as(f64, x));
        worst = @max(worst, @abs(got - want) / want);
    }
    std.debug.print("exp max relative error {e:.2}\n", .{worst});
    try std.testing.expect(worst <= 4e-7);
}

test "act: recip is within one ulp of 1/d over [1, 2^126], NaN stays NaN" {
    // The AVX-512 path (vrcp14ps and one Newton step) where the build has it, else division.
    // Past 2^126 the quotient is subnormal (flushed to 0 inside a compute call anyway).
    var worst: f64 = 0;
    var d: f32 = 1;
    while (d < 0x1p126 / 1.75) : (d *= 1.0001) {
        const v: V = [4]f32{ d, d * 1.25, d * 1.5, d * 1.75 } ++ @as([lanes - 4]f32, @splat(d));
        const got: [lanes]f32 = recip(v);
        const arr: [lanes]f32 = v;
        for (arr, got) |di, gi| {
            const want = 1 / @as(f64, di);
            worst = @max(worst, @abs(gi - want) / want);
        }
    }
    const how = if (has_rcp14) "vrcp14ps + Newton" else "division";
    std.debug.print("recip ({s}) max relative error {e:.2}\n", .{ how, worst });
    try std.testing.expect(worst <= 0x1p-23); // one ulp of the quotient
    try std.testing.expect(std.math.isNan(recip(@as(@Vector(1, f32), @splat(std.math.nan(f32))))[0]));
}

test "act: special values saturate, NaN passes through" {
    const inf = std.math.inf(f32);
    const x = @Vector(8, f32){ inf, -inf, 1e30, -1e30, 0, -0.0, std.math.nan(f32), 1e-30 };
    const t = tanhVec(x);
    const s = sigmoidVec(x);
    const e = eluVec(x);
    const g = geluVec(x);
    const ex = expVec(x);
    const want_t = [_]f32{ 1, -1, 1, -1, 0, 0 };
    const want_s = [_]f32{ 1, 0, 1, 0, 0.5, 0.5 };
    const want_e = [_]f32{ inf, -1, 1e30, -1, 0, 0 };
    const want_g = [_]f32{ inf, 0, 1e30, 0, 0, 0 };
    const top: f32 = @floatCast(@exp(@as(f64, @as(f32, 88.37626))));
    const want_x = [_]f32{ top, 0, top, 0, 1, 1 };
    for (0..6) |i| {
        try std.testing.expectEqual(want_t[i], t[i]);
        try std.testing.expectEqual(want_s[i], s[i]);
        try std.testing.expectEqual(want_e[i], e[i]);
        try std.testing.expectEqual(want_g[i], g[i]);
        try std.testing.expectApproxEqRel(want_x[i], ex[i], 1e-6);
    }
    inline for (.{ t, s, e, g, ex, reluVec(x) }) |v| try std.testing.expect(std.math.isNan(v[6]));
    try std.testing.expectEqual(1e-30, t[7]);
    try std.testing.expectEqual(0, reluVec(x)[3]);
    const sub = @Vector(4, f32){ 1e-39, -1e-39, -std.math.nan(f32), -0.0 };
    const r = reluVec(sub);
    try std.testing.expectEqual(@as(u32, @bitCast(@as(f32, 1e-39))), @as(u32, @bitCast(r[0])));
    try std.testing.expectEqual(@as(u32, 0), @as(u32, @bitCast(r[1])));
    try std.testing.expect(std.math.isNan(r[2]));
    try std.testing.expectEqual(@as(u32, 0x8000_0000), @as(u32, @bitCast(r[3])));
}

test "act: apply covers tails; scalar tanh and sigmoid agree with the vector forms" {
    var y: [lanes + 3]f32 = undefined;
    for (&y, 0..) |*v, i| v.* = @as(f32, @floatFromInt(i)) * 0.37 - 2;
    const x = y;
    apply(.tanh, &y);
    for (x, y) |xi, yi| {
        try std.testing.expectApproxEqAbs(std.math.tanh(@as(f64, xi)), yi, 2e-7);
        try std.testing.expectEqual(tanh(xi), yi);
    }
    y = x;
    apply(.relu, &y);
    for (x, y) |xi, yi| try std.testing.expectEqual(@max(xi, 0), yi);
    try std.testing.expectApproxEqAbs(Ref.sigmoid(0.7), sigmoid(0.7), 2e-7);
}

test "act: log softmax f64 agreement, tails, infinities and NaN" {
    var y: [2 * lanes + 5]f32 = undefined;
    var rng = std.Random.DefaultPrng.init(4);
    for (&y) |*v| v.* = (rng.random().float(f32) - 0.5) * 80;
    const x = y;
    logSoftmax(&y);
    var m: f64 = -std.math.inf(f64);
    for (x) |v| m = @max(m, v);
    var s: f64 = 0;
    for (x) |v| s += @exp(v - m);
    // Outputs reach about -80: the bound is relative to max(1, |want|), as the TS tests measure.
    for (x, y) |xi, yi| {
        const want = (xi - m) - @log(s);
        try std.testing.expectApproxEqAbs(want, yi, 1e-6 * @max(1, @abs(want)));
    }
    const inf = std.math.inf(f32);
    var a = [_]f32{ 1, inf, -inf, inf, 3 };
    logSoftmax(&a);
    try std.testing.expectEqualSlices(f32, &.{ -inf, @log(@as(f32, 0.5)), -inf, @log(@as(f32, 0.5)), -inf }, &a);
    var c = [_]f32{ 1, std.math.nan(f32), 2 };
    logSoftmax(&c);
    for (c) |v| try std.testing.expect(std.math.isNan(v));
}

test "act: softmax f64 agreement, tails, infinities and NaN" {
    var y: [2 * lanes + 5]f32 = undefined;
    var rng = std.Random.DefaultPrng.init(3);
    for (&y) |*v| v.* = (rng.random().float(f32) - 0.5) * 40;
    const x = y;
    softmax(&y);
    var m: f64 = -std.math.inf(f64);
    for (x) |v| m = @max(m, v);
    var s: f64 = 0;
    for (x) |v| s += @exp(v - m);
    for (x, y) |xi, yi| try std.testing.expectApproxEqAbs(@exp(xi - m) / s, yi, 1e-6);

    const inf = std.math.inf(f32);
    var a = [_]f32{ 1, inf, -inf, inf, 3 };
    softmax(&a);
    try std.testing.expectEqualSlices(f32, &.{ 0, 0.5, 0, 0.5, 0 }, &a);
    var b = [_]f32{ -inf, -inf };
    softmax(&b);
    try std.testing.expectEqualSlices(f32, &.{ 0.5, 0.5 }, &b);
    var c = [_]f32{ 1, std.math.nan(f32), 2 };
    softmax(&c);
    for (c) |v| try std.testing.expect(std.math.isNan(v));
}

// ---- training: forward over rows and backward (zig/train) -----------------------------------

/// gelu'(x) = Phi(x) + x phi(x), vectorised in f32: Phi from the same Abramowitz-Stegun erfc
/// as geluVec (error below 1.5e-7), phi through expVec. Returns the derivative.
pub inline fn geluGradVec(x: anytype) @TypeOf(x) {
    const T = @TypeOf(x);
    const a = @abs(x) * vsplat(T, std.math.sqrt1_2);
    const t = vsplat(T, 1) / madd(a, vsplat(T, 0.3275911), vsplat(T, 1));
    var p = vsplat(T, 1.061405429);
    inline for (.{ -1.453152027, 1.421413741, -0.284496736, 0.254829592 }) |c| {
        p = madd(p, t, vsplat(T, c));
    }
    const e = expVec(-(a * a));
    const half_erfc = p * t * e * vsplat(T, 0.5);
    const cdf = @select(f32, x < vsplat(T, 0), half_erfc, vsplat(T, 1) - half_erfc);
    // phi(x) = e^(-x^2 / 2) / sqrt(2 pi), and e^(-a^2) is that exponential.
    return madd(x, e * vsplat(T, 0.3989422804014327), cdf);
}

/// d *= gelu'(z) over whole vectors and a tail.
fn geluBackwardF32(z: []const f32, d: []f32) void {
    var i: usize = 0;
    while (i + lanes <= d.len) : (i += lanes) {
        simd.store(d, i, simd.load(d, i) * geluGradVec(simd.load(z, i)));
    }
    for (z[i..d.len], d[i..]) |x, *g| g.* *= geluGradVec(@as(@Vector(1, f32), @splat(x)))[0];
}

/// Activations for training, generic over the float type. f32 runs the inference
/// approximations above (a QAT forward equals the inference forward bit for bit); f64 runs the
/// exact functions, so that gradient checks differentiate what the backward assumes.
/// Derivatives are taken from the output y (gelu: from the pre-activation z).
pub fn Grad(comptime T: type) type {
    return struct {
        /// True when backward needs the pre-activation (gelu).
        pub fn needsPre(a: desc.Act) bool {
            return a == .gelu;
        }

        /// y = act(y) in place over rows of `width` (softmax normalises each row).
        pub fn forward(a: desc.Act, y: []T, width: usize) void {
            if (a == .linear) return;
            if (a == .softmax or a == .logsoftmax) {
                var r: usize = 0;
                while (r < y.len) : (r += width) {
                    if (a == .softmax) softmaxRow(y[r..][0..width]) else logSoftmaxRow(y[r..][0..width]);
                }
                return;
            }
            if (T == f32) return apply(a, y);
            for (y) |*v| v.* = exact(a, v.*);
        }

        fn softmaxRow(y: []T) void {
            if (T == f32) return softmax(y);
            var m: T = -std.math.inf(T);
            for (y) |v| m = @max(m, v);
            var s: T = 0;
            for (y) |*v| {
                v.* = @exp(v.* - m);
                s += v.*;
            }
            for (y) |*v| v.* /= s;
        }

        fn logSoftmaxRow(y: []T) void {
            if (T == f32) return logSoftmax(y);
            var m: T = -std.math.inf(T);
            for (y) |v| m = @max(m, v);
            var s: T = 0;
            for (y) |v| s += @exp(v - m);
            const log_sum = @log(s);
            for (y) |*v| v.* = (v.* - m) - log_sum;
        }

        pub fn exact(a: desc.Act, x: T) T {
            return switch (a) {
                .linear, .softmax, .logsoftmax => x,
                .tanh => std.math.tanh(x),
                .sigmoid => 1 / (1 + @exp(-x)),
                .relu => @max(x, 0),
                .elu => if (x > 0) x else std.math.expm1(x),
                .gelu => 0.5 * x * (1 + @as(T, @floatCast(erf64(x * std.math.sqrt1_2)))),
            };
        }

        /// The standard normal CDF, exact (series), for the f64 gradient checks.
        fn normCdf(x: T) f64 {
            return 0.5 * (1 + erf64(@as(f64, x) * std.math.sqrt1_2));
        }

        /// d = d * act'(z) in place: y the outputs, z the pre-activations (used by gelu only).
        pub fn backward(a: desc.Act, y: []const T, z: []const T, d: []T, width: usize) void {
            switch (a) {
                .linear => {},
                .tanh => for (d, y) |*g, v| {
                    g.* *= 1 - v * v;
                },
                .sigmoid => for (d, y) |*g, v| {
                    g.* *= v * (1 - v);
                },
                .relu => for (d, y) |*g, v| {
                    if (!(v > 0)) g.* = 0;
                },
                .elu => for (d, y) |*g, v| {
                    if (!(v > 0)) g.* *= v + 1;
                },
                .gelu => if (T == f32) geluBackwardF32(z, d) else for (d, z) |*g, x| {
                    const xd: f64 = x;
                    const pdf = @exp(-0.5 * xd * xd) / @sqrt(2 * std.math.pi);
                    g.* *= @floatCast(normCdf(x) + xd * pdf);
                },
                // y = x - logsumexp(x): dx = dy - softmax(x) sum(dy), softmax(x) = e^y.
                .logsoftmax => {
                    var r: usize = 0;
                    while (r < d.len) : (r += width) {
                        const yr = y[r..][0..width];
                        const dr = d[r..][0..width];
                        var s: T = 0;
                        for (dr) |g| s += g;
                        for (dr, yr) |*g, v| g.* -= @exp(v) * s;
                    }
                },
                .softmax => {
                    var r: usize = 0;
                    while (r < d.len) : (r += width) {
                        const yr = y[r..][0..width];
                        const dr = d[r..][0..width];
                        var s: T = 0;
                        for (dr, yr) |g, v| s += g * v;
                        for (dr, yr) |*g, v| g.* = v * (g.* - s);
                    }
                },
            }
        }
    };
}

test "act: training backward of every activation against central differences in f64" {
    const G = Grad(f64);
    var prng = std.Random.DefaultPrng.init(11);
    const r = prng.random();
    const width = 7;
    inline for (std.meta.fields(desc.Act)) |field| {
        const a: desc.Act = @enumFromInt(field.value);
        var z: [2 * width]f64 = undefined;
        var w: [2 * width]f64 = undefined; // loss = sum w * act(z)
        for (&z, &w) |*v, *u| {
            v.* = (r.float(f64) - 0.5) * 6;
            if (@abs(v.*) < 1e-3) v.* = 0.5; // away from relu's and elu's kink
            u.* = r.float(f64) - 0.5;
        }
        var y = z;
        G.forward(a, &y, width);
        var d = w;
        G.backward(a, &y, &z, &d, width);
        const h = 1e-6;
        for (0..z.len) |i| {
            var zp = z;
            var zm = z;
            zp[i] += h;
            zm[i] -= h;
            G.forward(a, &zp, width);
            G.forward(a, &zm, width);
            var lp: f64 = 0;
            var lm: f64 = 0;
            for (zp, zm, w) |p, m, u| {
                lp += p * u;
                lm += m * u;
            }
            const numeric = (lp - lm) / (2 * h);
            // Central differences in f64 with h = 1e-6: truncation ~h^2 * f''' ~ 1e-11,
            // rounding ~1e-16 / h ~ 1e-10.
            try std.testing.expectApproxEqAbs(numeric, d[i], 1e-8);
        }
    }
}

test "act: geluGradVec against the exact derivative over [-20, 20]" {
    var worst: f64 = 0;
    var k: usize = 0;
    while (k < 40 * 1024) : (k += 1) {
        const x: f32 = -20 + @as(f32, @floatFromInt(k)) / 1024.0;
        const got = geluGradVec(@as(@Vector(1, f32), @splat(x)))[0];
        const xd: f64 = x;
        const want = 0.5 * (1 + erf64(xd * std.math.sqrt1_2)) + xd * @exp(-0.5 * xd * xd) / @sqrt(2 * std.math.pi);
        worst = @max(worst, @abs(got - want));
    }
    std.debug.print("gelu derivative max abs error {e:.2}\n", .{worst});
    // The erfc approximation's 1.5e-7 plus f32 rounding of x phi(x) (|x phi| <= 0.25).
    try std.testing.expect(worst <= 1e-6);
}
