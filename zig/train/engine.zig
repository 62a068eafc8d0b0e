//! The training engine, generic over the float type: a model's layers over one batch of
//! sequences, with every buffer carved once from one arena (docs/DESIGN.md, "Training ABI").
//! forward runs the layers in turn keeping every output; lossGrad computes the loss and its
//! gradient at the output; backward runs the layers' backward passes in reverse into the
//! parameter gradients. The trainer (trainer.zig) runs it in f32; the gradient checks below
//! run it in f64 against central finite differences.
const std = @import("std");
const desc = @import("../layers/desc.zig");
const act = @import("../layers/act.zig");
const dense = @import("../layers/dense.zig");
const norm = @import("../layers/norm.zig");
const lstm = @import("../layers/lstm.zig");
const gru = @import("../layers/gru.zig");
const conv1d = @import("../layers/conv1d.zig");
const attention = @import("../layers/attention.zig");
const common = @import("common.zig");
const loss = @import("loss.zig");
const image = @import("../image.zig");

const LayerDesc = desc.LayerDesc;

/// The training namespace of each kind (each exposes savedLen, scratchLen, forward,
/// backward), looked up by name so that a kind added to desc.Kind elsewhere still compiles
/// here: it gets Untrainable, and the trainer refuses it at create.
pub fn Impl(comptime kind: desc.Kind, comptime T: type) type {
    const table = .{
        .{ "dense", dense.Train },
        .{ "activation", norm.TrainActivation },
        .{ "layernorm", norm.TrainLayerNorm },
        .{ "batchnorm", norm.TrainBatchNorm },
        .{ "prelu", norm.TrainPrelu },
        .{ "lstm", lstm.Train },
        .{ "gru", gru.Train },
        .{ "conv1d", conv1d.Train },
        .{ "attention", attention.TrainAttention },
        .{ "transformer", attention.TrainTransformer },
    };
    inline for (table) |entry| {
        if (comptime std.mem.eql(u8, @tagName(kind), entry[0])) return entry[1](T);
    }
    return Untrainable(T);
}

/// A kind without a backward yet: never run (create refuses it).
fn Untrainable(comptime T: type) type {
    return struct {
        pub const untrainable = true;
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
            _ = .{ d, p, x, y, saved, c };
            unreachable;
        }

        pub fn backward(d: *const LayerDesc, p: []const T, x: []const T, y: []const T, saved: []T, dy: []T, dx: ?[]T, g: []T, c: Ctx) void {
            _ = .{ d, p, x, y, saved, dy, dx, g, c };
            unreachable;
        }
    };
}

/// False for a kind the engine cannot train.
pub fn trainable(kind: desc.Kind) bool {
    return switch (kind) {
        inline else => |k| !@hasDecl(Impl(k, f32), "untrainable"),
    };
}

/// Kinds whose own training forward runs QAT (fake-quantised products, the straight-through
/// estimator through them). Every other kind, under QAT, has its outputs replaced by the
/// inference kernel's (int8 where it has matrices), run step by step over each sequence from
/// a zeroed state; its backward is then the f32 layer's at the same input (the
/// straight-through estimator at the layer's level).
pub fn qatNative(kind: desc.Kind) bool {
    return switch (kind) {
        .dense, .activation, .lstm, .gru => true,
        else => false,
    };
}

/// The arena's regions: a first pass with no base only sums the sizes.
pub const Carver = struct {
    base: ?[*]align(64) u8 = null,
    at: u64 = 0,
    limit: u64,
    overflow: bool = false,

    pub fn take(c: *Carver, comptime U: type, n: u64) []U {
        const start = std.mem.alignForward(u64, c.at, 64);
        const bytes = std.math.mul(u64, n, @sizeOf(U)) catch return c.fail(U);
        c.at = std.math.add(u64, start, bytes) catch return c.fail(U);
        if (c.at > c.limit) return c.fail(U);
        const b = c.base orelse return &.{};
        if (c.overflow) return &.{};
        return @as([*]U, @ptrCast(@alignCast(b + start)))[0..@intCast(n)];
    }

    fn fail(c: *Carver, comptime U: type) []U {
        c.overflow = true;
        return &.{};
    }
};

/// A layer as the image carries it: its desc and its tensors' element counts.
pub const LayerSpec = struct {
    desc: LayerDesc,
    tensor_count: u8,
    lens: [desc.tensors_max]u32,
    /// Bit t: tensor t is a weight matrix (weight decay applies).
    matrices: u16,

    pub fn paramLen(s: *const LayerSpec) usize {
        var n: usize = 0;
        for (s.lens[0..s.tensor_count]) |l| n += l;
        return n;
    }
};

pub const Config = struct {
    batch: usize,
    seq: usize,
    window: usize = 0,
    qat: bool = false,
    loss: loss.Options,
};

pub fn Engine(comptime T: type) type {
    return struct {
        const Self = @This();
        const Ctx = common.Ctx(T);

        pub const Layer = struct {
            desc: LayerDesc,
            tensor_count: u8,
            lens: [desc.tensors_max]u32,
            params: []T,
            grads: []T,
            x: []T,
            y: []T,
            saved: []T,
        };

        layers: []Layer = &.{},
        input_size: usize = 0,
        output_size: usize = 0,
        ctx: Ctx = .{ .batch = 0, .seq = 0 },
        opt: loss.Options = .{ .kind = .mse },
        /// The last layer's activation when the loss reads its logits (else linear).
        final_act: desc.Act = .linear,
        params: []T = &.{},
        grads: []T = &.{},
        /// The input [rows][input_size], then every layer's output.
        acts: []T = &.{},
        d: [2][]T = .{ &.{}, &.{} },
        /// dLoss/dinput, when backward is asked for it.
        dinput: []T = &.{},
        work: []f64 = &.{},
        /// QAT: one layer's inference weights, state and scratch (see qatNative).
        qat_buf: []f32 = &.{},

        /// Sizes every region in `c` (no base) or carves them (base set, after a sizing pass).
        pub fn layout(e: *Self, specs: []const LayerSpec, input_size: usize, cfg: Config, c: *Carver) void {
            const carve = c.base != null;
            const last = specs[specs.len - 1].desc;
            e.input_size = input_size;
            e.output_size = last.out;
            e.ctx = .{ .batch = cfg.batch, .seq = cfg.seq, .window = cfg.window, .qat = cfg.qat };
            e.opt = cfg.loss;
            e.final_act = if (lastActivation(&last)) |a| (if (loss.absorbs(cfg.loss.kind, a)) a else .linear) else .linear;
            const n_rows = cfg.batch * cfg.seq;
            var params: u64 = 0;
            var acts: u64 = n_rows * input_size;
            var widest: u64 = input_size;
            var scratch: u64 = 0;
            var saved: u64 = 0;
            var qat: u64 = 0;
            var wt: u64 = 0;
            for (specs, 0..) |*s, i| {
                for (s.lens[0..s.tensor_count]) |len| wt = @max(wt, len);
                const d = e.trainedDesc(s, i == specs.len - 1);
                params += s.paramLen();
                acts += n_rows * @as(u64, d.out);
                widest = @max(widest, d.out);
                switch (d.kind) {
                    inline else => |k| {
                        const I = Impl(k, T);
                        scratch = @max(scratch, I.scratchLen(&d, e.ctx));
                        saved += std.mem.alignForward(u64, I.savedLen(&d, e.ctx), 16);
                        if (T == f32 and cfg.qat and !qatNative(k)) qat = @max(qat, inferenceLen(k, &d));
                    },
                }
            }
            const layers = c.take(Layer, specs.len);
            e.params = c.take(T, params);
            e.grads = c.take(T, params);
            e.acts = c.take(T, acts);
            const saved_all = c.take(T, saved);
            e.ctx.scratch = c.take(T, scratch);
            e.ctx.wt = c.take(T, wt);
            e.d = .{ c.take(T, n_rows * widest), c.take(T, n_rows * widest) };
            e.dinput = c.take(T, n_rows * input_size);
            e.work = c.take(f64, 2 * @as(u64, last.out));
            e.qat_buf = c.take(f32, qat);
            if (!carve or c.overflow) return;
            e.layers = layers;
            var p_at: usize = 0;
            var a_at: usize = n_rows * input_size;
            var s_at: usize = 0;
            for (specs, layers, 0..) |*s, *l, i| {
                const d = e.trainedDesc(s, i == specs.len - 1);
                const n = s.paramLen();
                const saved_len = switch (d.kind) {
                    inline else => |k| Impl(k, T).savedLen(&d, e.ctx),
                };
                l.* = .{
                    .desc = d,
                    .tensor_count = s.tensor_count,
                    .lens = s.lens,
                    .params = e.params[p_at..][0..n],
                    .grads = e.grads[p_at..][0..n],
                    .x = e.acts[a_at - n_rows * d.in ..][0 .. n_rows * d.in],
                    .y = e.acts[a_at..][0 .. n_rows * d.out],
                    .saved = saved_all[s_at..][0..saved_len],
                };
                p_at += n;
                a_at += n_rows * d.out;
                s_at += std.mem.alignForward(usize, saved_len, 16);
            }
        }

        fn trainedDesc(e: *const Self, s: *const LayerSpec, is_last: bool) LayerDesc {
            var d = s.desc;
            if (is_last and e.final_act != .linear) d.act = .linear;
            return d;
        }

        fn lastActivation(d: *const LayerDesc) ?desc.Act {
            return switch (d.kind) {
                .dense, .conv1d, .batchnorm, .activation => d.act,
                else => null,
            };
        }

        pub fn rows(e: *const Self) usize {
            return e.ctx.rows();
        }

        pub fn input(e: *Self) []T {
            return e.acts[0 .. e.rows() * e.input_size];
        }

        /// The last layer's output (logits when the loss absorbed the final activation).
        pub fn output(e: *Self) []T {
            return e.layers[e.layers.len - 1].y;
        }

        pub fn forward(e: *Self) void {
            for (e.layers) |*l| switch (l.desc.kind) {
                inline else => |k| {
                    Impl(k, T).forward(&l.desc, l.params, l.x, l.y, l.saved, e.ctx);
                    if (T == f32 and e.ctx.qat and !qatNative(k)) e.inferenceForward(k, l);
                },
            };
        }

        fn inferenceDesc(comptime k: desc.Kind, d: *const LayerDesc) LayerDesc {
            var q = d.*;
            q.weight_type = if (@hasDecl(image.Impl(k), "matrixTensors")) .int8 else .f32;
            return q;
        }

        fn inferenceLen(comptime k: desc.Kind, d: *const LayerDesc) u64 {
            const q = inferenceDesc(k, d);
            const s = image.Impl(k).sizes(&q, 1);
            return std.mem.alignForward(u64, s.weights, 16) + std.mem.alignForward(u64, s.state, 16) + s.scratch;
        }

        /// QAT for the kinds without their own (qatNative): y from the inference kernel.
        fn inferenceForward(e: *Self, comptime k: desc.Kind, l: *Layer) void {
            if (T != f32) unreachable;
            // skip reads the model input, which `forward` does not carry; it is untrainable, so
            // create refuses it before any step could reach here.
            if (comptime k == .skip) unreachable;
            const K = image.Impl(k);
            const d = inferenceDesc(k, &l.desc);
            const s = K.sizes(&d, 1);
            const w_len = std.mem.alignForward(usize, s.weights, 16);
            const st_len = std.mem.alignForward(usize, s.state, 16);
            const w = e.qat_buf[0..s.weights];
            const state = e.qat_buf[w_len..][0..s.state];
            const scratch = e.qat_buf[w_len + st_len ..][0..s.scratch];
            var slices: [desc.tensors_max][]const f32 = undefined;
            var at: usize = 0;
            for (l.lens[0..l.tensor_count], 0..) |len, t| {
                slices[t] = l.params[at..][0..len];
                at += len;
            }
            K.pack(&d, slices[0..l.tensor_count], w);
            const in: usize = d.in;
            const out: usize = d.out;
            for (0..e.ctx.batch) |b| {
                @memset(state, 0);
                for (0..e.ctx.seq) |t| {
                    const r = b * e.ctx.seq + t;
                    K.forward(&d, w, state, scratch, l.x[r * in ..][0..in], l.y[r * out ..][0..out]);
                }
            }
        }

        /// The model output as inference gives it: the final activation applied, into `out`.
        pub fn modelOutput(e: *Self, out: []T) void {
            const y = e.output();
            @memcpy(out[0..y.len], y);
            act.Grad(T).forward(e.final_act, out[0..y.len], e.output_size);
        }

        /// The loss over the output; with `grad`, dLoss/doutput goes to d[0].
        pub fn lossGrad(e: *Self, targets: []const T, form: loss.Form, mask: ?[]const T, grad: bool) loss.Result {
            const n = e.rows() * e.output_size;
            const dz: ?[]T = if (grad) e.d[0][0..n] else null;
            return loss.compute(T, e.opt, e.output(), e.output_size, e.rows(), targets, form, mask, dz, e.work);
        }

        /// After lossGrad(grad = true): the parameter gradients (set, not added), and
        /// dLoss/dinput into `dinput` when `want_dinput`.
        pub fn backward(e: *Self, want_dinput: bool) void {
            @memset(e.grads, 0);
            var cur: usize = 0;
            var i = e.layers.len;
            while (i > 0) {
                i -= 1;
                const l = &e.layers[i];
                const n_in = e.rows() * l.desc.in;
                const dx: ?[]T = if (i > 0) e.d[1 - cur][0..n_in] else if (want_dinput) e.dinput else null;
                const dy = e.d[cur][0 .. e.rows() * l.desc.out];
                switch (l.desc.kind) {
                    inline else => |k| Impl(k, T).backward(&l.desc, l.params, l.x, l.y, l.saved, dy, dx, l.grads, e.ctx),
                }
                cur = 1 - cur;
            }
        }
    };
}

// ---- gradient checks -----------------------------------------------------------------------

const testing = std.testing;

/// A spec from a desc, with the tensor counts the image would carry.
pub fn specOf(d: LayerDesc) LayerSpec {
    var s = LayerSpec{ .desc = d, .tensor_count = 0, .lens = @splat(0), .matrices = 0 };
    switch (d.kind) {
        inline else => |k| {
            const K = image.Impl(k);
            std.debug.assert(K.check(&d) == null);
            s.tensor_count = K.tensorLens(&d, &s.lens);
            if (@hasDecl(K, "matrixTensors")) s.matrices = K.matrixTensors(&d);
        },
    }
    return s;
}

fn layer(kind: desc.Kind, a: desc.Act, in: u32, out: u32, p: [3]u32, eps: f32) LayerDesc {
    return .{ .kind = kind, .act = a, .in = in, .out = out, .p = .{ p[0], p[1], p[2], 0, 0, 0, 0, 0 }, .f = .{ eps, 0 } };
}

/// Random parameters that keep each kind well-conditioned: norms' gains near 1, batchnorm
/// variances positive.
fn randomParams(specs: []const LayerSpec, params: []f64, r: std.Random) void {
    var at: usize = 0;
    for (specs) |*s| {
        const scale = 1.6 / @sqrt(@as(f64, @floatFromInt(s.desc.in)));
        var t_at = at;
        for (s.lens[0..s.tensor_count], 0..) |len, t| {
            const tensor = params[t_at..][0..len];
            for (tensor) |*v| v.* = (r.float(f64) * 2 - 1) * scale;
            const gain = (s.desc.kind == .layernorm and t == 0) or
                (s.desc.kind == .transformer and (t == 0 or t == 10)) or
                (s.desc.kind == .batchnorm and s.desc.p[0] == 1 and t == 0);
            if (gain) for (tensor) |*v| {
                v.* = 1 + (r.float(f64) - 0.5) * 0.4;
            };
            const variance = s.desc.kind == .batchnorm and t + 1 == s.tensor_count;
            if (variance) for (tensor) |*v| {
                v.* = 0.5 + r.float(f64);
            };
            t_at += len;
        }
        at += s.paramLen();
    }
}


const Check = struct {
    layers: []const LayerDesc,
    input_size: u32,
    batch: usize = 2,
    seq: usize,
    window: usize = 0,
    loss: loss.Options = .{ .kind = .mse },
    form: loss.Form = .rows,
    seed: u64 = 1,
};

/// Analytic gradients of every parameter and input element against central differences.
/// f64 throughout, h = 1e-6: truncation error ~h^2 |f'''| and rounding ~1e-16 |f| / h, both
/// below 1e-9 for these O(1) losses; the bound 1e-7 + 1e-6 |g| leaves a margin of 100 while a
/// wrong term (an error of the size of the gradient) fails it.
fn gradCheck(ch: Check) !void {
    const a = testing.allocator;
    var specs: [8]LayerSpec = undefined;
    for (ch.layers, 0..) |d, i| specs[i] = specOf(d);
    const sp = specs[0..ch.layers.len];
    const cfg = Config{ .batch = ch.batch, .seq = ch.seq, .window = ch.window, .loss = ch.loss };
    var e = Engine(f64){};
    var sizing = Carver{ .limit = 1 << 30 };
    e.layout(sp, ch.input_size, cfg, &sizing);
    try testing.expect(!sizing.overflow);
    const mem = try a.alignedAlloc(u8, .@"64", @intCast(sizing.at));
    defer a.free(mem);
    var carver = Carver{ .base = mem.ptr, .limit = 1 << 30 };
    e = .{};
    e.layout(sp, ch.input_size, cfg, &carver);
    var prng = std.Random.DefaultPrng.init(ch.seed);
    const r = prng.random();
    randomParams(sp, e.params, r);
    for (e.input()) |*v| v.* = (r.float(f64) * 2 - 1);
    const rows = e.rows();
    const K = e.output_size;
    const targets = try a.alloc(f64, rows * K);
    defer a.free(targets);
    for (targets, 0..) |*v, i| v.* = switch (ch.form) {
        .classes => @floatFromInt((i * 7 + 3) % K),
        .rows => if (ch.loss.kind == .kl) r.float(f64) * 4 - 2 else r.float(f64),
    };
    const mask = try a.alloc(f64, rows);
    defer a.free(mask);
    for (mask, 0..) |*v, i| v.* = if (i % 5 == 3) 0 else 1;
    if (rows == 1) mask[0] = 1;

    e.forward();
    _ = e.lossGrad(targets, ch.form, mask, true);
    e.backward(true);
    const grads = try a.dupe(f64, e.grads);
    defer a.free(grads);
    const dinput = try a.dupe(f64, e.dinput);
    defer a.free(dinput);

    const h = 1e-6;
    const Probe = struct {
        fn lossAt(en: *Engine(f64), v: *f64, x: f64, t: []const f64, f: loss.Form, m: []const f64) f64 {
            const keep = v.*;
            v.* = x;
            en.forward();
            const l = en.lossGrad(t, f, m, false).loss;
            v.* = keep;
            return l;
        }
    };
    var worst: f64 = 0;
    for ([_][]f64{ e.params, e.input() }, [_][]const f64{ grads, dinput }) |values, analytic| {
        for (values, analytic, 0..) |*v, g, i| {
            const x = v.*;
            const lp = Probe.lossAt(&e, v, x + h, targets, ch.form, mask);
            const lm = Probe.lossAt(&e, v, x - h, targets, ch.form, mask);
            const numeric = (lp - lm) / (2 * h);
            worst = @max(worst, @abs(numeric - g));
            if (!(@abs(numeric - g) <= 1e-7 + 1e-6 * @abs(numeric))) {
                std.debug.print("gradient check failed: element {d}: analytic {e}, numeric {e}\n", .{ i, g, numeric });
                return error.TestExpectedEqual;
            }
        }
    }
}

test "gradient check: dense with every activation, every loss, seq 1 and 37" {
    const acts = [_]desc.Act{ .linear, .tanh, .sigmoid, .relu, .elu, .gelu, .softmax };
    for (acts) |a| for ([_]usize{ 1, 37 }) |seq| {
        try gradCheck(.{
            .layers = &.{ layer(.dense, a, 5, 7, .{ 1, 0, 0 }, 0), layer(.dense, .linear, 7, 3, .{ 0, 0, 0 }, 0) },
            .input_size = 5,
            .seq = seq,
        });
    };
    const losses = [_]struct { loss.Options, loss.Form, desc.Act }{
        .{ .{ .kind = .mse }, .rows, .tanh },
        .{ .{ .kind = .xent, .label_smoothing = 0.1 }, .classes, .softmax },
        .{ .{ .kind = .xent }, .classes, .linear },
        .{ .{ .kind = .xent }, .rows, .softmax },
        .{ .{ .kind = .bce }, .rows, .sigmoid },
        .{ .{ .kind = .bce }, .rows, .linear },
        .{ .{ .kind = .kl, .temperature = 2 }, .rows, .softmax },
    };
    for (losses) |case| for ([_]usize{ 1, 37 }) |seq| {
        try gradCheck(.{
            .layers = &.{ layer(.dense, .elu, 3, 9, .{ 1, 0, 0 }, 0), layer(.dense, case[2], 9, 5, .{ 1, 0, 0 }, 0) },
            .input_size = 3,
            .seq = seq,
            .batch = 3,
            .loss = case[0],
            .form = case[1],
        });
    };
}

test "gradient check: activation, layernorm, batchnorm and prelu layers" {
    for ([_]usize{ 1, 37 }) |seq| {
        try gradCheck(.{
            .layers = &.{
                layer(.dense, .linear, 4, 7, .{ 1, 0, 0 }, 0),
                layer(.layernorm, .linear, 7, 7, .{ 0, 0, 0 }, 1e-5),
                layer(.activation, .gelu, 7, 7, .{ 0, 0, 0 }, 0),
                layer(.batchnorm, .tanh, 7, 7, .{ 1, 0, 0 }, 1e-3),
                layer(.prelu, .linear, 7, 7, .{ 0, 0, 0 }, 0),
                layer(.batchnorm, .linear, 7, 7, .{ 0, 0, 0 }, 1e-3),
                layer(.activation, .softmax, 7, 7, .{ 0, 0, 0 }, 0),
            },
            .input_size = 4,
            .seq = seq,
        });
    }
}

test "gradient check: lstm and gru (BPTT over the whole sequence), seq 1 and 37" {
    for ([_]desc.Kind{ .lstm, .gru }) |kind| for ([_]usize{ 1, 37 }) |seq| {
        try gradCheck(.{
            .layers = &.{ layer(kind, .linear, 3, 5, .{ 0, 0, 0 }, 0), layer(.dense, .linear, 5, 2, .{ 1, 0, 0 }, 0) },
            .input_size = 3,
            .seq = seq,
        });
    };
}

test "gradient check: conv1d (dilation, groups, fused activation), seq 1 and 37" {
    for ([_]usize{ 1, 37 }) |seq| {
        try gradCheck(.{
            .layers = &.{
                layer(.conv1d, .tanh, 4, 6, .{ 3, 2, 2 }, 0),
                layer(.conv1d, .gelu, 6, 3, .{ 2, 1, 1 }, 0),
                layer(.conv1d, .linear, 3, 3, .{ 1, 1, 3 }, 0),
            },
            .input_size = 4,
            .seq = seq,
        });
    }
}

test "gradient check: attention and transformer (context shorter than the sequence), seq 1 and 37" {
    for ([_]usize{ 1, 37 }) |seq| {
        try gradCheck(.{
            .layers = &.{
                layer(.attention, .linear, 6, 6, .{ 2, 9, 0 }, 0),
                layer(.transformer, .gelu, 6, 6, .{ 3, 5, 7 }, 1e-5),
                layer(.transformer, .relu, 6, 6, .{ 1, 64, 5 }, 1e-5),
                layer(.dense, .softmax, 6, 5, .{ 1, 0, 0 }, 0),
            },
            .input_size = 6,
            .seq = seq,
            .loss = .{ .kind = .xent, .label_smoothing = 0.05 },
            .form = .classes,
        });
    }
}
