//! The training losses (docs/DESIGN.md, "Training ABI"): each position's loss from the logits
//! or outputs z [rows][K], its mask-weighted mean, its gradient with respect to z, and the
//! accuracy metric. Computed in f64 whatever the model's float type.
const std = @import("std");

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

/// log sum_j exp(s * v_j), and the softmax of s * v into p.
fn logSoftmax(comptime T: type, v: []const T, s: f64, p: []f64) f64 {
    var m: f64 = -std.math.inf(f64);
    for (v) |x| m = @max(m, s * @as(f64, x));
    var total: f64 = 0;
    for (v, p) |x, *q| {
        q.* = @exp(s * @as(f64, x) - m);
        total += q.*;
    }
    for (p) |*q| q.* /= total;
    return m + @log(total);
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
                for (zr, t, 0..) |zv, tv, j| {
                    const x: f64 = zv;
                    l += (@max(x, 0) - x * tv + std.math.log1p(@exp(-@abs(x)))) / kf;
                    acc += (if ((x > 0) == (tv >= 0.5)) @as(f64, 1) else 0) / kf;
                    const sig = if (x >= 0) 1 / (1 + @exp(-x)) else @exp(x) / (1 + @exp(x));
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
