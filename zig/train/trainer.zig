//! A trainer (docs/DESIGN.md, "Training ABI"): the f32 engine over one model and one
//! (batch, seq_len), the optimizer and its moments, the learning-rate schedule and the step
//! counter, all in one arena allocated by create. step, eval, grad and forward allocate
//! nothing; each checks its inputs before touching any state, so a refused call changes
//! nothing.
const std = @import("std");
const desc = @import("../layers/desc.zig");
const image = @import("../image.zig");
const model = @import("../model.zig");
const engine = @import("engine.zig");
const loss = @import("loss.zig");
const Pool = @import("pool.zig").Pool;

const Diag = image.Diag;
const Engine = engine.Engine(f32);
const LayerSpec = engine.LayerSpec;

pub const config_words = 32;
pub const config_version = 1;
pub const arena_bytes_max: u64 = 1 << 31;
pub const rows_max: u64 = 1 << 20;
pub const info_fields = 11;

pub const Error = image.Error || error{ OutOfMemory, BadArgument };

pub const Optimizer = enum(u32) { adamw = 0, sgd = 1 };

pub const Config = struct {
    batch: u32,
    seq_len: u32,
    loss: loss.Kind,
    optimizer: Optimizer,
    qat: bool,
    /// A second thread for large products (same bits; pays only on an idle core).
    helper_thread: bool,
    warmup_steps: u32,
    total_steps: u32,
    bptt_window: u32,
    seed: u64,
    lr: f32,
    lr_min: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    momentum: f32,
    clip_norm: f32,
    label_smoothing: f32,
    temperature: f32,

    /// Parses and checks the 32 config words; the message names the word and field.
    pub fn parse(words: []align(1) const u32, diag: *Diag) Error!Config {
        if (words.len != config_words) {
            return diag.fail(error.BadArgument, "config_len is {d}, expected {d} words", .{ words.len, config_words });
        }
        const f = struct {
            fn at(w: []align(1) const u32, i: usize) f32 {
                return @bitCast(w[i]);
            }
        }.at;
        if (words[0] != config_version) return bad(diag, 0, "version", "{d}, expected 1", .{words[0]});
        if (words[1] < 1 or words[1] > image.max_batch_max) return bad(diag, 1, "batch", "{d}, expected 1..4096", .{words[1]});
        if (words[2] < 1 or words[2] > desc.width_max) return bad(diag, 2, "seq_len", "{d}, expected 1..65536", .{words[2]});
        if (@as(u64, words[1]) * words[2] > rows_max) {
            return bad(diag, 2, "seq_len", "{d}: batch * seq_len is {d}, expected at most {d}", .{ words[2], @as(u64, words[1]) * words[2], rows_max });
        }
        if (words[3] > 3) return bad(diag, 3, "loss", "{d}, expected 0 (mse), 1 (xent), 2 (bce) or 3 (kl)", .{words[3]});
        if (words[4] > 1) return bad(diag, 4, "optimizer", "{d}, expected 0 (adamw) or 1 (sgd)", .{words[4]});
        if (words[5] > 3) return bad(diag, 5, "flags", "0x{x}, expected only bits 0 (qat) and 1 (helper thread)", .{words[5]});
        for (21..config_words) |i| {
            if (words[i] != 0) return bad(diag, i, "reserved", "{d}, expected 0", .{words[i]});
        }
        const c = Config{
            .batch = words[1],
            .seq_len = words[2],
            .loss = @enumFromInt(words[3]),
            .optimizer = @enumFromInt(words[4]),
            .qat = words[5] & 1 == 1,
            .helper_thread = words[5] & 2 == 2,
            .warmup_steps = words[6],
            .total_steps = words[7],
            .bptt_window = words[8],
            .seed = @as(u64, words[10]) << 32 | words[9],
            .lr = f(words, 11),
            .lr_min = f(words, 12),
            .beta1 = f(words, 13),
            .beta2 = f(words, 14),
            .eps = f(words, 15),
            .weight_decay = f(words, 16),
            .momentum = f(words, 17),
            .clip_norm = f(words, 18),
            .label_smoothing = f(words, 19),
            .temperature = f(words, 20),
        };
        if (!(c.lr > 0 and std.math.isFinite(c.lr))) return bad(diag, 11, "lr", "{e}, expected a finite value > 0", .{c.lr});
        if (!(c.lr_min >= 0 and c.lr_min <= c.lr)) return bad(diag, 12, "lr_min", "{e}, expected 0..lr", .{c.lr_min});
        if (!(c.beta1 >= 0 and c.beta1 < 1)) return bad(diag, 13, "beta1", "{e}, expected [0, 1)", .{c.beta1});
        if (!(c.beta2 >= 0 and c.beta2 < 1)) return bad(diag, 14, "beta2", "{e}, expected [0, 1)", .{c.beta2});
        // A subnormal eps would be 0 in the step, which runs with subnormals flushed (0 / 0).
        if (!(c.eps >= std.math.floatMin(f32) and std.math.isFinite(c.eps))) return bad(diag, 15, "eps", "{e}, expected a finite value >= 1.2e-38 (not subnormal)", .{c.eps});
        if (!(c.weight_decay >= 0 and std.math.isFinite(c.weight_decay))) return bad(diag, 16, "weight_decay", "{e}, expected a finite value >= 0", .{c.weight_decay});
        if (!(c.momentum >= 0 and c.momentum < 1)) return bad(diag, 17, "momentum", "{e}, expected [0, 1)", .{c.momentum});
        if (!(c.clip_norm >= 0 and std.math.isFinite(c.clip_norm))) return bad(diag, 18, "clip_norm", "{e}, expected a finite value >= 0 (0: off)", .{c.clip_norm});
        if (!(c.label_smoothing >= 0 and c.label_smoothing < 1)) return bad(diag, 19, "label_smoothing", "{e}, expected [0, 1)", .{c.label_smoothing});
        if (!(c.temperature > 0 and std.math.isFinite(c.temperature))) return bad(diag, 20, "temperature", "{e}, expected a finite value > 0", .{c.temperature});
        return c;
    }

    fn bad(diag: *Diag, word: usize, comptime field: []const u8, comptime fmt: []const u8, args: anytype) error{BadImage} {
        return diag.fail(error.BadImage, "config word {d} ({s}) is " ++ fmt, .{ word, field } ++ args);
    }
};

/// The learning rate of step s (0-based): linear warm-up, then cosine decay to lr_min.
pub fn learningRate(c: *const Config, s: u64) f64 {
    const lr: f64 = c.lr;
    if (s < c.warmup_steps) return lr * @as(f64, @floatFromInt(s + 1)) / @as(f64, @floatFromInt(c.warmup_steps));
    if (c.total_steps == 0) return lr;
    const span: f64 = @floatFromInt(@max(1, @as(i64, c.total_steps) - c.warmup_steps));
    const p = @min(1, @as(f64, @floatFromInt(s - c.warmup_steps)) / span);
    const lo: f64 = c.lr_min;
    return lo + (lr - lo) * 0.5 * (1 + @cos(std.math.pi * p));
}

/// Per parameter: bit 0 weight decay applies (matrices), bit 1 frozen (batchnorm statistics).
const decay_bit: u8 = 1;
const frozen_bit: u8 = 2;

const L = std.simd.suggestVectorLength(f32) orelse 4;
const VF = @Vector(L, f32);

pub const Trainer = struct {
    counting: model.CountingAllocator,
    arena: []align(64) u8,
    engine: Engine,
    specs: []LayerSpec,
    /// Per parameter: weight_decay on matrices, else 0.
    decay: []f32,
    /// Per parameter: 1, or 0 for frozen statistics (never updated).
    live: []f32,
    m: []f32,
    v: []f32,
    step_count: u64,
    config: Config,
    /// The helper thread for large matrix products (results are the same bits without it).
    pool: Pool = .{},
    diag: Diag = .{},

    pub fn create(backing: std.mem.Allocator, caller_bytes: []const u8, words: []align(1) const u32, diag: *Diag) Error!*Trainer {
        const cfg = try Config.parse(words, diag);
        _ = try image.parseHeader(caller_bytes, diag);
        const bytes = backing.dupe(u8, caller_bytes) catch return oom(diag, caller_bytes.len);
        defer backing.free(bytes);
        const img = try image.parse(bytes, diag);
        var it = img.layers();
        const n_layers = img.header.layer_count;
        // First pass: the specs on the stack of the sizing carver are not kept; count only.
        const t = backing.create(Trainer) catch return oom(diag, @sizeOf(Trainer));
        errdefer backing.destroy(t);
        t.* = .{
            .counting = .{ .backing = backing },
            .arena = &.{},
            .engine = .{},
            .specs = &.{},
            .decay = &.{},
            .live = &.{},
            .m = &.{},
            .v = &.{},
            .step_count = 0,
            .config = cfg,
        };
        const a = t.counting.allocator();
        const spec_buf = a.alloc(LayerSpec, n_layers) catch return oom(diag, n_layers * @sizeOf(LayerSpec));
        errdefer a.free(spec_buf);
        var index: usize = 0;
        while (it.next()) |view| : (index += 1) {
            var s = LayerSpec{ .desc = view.desc, .tensor_count = view.tensor_count, .lens = view.lens, .matrices = 0 };
            s.desc.weight_type = .f32;
            s.desc.sparse = false;
            switch (s.desc.kind) {
                inline else => |k| if (@hasDecl(image.Impl(k), "matrixTensors")) {
                    s.matrices = image.Impl(k).matrixTensors(&s.desc);
                },
            }
            if (!engine.trainable(s.desc.kind)) {
                return diag.fail(error.BadArgument, "layer {d} ({s}): training is not available for this kind", .{
                    index, @tagName(s.desc.kind),
                });
            }
            spec_buf[index] = s;
        }
        const ecfg = engine.Config{
            .batch = cfg.batch,
            .seq = cfg.seq_len,
            .window = cfg.bptt_window,
            .qat = cfg.qat,
            .loss = .{ .kind = cfg.loss, .label_smoothing = cfg.label_smoothing, .temperature = cfg.temperature },
        };
        var sizing = engine.Carver{ .limit = arena_bytes_max };
        t.engine.layout(spec_buf, img.header.input_size, ecfg, &sizing);
        const p: u64 = img.parameter_count;
        for (0..4) |_| _ = sizing.take(f32, p);
        if (sizing.overflow) {
            return diag.fail(error.Limit, "the trainer needs more memory than the limit of {d} bytes " ++
                "(batch {d} x seq_len {d})", .{ arena_bytes_max, cfg.batch, cfg.seq_len });
        }
        const size: usize = @intCast(sizing.at);
        t.arena = a.alignedAlloc(u8, .@"64", size) catch return oom(diag, size);
        errdefer a.free(t.arena);
        @memset(t.arena, 0);
        var carver = engine.Carver{ .base = t.arena.ptr, .limit = arena_bytes_max };
        t.engine = .{};
        t.engine.layout(spec_buf, img.header.input_size, ecfg, &carver);
        t.decay = carver.take(f32, p);
        t.live = carver.take(f32, p);
        t.m = carver.take(f32, p);
        t.v = carver.take(f32, p);
        std.debug.assert(!carver.overflow and carver.at == sizing.at);
        t.specs = spec_buf;
        if (cfg.helper_thread) {
            t.pool.start();
            t.engine.ctx.pool = &t.pool;
        }
        // Parameters: the image's tensors in order, straight into place.
        var slices: [desc.tensors_max][]const f32 = undefined;
        var it2 = img.layers();
        var at: usize = 0;
        for (t.specs) |*s| {
            const view = it2.next().?;
            const n = s.paramLen();
            _ = view.copyTensors(img.bytes, t.engine.params[at..][0..n], &slices);
            var t_at = at;
            for (s.lens[0..s.tensor_count], 0..) |len, ti| {
                var flag: u8 = 0;
                if (s.matrices >> @intCast(ti) & 1 == 1) flag |= decay_bit;
                if (s.desc.kind == .batchnorm and ti + 2 >= s.tensor_count) flag |= frozen_bit;
                @memset(t.decay[t_at..][0..len], if (flag & decay_bit != 0) cfg.weight_decay else 0);
                @memset(t.live[t_at..][0..len], if (flag & frozen_bit != 0) 0 else 1);
                t_at += len;
            }
            at += n;
        }
        std.debug.assert(at == p);
        return t;
    }

    pub fn destroy(t: *Trainer) void {
        t.pool.finish();
        const a = t.counting.allocator();
        a.free(t.arena);
        a.free(t.specs);
        t.counting.backing.destroy(t);
    }

    pub fn parameterCount(t: *const Trainer) usize {
        return t.engine.params.len;
    }

    pub fn stateLen(t: *const Trainer) usize {
        return 2 + 2 * t.parameterCount();
    }

    pub fn info(t: *const Trainer) [info_fields]u64 {
        return .{
            model.abi_version,
            t.parameterCount(),
            t.stateLen(),
            t.engine.input_size,
            t.engine.output_size,
            t.config.batch,
            t.config.seq_len,
            t.counting.bytes_held + @sizeOf(Trainer),
            t.counting.alloc_count,
            t.counting.free_count,
            t.step_count,
        };
    }

    pub const Batch = struct {
        inputs: []const f32,
        targets: []const f32,
        form: loss.Form,
        mask: ?[]const f32,
    };

    /// Checks a batch against the model and the loss; the message names the argument, the
    /// element and what was expected.
    pub fn checkBatch(t: *Trainer, comptime name: []const u8, inputs: []const f32, targets: []const f32, mask: ?[]const f32) Error!Batch {
        const rows = t.engine.rows();
        const k = t.engine.output_size;
        try t.checkInputs(name, inputs);
        const form: loss.Form = if (t.config.loss == .xent and targets.len == rows) .classes else .rows;
        if (targets.len != rows * k and !(form == .classes)) {
            const extra = if (t.config.loss == .xent) " or batch x seq_len (class indices)" else "";
            return t.diag.fail(error.BadArgument, name ++ ": targets_len is {d}, expected {d} (batch {d} x seq_len {d} x output_size {d}){s}", .{
                targets.len, rows * k, t.config.batch, t.config.seq_len, k, extra,
            });
        }
        for (targets, 0..) |v, i| {
            const ok = switch (t.config.loss) {
                .mse, .kl => std.math.isFinite(v),
                .bce => v >= 0 and v <= 1,
                .xent => if (form == .classes) (v >= 0 and v < @as(f32, @floatFromInt(k)) and v == @floor(v)) else (v >= 0 and std.math.isFinite(v)),
            };
            if (!ok) {
                const want = switch (t.config.loss) {
                    .mse, .kl => "a finite value",
                    .bce => "a value in [0, 1]",
                    .xent => if (form == .classes) "an integer class index 0..output_size-1" else "a finite value >= 0",
                };
                return t.diag.fail(error.BadArgument, name ++ ": targets[{d}] is {e}, expected {s}", .{ i, v, want });
            }
        }
        if (mask) |m| {
            if (m.len != rows) {
                return t.diag.fail(error.BadArgument, name ++ ": mask_len is {d}, expected {d} (batch x seq_len) or 0 with a null mask", .{ m.len, rows });
            }
            var total: f64 = 0;
            for (m, 0..) |v, i| {
                if (!(v >= 0 and std.math.isFinite(v))) {
                    return t.diag.fail(error.BadArgument, name ++ ": mask[{d}] is {e}, expected a finite value >= 0", .{ i, v });
                }
                total += v;
            }
            if (!(total > 0)) return t.diag.fail(error.BadArgument, name ++ ": the mask sums to 0; expected at least one position weighted", .{});
        }
        return .{ .inputs = inputs, .targets = targets, .form = form, .mask = mask };
    }

    pub fn checkInputs(t: *Trainer, comptime name: []const u8, inputs: []const f32) Error!void {
        const want = t.engine.rows() * t.engine.input_size;
        if (inputs.len != want) {
            return t.diag.fail(error.BadArgument, name ++ ": in_len is {d}, expected {d} (batch {d} x seq_len {d} x input_size {d})", .{
                inputs.len, want, t.config.batch, t.config.seq_len, t.engine.input_size,
            });
        }
        for (inputs, 0..) |v, i| {
            if (!std.math.isFinite(v)) return t.diag.fail(error.BadArgument, name ++ ": in[{d}] is {e}, expected a finite value", .{ i, v });
        }
    }

    fn run(t: *Trainer, b: Batch, grad: bool) loss.Result {
        @memcpy(t.engine.input(), b.inputs);
        t.engine.forward();
        const r = t.engine.lossGrad(b.targets, b.form, b.mask, grad);
        if (grad) t.engine.backward(false);
        return r;
    }

    /// Loss and gradients, nothing updated.
    pub fn gradient(t: *Trainer, b: Batch) loss.Result {
        return t.run(b, true);
    }

    pub fn evaluate(t: *Trainer, b: Batch) loss.Result {
        return t.run(b, false);
    }

    /// The model output for `inputs` (already checked), final activation applied.
    pub fn forward(t: *Trainer, inputs: []const f32, out: []f32) void {
        @memcpy(t.engine.input(), inputs);
        t.engine.forward();
        t.engine.modelOutput(out);
    }

    /// One optimizer step. A non-finite loss or gradient is refused before any update, and so
    /// is an update that would make a parameter or the optimizer state non-finite (a huge
    /// learning rate or weight decay): a first pass computes every new value without storing
    /// it, so a refused step leaves parameters and state as they were.
    pub fn step(t: *Trainer, b: Batch) Error!f64 {
        const r = t.run(b, true);
        const g = t.engine.grads;
        const norm = @sqrt(sumSquares(g, t.live));
        if (!std.math.isFinite(r.loss) or !std.math.isFinite(norm)) {
            return t.diag.fail(error.BadArgument, "cz_trainer_step: the loss ({e}) or the gradient norm ({e}) is not finite; " ++
                "parameters and state unchanged (lower the learning rate or clip the gradient norm)", .{ r.loss, norm });
        }
        const clip: f64 = t.config.clip_norm;
        const gscale: f32 = if (clip > 0 and norm > clip) @floatCast(clip / norm) else 1;
        const lr: f32 = @floatCast(learningRate(&t.config, t.step_count));
        const whole = t.engine.params.len / L * L;
        switch (t.config.optimizer) {
            .adamw => {
                const tn: f64 = @floatFromInt(t.step_count + 1);
                const k = AdamW{
                    .b1 = t.config.beta1,
                    .b2 = t.config.beta2,
                    .c1 = @floatCast(1 - std.math.pow(f64, t.config.beta1, tn)),
                    .c2 = @floatCast(1 - std.math.pow(f64, t.config.beta2, tn)),
                    .eps = t.config.eps,
                    .lr = lr,
                    .gscale = gscale,
                };
                try t.applyUpdate(k, g, whole, lr);
            },
            .sgd => try t.applyUpdate(Sgd{ .mu = t.config.momentum, .lr = lr, .gscale = gscale }, g, whole, lr),
        }
        t.step_count += 1;
        return r.loss;
    }

    /// Checks that `k`'s update keeps every parameter and state value finite, then applies it.
    fn applyUpdate(t: *Trainer, k: anytype, g: []const f32, whole: usize, lr: f32) Error!void {
        const n = t.engine.params.len;
        var finite = true;
        var i: usize = 0;
        while (i < whole) : (i += L) finite = finite and k.finite(VF, i, t, g);
        while (i < n) : (i += 1) finite = finite and k.finite(@Vector(1, f32), i, t, g);
        if (!finite) {
            return t.diag.fail(error.BadArgument, "cz_trainer_step: the update would make a parameter or the optimizer " ++
                "state non-finite (learning rate {e}, weight_decay {e}); parameters and state unchanged (lower the " ++
                "learning rate or the weight decay)", .{ lr, t.config.weight_decay });
        }
        i = 0;
        while (i < whole) : (i += L) k.update(VF, i, t, g);
        while (i < n) : (i += 1) k.update(@Vector(1, f32), i, t, g);
    }

    pub fn setParams(t: *Trainer, values: []const f32) Error!void {
        for (values, 0..) |v, i| {
            if (!std.math.isFinite(v)) return t.diag.fail(error.BadArgument, "cz_trainer_set_params: in[{d}] is {e}, expected a finite value", .{ i, v });
        }
        @memcpy(t.engine.params, values);
    }

    /// Which parameters step may change: 1 trainable, 0 held (pruned weights stay 0, or a
    /// frozen part of the model); batchnorm statistics stay frozen whatever this says.
    pub fn setTrainable(t: *Trainer, values: []const f32) Error!void {
        for (values, 0..) |v, i| {
            if (v != 0 and v != 1) return t.diag.fail(error.BadArgument, "cz_trainer_set_trainable: in[{d}] is {e}, expected 0 or 1", .{ i, v });
        }
        @memcpy(t.live, values);
        var at: usize = 0;
        for (t.specs) |*s| {
            const n = s.paramLen();
            if (s.desc.kind == .batchnorm) {
                const stats = s.lens[s.tensor_count - 1] + s.lens[s.tensor_count - 2];
                @memset(t.live[at + n - stats ..][0..stats], 0);
            }
            at += n;
        }
    }

    pub fn getState(t: *const Trainer, out: []f32) void {
        out[0] = @bitCast(@as(u32, @truncate(t.step_count)));
        out[1] = @bitCast(@as(u32, @truncate(t.step_count >> 32)));
        const p = t.parameterCount();
        @memcpy(out[2..][0..p], t.m);
        @memcpy(out[2 + p ..][0..p], t.v);
    }

    pub fn setState(t: *Trainer, values: []const f32) Error!void {
        const p = t.parameterCount();
        for (values[2..], 0..) |v, i| {
            const ok = std.math.isFinite(v) and (i < p or v >= 0 or t.config.optimizer == .sgd);
            if (!ok) return t.diag.fail(error.BadArgument, "cz_trainer_set_state: in[{d}] is {e}, expected a finite value (and >= 0 for AdamW's v)", .{ i + 2, v });
        }
        const lo: u32 = @bitCast(values[0]);
        const hi: u32 = @bitCast(values[1]);
        t.step_count = @as(u64, hi) << 32 | lo;
        @memcpy(t.m, values[2..][0..p]);
        @memcpy(t.v, values[2 + p ..][0..p]);
    }
};

/// sum (g live)^2 in f64 (the gradient of the parameters that update), eight partial sums in
/// a fixed order.
fn sumSquares(g: []const f32, live: []const f32) f64 {
    const W = @Vector(8, f64);
    var acc: W = @splat(0);
    var i: usize = 0;
    while (i + 8 <= g.len) : (i += 8) {
        const v: W = @floatCast(@as(@Vector(8, f32), g[i..][0..8].*) * @as(@Vector(8, f32), live[i..][0..8].*));
        acc += v * v;
    }
    var total = @reduce(.Add, acc);
    for (g[i..], live[i..]) |x, m| total += @as(f64, x * m) * (x * m);
    return total;
}

/// One AdamW update of the parameters at i.. (a vector of them): frozen ones (live 0) keep
/// their value; weight decay is decoupled and applies where `decay` is set.
const AdamW = struct {
    b1: f32,
    b2: f32,
    c1: f32,
    c2: f32,
    eps: f32,
    lr: f32,
    gscale: f32,

    inline fn update(k: AdamW, comptime V: type, i: usize, t: *Trainer, g: []const f32) void {
        const n = @typeInfo(V).vector.len;
        const m, const v, const w = k.next(V, i, t, g);
        t.m[i..][0..n].* = m;
        t.v[i..][0..n].* = v;
        t.engine.params[i..][0..n].* = w;
    }

    inline fn finite(k: AdamW, comptime V: type, i: usize, t: *Trainer, g: []const f32) bool {
        const m, const v, const w = k.next(V, i, t, g);
        return allFinite(V, m) and allFinite(V, v) and allFinite(V, w);
    }

    /// The new momentum, second moment and parameters at i.. (not stored).
    inline fn next(k: AdamW, comptime V: type, i: usize, t: *Trainer, g: []const f32) [3]V {
        const n = @typeInfo(V).vector.len;
        const s = struct {
            inline fn splat(x: f32) V {
                return @splat(x);
            }
        }.splat;
        const w: V = t.engine.params[i..][0..n].*;
        const gi = @as(V, g[i..][0..n].*) * s(k.gscale);
        const m = s(k.b1) * @as(V, t.m[i..][0..n].*) + s(1 - k.b1) * gi;
        const v = s(k.b2) * @as(V, t.v[i..][0..n].*) + s(1 - k.b2) * gi * gi;
        const step = (m / s(k.c1)) / (@sqrt(v / s(k.c2)) + s(k.eps));
        const decay: V = t.decay[i..][0..n].*;
        const live: V = t.live[i..][0..n].*;
        return .{ m, v, w - live * s(k.lr) * (step + decay * w) };
    }
};

/// Every lane of x is finite (a NaN compares false).
inline fn allFinite(comptime V: type, x: V) bool {
    return @reduce(.And, @abs(x) <= @as(V, @splat(std.math.floatMax(f32))));
}

/// One SGD-with-momentum update: g + decay w into the momentum, then w -= lr m.
const Sgd = struct {
    mu: f32,
    lr: f32,
    gscale: f32,

    inline fn update(k: Sgd, comptime V: type, i: usize, t: *Trainer, g: []const f32) void {
        const n = @typeInfo(V).vector.len;
        const m, const w = k.next(V, i, t, g);
        t.m[i..][0..n].* = m;
        t.engine.params[i..][0..n].* = w;
    }

    inline fn finite(k: Sgd, comptime V: type, i: usize, t: *Trainer, g: []const f32) bool {
        const m, const w = k.next(V, i, t, g);
        return allFinite(V, m) and allFinite(V, w);
    }

    /// The new momentum and parameters at i.. (not stored).
    inline fn next(k: Sgd, comptime V: type, i: usize, t: *Trainer, g: []const f32) [2]V {
        const n = @typeInfo(V).vector.len;
        const w: V = t.engine.params[i..][0..n].*;
        const decay: V = t.decay[i..][0..n].*;
        const live: V = t.live[i..][0..n].*;
        const gi = @as(V, g[i..][0..n].*) * @as(V, @splat(k.gscale)) + decay * w;
        const m = @as(V, @splat(k.mu)) * @as(V, t.m[i..][0..n].*) + gi;
        return .{ m, w - live * @as(V, @splat(k.lr)) * m };
    }
};

fn oom(diag: *Diag, bytes: usize) error{OutOfMemory} {
    return diag.fail(error.OutOfMemory, "out of memory allocating {d} bytes for the trainer", .{bytes});
}
