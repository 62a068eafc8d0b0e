//! The training losses (docs/DESIGN.md, "Training ABI"): each position's loss from the logits
//! or outputs z [rows][K], its mask-weighted mean, its gradient with respect to z, and the
//! accuracy metric. Computed in f64 whatever the model's float type.
const std = @import("std");
const act = @import("../layers/act.zig");

pub const Kind = enum(u32) { mse = 0, xent = 1, bce = 2, kl = 3 };

pub const Options = struct {
    kind: Kind,
    label_smoothing: f64 = 0,
    temperature: f64 = 1,
};

/// Targets of xent: class indices [rows] or distributions [rows][K].
pub const Form = enum { classes, rows };

pub const Result = struct {
    /// Mask-weighted mean loss.
    loss: f64,
    /// Mask-weighted mean accuracy (mse: mean absolute error).
    metric: f64,
    /// Sum of the mask.
    weight: f64,
};

/// The final activation the loss reads through (its logits), if any.
pub fn absorbs(kind: Kind, a: @import("../layers/desc.zig").Act) bool {
    return switch (kind) {
        .xent, .kl => a == .softmax,
        .bce => a == .sigmoid,
        .mse => false,
    };
}

fn argmax(comptime T: type, v: []const T) usize {
    var best: usize = 0;
    for (v, 0..) |x, i| {
        if (x > v[best]) best = i;
    }
    return best;
}

/// log sum_j exp(s * v_j), and the softmax of s * v into p. f32 models take the exponentials
/// from act.zig's vector exp (relative error 2e-7), summed in f64; f64 uses @exp.
fn logSoftmax(comptime T: type, v: []const T, s: f64, p: []f64) f64 {
    var m: f64 = -std.math.inf(f64);
    for (v) |x| m = @max(m, s * @as(f64, x));
    var total: f64 = 0;
    if (T == f32) {
        const sf: f32 = @floatCast(s);
        const mf: f32 = @floatCast(m);
        var i: usize = 0;
        while (i < v.len) : (i += lanes) {
            var chunk: [lanes]f32 = @splat(-std.math.inf(f32));
            const n = @min(lanes, v.len - i);
            for (chunk[0..n], v[i..][0..n]) |*c, x| c.* = sf * x - mf;
            const e: [lanes]f32 = act.expVec(@as(@Vector(lanes, f32), chunk));
            for (p[i..][0..n], e[0..n]) |*q, x| {
                q.* = x;
                total += x;
            }
        }
    } else {
        for (v, p) |x, *q| {
            q.* = @exp(s * @as(f64, x) - m);
            total += q.*;
        }
    }
    for (p) |*q| q.* /= total;
    return m + @log(total);
}

const lanes = std.simd.suggestVectorLength(f32) orelse 4;

/// Per element of z: softplus(-|z|) = log(1 + e^-|z|) and the sigmoid of z, into sp and sig.
/// f32 through the vector exp and log(1 + e) = 2 atanh(e / (2 + e)) (odd series to the 15th
/// power: e / (2 + e) <= 1/3, so the first term left out is below 1e-8); f64 exact.
fn softplusSigmoid(comptime T: type, z: []const T, sp: []f64, sig: []f64) void {
    if (T != f32) {
        for (z, sp, sig) |x, *a, *b| {
            const e = @exp(-@abs(@as(f64, x)));
            a.* = std.math.log1p(e);
            b.* = if (x >= 0) 1 / (1 + e) else e / (1 + e);
        }
        return;
    }
    const V = @Vector(lanes, f32);
    var i: usize = 0;
    while (i < z.len) : (i += lanes) {
        var chunk: [lanes]f32 = @splat(0);
        const n = @min(lanes, z.len - i);
        @memcpy(chunk[0..n], z[i..][0..n]);
        const x: V = chunk;
        const e = act.expVec(-@abs(x));
        const one: V = @splat(1);
        const u = e / (@as(V, @splat(2)) + e);
        const uu = u * u;
        var poly: V = @splat(1.0 / 15.0);
        inline for (.{ 13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0 }) |k| poly = poly * uu + @as(V, @splat(1.0 / k));
        const softplus: [lanes]f32 = @as(V, @splat(2)) * u * poly;
        const inv = one / (one + e);
        const sg: [lanes]f32 = @select(f32, x >= @as(V, @splat(0)), inv, e * inv);
        for (0..n) |j| {
            sp[i + j] = softplus[j];
            sig[i + j] = sg[j];
        }
    }
}

/// Loss over `rows` positions of width K. `dz`, when given, receives dLoss/dz. `work` holds
/// 2 K f64. Inputs must have passed the trainer's checks (finite, in range, mask sum > 0).
pub fn compute(
    comptime T: type,
    opt: Options,
    z: []const T,
    K: usize,
    rows: usize,
    targets: []const T,
    form: Form,
    mask: ?[]const T,
    dz: ?[]T,
    work: []f64,
) Result {
    var weight: f64 = 0;
    for (0..rows) |r| weight += if (mask) |m| m[r] else 1;
    var loss: f64 = 0;
    var metric: f64 = 0;
    const p = work[0..K];
    const q = work[K..][0..K];
    const kf: f64 = @floatFromInt(K);
    for (0..rows) |r| {
        const w: f64 = (if (mask) |m| m[r] else 1);
        const zr = z[r * K ..][0..K];
        const scale = w / weight;
        var l: f64 = 0;
        var acc: f64 = 0;
        switch (opt.kind) {
            .mse => {
                const t = targets[r * K ..][0..K];
                for (zr, t, 0..) |zv, tv, j| {
                    const e = @as(f64, zv) - tv;
                    l += e * e / kf;
                    acc += @abs(e) / kf;
                    if (dz) |d| d[r * K + j] = @floatCast(scale * 2 * e / kf);
                }
            },
            .xent => {
                const lse = logSoftmax(T, zr, 1, p);
                switch (form) {
                    .classes => {
                        const cls: usize = @intFromFloat(targets[r]);
                        const s = opt.label_smoothing;
                        for (q, 0..) |*t, j| t.* = s / kf + (if (j == cls) 1 - s else 0);
                        acc = if (argmax(T, zr) == cls) 1 else 0;
                    },
                    .rows => {
                        const t = targets[r * K ..][0..K];
                        for (q, t) |*a, b| a.* = b;
                        acc = if (argmax(T, zr) == argmax(T, t)) 1 else 0;
                    },
                }
                var tsum: f64 = 0;
                for (q, zr) |t, zv| {
                    if (t != 0) l += t * (lse - zv);
                    tsum += t;
                }
                if (dz) |d| for (p, q, 0..) |pv, t, j| {
                    d[r * K + j] = @floatCast(scale * (tsum * pv - t));
                };
            },
            .bce => {
                const t = targets[r * K ..][0..K];
                softplusSigmoid(T, zr, p, q);
                for (zr, t, p, q, 0..) |zv, tv, sp, sig, j| {
                    const x: f64 = zv;
                    l += (@max(x, 0) - x * tv + sp) / kf;
                    acc += (if ((x > 0) == (tv >= 0.5)) @as(f64, 1) else 0) / kf;
                    if (dz) |d| d[r * K + j] = @floatCast(scale * (sig - tv) / kf);
                }
            },
            .kl => {
                const tau = opt.temperature;
                const t = targets[r * K ..][0..K];
                const lse_s = logSoftmax(T, zr, 1 / tau, p);
                const lse_t = logSoftmax(T, t, 1 / tau, q);
                for (q, zr, t) |qv, zv, tv| {
                    if (qv == 0) continue;
                    const log_q = @as(f64, tv) / tau - lse_t;
                    const log_p = @as(f64, zv) / tau - lse_s;
                    l += qv * (log_q - log_p);
                }
                l *= tau * tau;
                acc = if (argmax(T, zr) == argmax(T, t)) 1 else 0;
                if (dz) |d| for (p, q, 0..) |pv, qv, j| {
                    d[r * K + j] = @floatCast(scale * tau * (pv - qv));
                };
            },
        }
        loss += w * l;
        metric += w * acc;
    }
    return .{ .loss = loss / weight, .metric = metric / weight, .weight = weight };
}

test "loss: every kind's gradient against central differences in f64" {
    var prng = std.Random.DefaultPrng.init(23);
    const r = prng.random();
    const K = 5;
    const rows = 3;
    var work: [2 * K]f64 = undefined;
    var z: [rows * K]f64 = undefined;
    for (&z) |*v| v.* = (r.float(f64) - 0.5) * 4;
    const mask = [rows]f64{ 1, 0, 0.5 };
    var t_rows: [rows * K]f64 = undefined;
    for (&t_rows) |*v| v.* = r.float(f64);
    const t_classes = [rows]f64{ 4, 0, 2 };
    const cases = [_]struct { Options, Form }{
        .{ .{ .kind = .mse }, .rows },
        .{ .{ .kind = .xent, .label_smoothing = 0.1 }, .classes },
        .{ .{ .kind = .xent }, .rows },
        .{ .{ .kind = .bce }, .rows },
        .{ .{ .kind = .kl, .temperature = 2.5 }, .rows },
    };
    for (cases) |case| {
        const opt, const form = case;
        const t: []const f64 = if (form == .classes) &t_classes else &t_rows;
        var dz: [rows * K]f64 = undefined;
        _ = compute(f64, opt, &z, K, rows, t, form, &mask, &dz, &work);
        for (0..z.len) |i| {
            var zp = z;
            var zm = z;
            const h = 1e-6;
            zp[i] += h;
            zm[i] -= h;
            const lp = compute(f64, opt, &zp, K, rows, t, form, &mask, null, &work).loss;
            const lm = compute(f64, opt, &zm, K, rows, t, form, &mask, null, &work).loss;
            try std.testing.expectApproxEqAbs((lp - lm) / (2 * h), dz[i], 1e-8);
        }
    }
    // Smoothing 0 with class targets is the negative log-likelihood of the class.
    const res = compute(f64, .{ .kind = .xent }, &z, K, 1, &t_classes, .classes, null, null, &work);
    var p: [K]f64 = undefined;
    const lse = logSoftmax(f64, z[0..K], 1, &p);
    try std.testing.expectApproxEqAbs(lse - z[4], res.loss, 1e-12);
}

test "loss: the f32 paths (vector exp, softplus) agree with f64 within 1e-6" {
    var prng = std.Random.DefaultPrng.init(31);
    const r = prng.random();
    const K = 37;
    const rows = 5;
    var z32: [rows * K]f32 = undefined;
    var z64: [rows * K]f64 = undefined;
    var t32: [rows * K]f32 = undefined;
    var t64: [rows * K]f64 = undefined;
    for (&z32, &z64, &t32, &t64) |*a, *b, *c, *d| {
        a.* = (r.float(f32) - 0.5) * 30;
        b.* = a.*;
        c.* = r.float(f32);
        d.* = c.*;
    }
    var work: [2 * K]f64 = undefined;
    var d32: [rows * K]f32 = undefined;
    var d64: [rows * K]f64 = undefined;
    for ([_]Kind{ .xent, .bce, .kl, .mse }) |kind| {
        const opt = Options{ .kind = kind, .temperature = 1.5 };
        const a = compute(f32, opt, &z32, K, rows, &t32, .rows, null, &d32, &work);
        const b = compute(f64, opt, &z64, K, rows, &t64, .rows, null, &d64, &work);
        try std.testing.expectApproxEqRel(b.loss, a.loss, 1e-6);
        for (d32, d64) |x, y| try std.testing.expectApproxEqAbs(y, x, 1e-6);
    }
}
