//! Trainer tests: QAT forward against the int8 inference path bit for bit, seeded
//! reproducibility and bit-exact resume, learning on a small task, truncated BPTT, the
//! schedule, and the ABI's checks.
const std = @import("std");
const desc = @import("../layers/desc.zig");
const image = @import("../image.zig");
const model = @import("../model.zig");
const helpers = @import("../test.zig");
const trainer = @import("trainer.zig");
const api = @import("api.zig");
const engine = @import("engine.zig");

const testing = std.testing;
const Trainer = trainer.Trainer;

fn configWords(batch: u32, seq: u32, loss_kind: u32, optimizer: u32, flags: u32) [trainer.config_words]u32 {
    var w: [trainer.config_words]u32 = @splat(0);
    w[0] = 1;
    w[1] = batch;
    w[2] = seq;
    w[3] = loss_kind;
    w[4] = optimizer;
    w[5] = flags;
    const floats = [_]struct { usize, f32 }{
        .{ 11, 1e-2 }, .{ 13, 0.9 }, .{ 14, 0.999 }, .{ 15, 1e-8 }, .{ 16, 1e-4 }, .{ 17, 0.9 }, .{ 18, 1 }, .{ 20, 1 },
    };
    for (floats) |f| w[f[0]] = @bitCast(f[1]);
    return w;
}

fn createTrainer(bytes: []const u8, words: []const u32) !*Trainer {
    var diag: image.Diag = .{};
    return Trainer.create(testing.allocator, bytes, words, &diag) catch |err| {
        std.debug.print("create failed: {s}\n", .{diag.message()});
        return err;
    };
}

test "QAT: the trainer's forward equals the int8 inference path bit for bit (dense, lstm, gru)" {
    try expectQatExact(&.{
        .{ .kind = .dense, .act = .tanh, .in = 7, .out = 19, .p = helpers.params(1, 0, 0), .weight_type = .int8 },
        .{ .kind = .lstm, .in = 19, .out = 37, .weight_type = .int8 },
        .{ .kind = .activation, .act = .relu, .in = 37, .out = 37 },
        .{ .kind = .gru, .in = 37, .out = 35, .weight_type = .int8 },
        .{ .kind = .dense, .act = .softmax, .in = 35, .out = 5, .p = helpers.params(1, 0, 0), .weight_type = .int8 },
    });
}

test "QAT: conv1d, norms, prelu, attention and transformer equal the inference path bit for bit" {
    try expectQatExact(&.{
        .{ .kind = .conv1d, .act = .elu, .in = 7, .out = 12, .p = helpers.params(3, 2, 1), .weight_type = .int8 },
        .{ .kind = .layernorm, .in = 12, .out = 12, .f = .{ 1e-5, 0 } },
        .{ .kind = .attention, .in = 12, .out = 12, .p = helpers.params(3, 8, 0), .weight_type = .int8 },
        .{ .kind = .transformer, .act = .gelu, .in = 12, .out = 12, .p = helpers.params(2, 16, 24), .f = .{ 1e-5, 0 }, .weight_type = .int8 },
        .{ .kind = .batchnorm, .act = .tanh, .in = 12, .out = 12, .p = helpers.params(1, 0, 0), .f = .{ 1e-3, 0 } },
        .{ .kind = .prelu, .in = 12, .out = 12 },
        .{ .kind = .dense, .act = .softmax, .in = 12, .out = 5, .p = helpers.params(1, 0, 0), .weight_type = .int8 },
    });
}

fn expectQatExact(layers: []const helpers.Spec) !void {
    const a = testing.allocator;
    const bytes = try helpers.build(a, 99, 1, layers);
    defer a.free(bytes);
    var diag: image.Diag = .{};
    const m = try model.Model.create(a, bytes, &diag);
    defer m.destroy();
    const batch = 3;
    const seq = 37;
    const words = configWords(batch, seq, 1, 0, 1);
    const t = try createTrainer(bytes, &words);
    defer t.destroy();
    var prng = std.Random.DefaultPrng.init(4);
    const in = layers[0].in;
    const x = try a.alloc(f32, batch * seq * in);
    defer a.free(x);
    helpers.randomFloats(prng.random(), x, 2);
    const got = try a.alloc(f32, batch * seq * 5);
    defer a.free(got);
    t.forward(x, got);
    for (0..batch) |b| {
        m.reset();
        for (0..seq) |s| {
            const r = b * seq + s;
            var want: [5]f32 = undefined;
            m.forward(x[r * in ..][0..in], &want);
            for (want, got[r * 5 ..][0..5]) |w, g| {
                try testing.expectEqual(@as(u32, @bitCast(w)), @as(u32, @bitCast(g)));
            }
        }
    }
    // Without QAT the same trainer forward is the f32 model's, within f32 rounding.
    const words_f32 = configWords(batch, seq, 1, 0, 0);
    const t32 = try createTrainer(bytes, &words_f32);
    defer t32.destroy();
    const got32 = try a.alloc(f32, batch * seq * 5);
    defer a.free(got32);
    t32.forward(x, got32);
    var differs = false;
    for (got, got32) |q, f| {
        try testing.expectApproxEqAbs(q, f, 0.1);
        differs = differs or q != f;
    }
    try testing.expect(differs);
}

fn taskBatch(r: std.Random, x: []f32, y: []f32, batch: usize, seq: usize, classes: usize) void {
    // Copy with a delay of one: the target at t is the class shown at t - 1 (0 at t = 0).
    @memset(x, 0);
    for (0..batch) |b| {
        var prev: usize = 0;
        for (0..seq) |s| {
            const cls = r.uintLessThan(usize, classes);
            const row = b * seq + s;
            x[row * classes + cls] = 1;
            y[row] = @floatFromInt(prev);
            prev = cls;
        }
    }
}

const Run = struct { loss_first: f64, loss_last: f64 };

fn train(t: *Trainer, steps: usize, seed: u64) !Run {
    const a = testing.allocator;
    const batch = t.config.batch;
    const seq = t.config.seq_len;
    const classes = t.engine.input_size;
    const x = try a.alloc(f32, batch * seq * classes);
    defer a.free(x);
    const y = try a.alloc(f32, batch * seq);
    defer a.free(y);
    var prng = std.Random.DefaultPrng.init(seed);
    var run = Run{ .loss_first = 0, .loss_last = 0 };
    for (0..steps) |i| {
        taskBatch(prng.random(), x, y, batch, seq, classes);
        const b = try t.checkBatch("test", x, y, null);
        const l = try t.step(b);
        if (i == 0) run.loss_first = l;
        run.loss_last = l;
    }
    return run;
}

fn lstmImage(a: std.mem.Allocator) ![]u8 {
    const layers = [_]helpers.Spec{
        .{ .kind = .lstm, .in = 4, .out = 48 },
        .{ .kind = .dense, .act = .softmax, .in = 48, .out = 4, .p = helpers.params(1, 0, 0) },
    };
    return helpers.build(a, 5, 1, &layers);
}

test "trainer: an LSTM learns a delayed copy; same seed, same weights bit for bit; resume is exact" {
    const a = testing.allocator;
    const bytes = try lstmImage(a);
    defer a.free(bytes);
    var words = configWords(8, 12, 1, 0, 0);
    words[6] = 10; // warm-up
    words[7] = 300; // cosine decay
    words[5] = 2; // the helper thread
    const t1 = try createTrainer(bytes, &words);
    defer t1.destroy();
    const allocs = t1.counting.alloc_count;
    const run = try train(t1, 300, 7);
    try testing.expectEqual(allocs, t1.counting.alloc_count);
    // Chance is ln 4 = 1.386; the task is learnable exactly.
    try testing.expect(run.loss_first > 1.2);
    try testing.expect(run.loss_last < 0.3);

    const t2 = try createTrainer(bytes, &words);
    defer t2.destroy();
    _ = try train(t2, 300, 7);
    try testing.expectEqualSlices(u32, @ptrCast(t1.engine.params), @ptrCast(t2.engine.params));
    // One thread: the same bits (the helper's split never changes an element's arithmetic).
    try testing.expect(t1.pool.available());
    words[5] = 0;
    const t3 = try createTrainer(bytes, &words);
    defer t3.destroy();
    try testing.expect(!t3.pool.available());
    _ = try train(t3, 300, 7);
    try testing.expectEqualSlices(u32, @ptrCast(t1.engine.params), @ptrCast(t3.engine.params));

    // QAT (the int8 forward, straight-through backward) learns the task too.
    var qat_words = words;
    qat_words[5] = 1;
    const tq = try createTrainer(bytes, &qat_words);
    defer tq.destroy();
    const run_qat = try train(tq, 300, 7);
    try testing.expect(run_qat.loss_last < 0.3);

    // Resume: 100 steps, checkpoint (params + state) into a fresh trainer, 50 more, against
    // 150 uninterrupted; the batches continue from the same stream.
    for ([_]u32{ 0, 1 }) |opt| {
        words[4] = opt;
        const whole = try createTrainer(bytes, &words);
        defer whole.destroy();
        const first = try createTrainer(bytes, &words);
        defer first.destroy();
        _ = try train(whole, 150, 9);
        _ = try train(first, 100, 9);
        const state = try a.alloc(f32, first.stateLen());
        defer a.free(state);
        first.getState(state);
        const resumed = try createTrainer(bytes, &words);
        defer resumed.destroy();
        try resumed.setParams(first.engine.params);
        try resumed.setState(state);
        try testing.expectEqual(@as(u64, 100), resumed.step_count);
        // The remaining 50 batches of seed 9's stream: skip the first 100.
        const xs = try a.alloc(f32, 8 * 12 * 4);
        defer a.free(xs);
        const ys = try a.alloc(f32, 8 * 12);
        defer a.free(ys);
        var prng = std.Random.DefaultPrng.init(9);
        for (0..150) |i| {
            taskBatch(prng.random(), xs, ys, 8, 12, 4);
            if (i < 100) continue;
            _ = try resumed.step(try resumed.checkBatch("test", xs, ys, null));
        }
        try testing.expectEqualSlices(u32, @ptrCast(whole.engine.params), @ptrCast(resumed.engine.params));
    }
}

test "trainer: held parameters (set_trainable 0) never change; pruned weights stay 0" {
    const a = testing.allocator;
    const bytes = try lstmImage(a);
    defer a.free(bytes);
    for ([_]u32{ 0, 1 }) |opt| {
        const words = configWords(8, 12, 1, opt, 0);
        const t = try createTrainer(bytes, &words);
        defer t.destroy();
        const n = t.parameterCount();
        const mask = try a.alloc(f32, n);
        defer a.free(mask);
        const before = try a.dupe(f32, t.engine.params);
        defer a.free(before);
        for (mask, 0..) |*m, i| m.* = if (i % 3 == 0) 0 else 1;
        for (t.engine.params, mask) |*w, m| {
            if (m == 0) w.* = 0;
        }
        try t.setTrainable(mask);
        mask[5] = 0.5;
        try testing.expectError(error.BadArgument, t.setTrainable(mask));
        _ = try train(t, 20, 3);
        for (t.engine.params, before, 0..) |w, w0, i| {
            if (i % 3 == 0) try testing.expectEqual(@as(f32, 0), w) else try testing.expect(w != w0);
        }
    }
}

test "trainer: truncated BPTT stops gradients at window boundaries" {
    const a = testing.allocator;
    const layers = [_]helpers.Spec{
        .{ .kind = .gru, .in = 3, .out = 5 },
        .{ .kind = .lstm, .in = 5, .out = 4 },
        .{ .kind = .dense, .in = 4, .out = 2, .p = helpers.params(1, 0, 0) },
    };
    const bytes = try helpers.build(a, 21, 1, &layers);
    defer a.free(bytes);
    const seq = 12;
    var words = configWords(1, seq, 0, 0, 0);
    var full = try createTrainer(bytes, &words);
    defer full.destroy();
    words[8] = 4;
    var cut = try createTrainer(bytes, &words);
    defer cut.destroy();
    var x: [seq * 3]f32 = undefined;
    var y: [seq * 2]f32 = undefined;
    var prng = std.Random.DefaultPrng.init(1);
    helpers.randomFloats(prng.random(), &x, 1);
    helpers.randomFloats(prng.random(), &y, 1);
    // Loss on positions 0..3 only (the first window): truncation changes nothing.
    var mask: [seq]f32 = @splat(0);
    for (0..4) |i| mask[i] = 1;
    for ([_]*Trainer{ full, cut }) |t| _ = t.gradient(try t.checkBatch("test", &x, &y, &mask));
    try testing.expectEqualSlices(f32, full.engine.grads, cut.engine.grads);
    // Loss at position 9 only: with the window, inputs before position 8 get no gradient.
    @memset(&mask, 0);
    mask[9] = 1;
    for ([_]*Trainer{ full, cut }) |t| {
        const b = try t.checkBatch("test", &x, &y, &mask);
        @memcpy(t.engine.input(), b.inputs);
        t.engine.forward();
        _ = t.engine.lossGrad(b.targets, b.form, b.mask, true);
        t.engine.backward(true);
    }
    for (0..seq) |s| {
        const g_cut = cut.engine.dinput[s * 3 ..][0..3];
        const g_full = full.engine.dinput[s * 3 ..][0..3];
        const zero_cut = g_cut[0] == 0 and g_cut[1] == 0 and g_cut[2] == 0;
        const zero_full = g_full[0] == 0 and g_full[1] == 0 and g_full[2] == 0;
        try testing.expectEqual(s < 8 or s > 9, zero_cut);
        try testing.expectEqual(s > 9, zero_full);
    }
}

test "trainer: learning-rate warm-up and cosine decay" {
    var words = configWords(1, 1, 0, 0, 0);
    words[6] = 4;
    words[7] = 14;
    words[12] = @bitCast(@as(f32, 1e-3));
    var diag: image.Diag = .{};
    const c = try trainer.Config.parse(&words, &diag);
    try testing.expectApproxEqAbs(0.25e-2, trainer.learningRate(&c, 0), 1e-9);
    try testing.expectApproxEqAbs(1e-2, trainer.learningRate(&c, 3), 1e-9);
    try testing.expectApproxEqAbs(1e-2, trainer.learningRate(&c, 4), 1e-9);
    try testing.expectApproxEqAbs(1e-3 + 0.5 * 9e-3, trainer.learningRate(&c, 9), 1e-9);
    try testing.expectApproxEqAbs(1e-3, trainer.learningRate(&c, 14), 1e-9);
    try testing.expectApproxEqAbs(1e-3, trainer.learningRate(&c, 1000), 1e-9);
}

test "trainer ABI: every length, pointer and config word checked, with a message" {
    const a = testing.allocator;
    const bytes = try lstmImage(a);
    defer a.free(bytes);
    var words = configWords(2, 3, 1, 0, 0);
    var handle: u64 = 1;
    var err: [256]u8 = undefined;
    try testing.expectEqual(@as(u32, 1), api.cz_trainer_create(bytes.ptr, bytes.len, &words, 31, &handle, &err, err.len));
    try testing.expectEqual(@as(u64, 0), handle);
    try testing.expect(std.mem.indexOf(u8, &err, "config_len is 31") != null);
    words[3] = 9;
    try testing.expectEqual(@as(u32, 2), api.cz_trainer_create(bytes.ptr, bytes.len, &words, 32, &handle, &err, err.len));
    try testing.expect(std.mem.indexOf(u8, &err, "config word 3 (loss) is 9") != null);
    words[3] = 1;
    words[11] = @bitCast(@as(f32, -1));
    try testing.expectEqual(@as(u32, 2), api.cz_trainer_create(bytes.ptr, bytes.len, &words, 32, &handle, &err, err.len));
    try testing.expect(std.mem.indexOf(u8, &err, "(lr)") != null);
    words[11] = @bitCast(@as(f32, 1e-2));
    try testing.expectEqual(@as(u32, 2), api.cz_trainer_create(bytes.ptr, bytes.len - 4, &words, 32, &handle, &err, err.len));
    try testing.expectEqual(@as(u32, 0), api.cz_trainer_create(bytes.ptr, bytes.len, &words, 32, &handle, &err, err.len));
    const h: ?*anyopaque = @ptrFromInt(handle);
    defer api.cz_trainer_destroy(h);
    var info: [11]u64 = undefined;
    try testing.expectEqual(@as(u32, 0), api.cz_trainer_info(h, &info, info.len));
    const params = 4 * 48 * 4 + 4 * 48 * 48 + 4 * 48 + 48 * 4 + 4;
    try testing.expectEqual(@as(u64, params), info[1]);
    try testing.expectEqual(@as(u64, 2 + 2 * params), info[2]);
    var x: [2 * 3 * 4]f32 = @splat(0.5);
    var y = [_]f32{ 0, 1, 2, 3, 0, 1 };
    var loss: f32 = 0;
    var msg: [256]u8 = undefined;
    try testing.expectEqual(@as(u32, 1), api.cz_trainer_step(h, &x, x.len - 1, &y, y.len, null, 0, &loss));
    _ = api.cz_trainer_last_error(h, &msg, msg.len);
    try testing.expect(std.mem.indexOf(u8, &msg, "in_len is 23, expected 24") != null);
    y[2] = 4;
    try testing.expectEqual(@as(u32, 1), api.cz_trainer_step(h, &x, x.len, &y, y.len, null, 0, &loss));
    _ = api.cz_trainer_last_error(h, &msg, msg.len);
    try testing.expect(std.mem.indexOf(u8, &msg, "targets[2]") != null);
    y[2] = 2;
    var mask: [6]f32 = @splat(0);
    try testing.expectEqual(@as(u32, 1), api.cz_trainer_step(h, &x, x.len, &y, y.len, &mask, mask.len, &loss));
    const odd: *anyopaque = @ptrFromInt(@intFromPtr(&x) + 1);
    try testing.expectEqual(@as(u32, 1), api.cz_trainer_step(h, odd, x.len, &y, y.len, null, 0, &loss));
    try testing.expectEqual(@as(u32, 1), api.cz_trainer_step(h, null, x.len, &y, y.len, null, 0, &loss));
    try testing.expectEqual(@as(u32, 4), api.cz_trainer_step(null, &x, x.len, &y, y.len, null, 0, &loss));
    try testing.expectEqual(@as(u32, 0), api.cz_trainer_info(h, &info, info.len));
    try testing.expectEqual(@as(u64, 0), info[10]);
    try testing.expectEqual(@as(u32, 0), api.cz_trainer_step(h, &x, x.len, &y, y.len, null, 0, &loss));
    try testing.expect(loss > 0 and std.math.isFinite(loss));
    var metrics: [3]f32 = undefined;
    try testing.expectEqual(@as(u32, 0), api.cz_trainer_eval(h, &x, x.len, &y, y.len, null, 0, &metrics, 3));
    try testing.expectEqual(@as(f32, 6), metrics[2]);
    const g = try a.alloc(f32, params);
    defer a.free(g);
    try testing.expectEqual(@as(u32, 1), api.cz_trainer_grad(h, &x, x.len, &y, y.len, null, 0, &loss, g.ptr, params - 1));
    try testing.expectEqual(@as(u32, 0), api.cz_trainer_grad(h, &x, x.len, &y, y.len, null, 0, &loss, g.ptr, params));
    const state = try a.alloc(f32, 2 + 2 * params);
    defer a.free(state);
    try testing.expectEqual(@as(u32, 0), api.cz_trainer_get_state(h, state.ptr, state.len));
    try testing.expectEqual(@as(u32, 1), @as(u32, @bitCast(state[0])));
    try testing.expectEqual(@as(u32, 0), api.cz_trainer_set_state(h, state.ptr, state.len));
    g[3] = std.math.nan(f32);
    try testing.expectEqual(@as(u32, 1), api.cz_trainer_set_params(h, g.ptr, params));
    try testing.expectEqual(@as(u32, 0), api.cz_trainer_info(h, &info, info.len));
    try testing.expectEqual(@as(u64, 1), info[10]);
    try testing.expectEqual(info[8], 2); // the spec table and the arena; nothing since create
    var out: [2 * 3 * 4]f32 = undefined;
    try testing.expectEqual(@as(u32, 0), api.cz_trainer_forward(h, &x, x.len, &out, out.len));
    for (0..6) |r| {
        var s: f32 = 0;
        for (out[r * 4 ..][0..4]) |v| s += v;
        try testing.expectApproxEqAbs(@as(f32, 1), s, 1e-5);
    }
}

test "trainer ABI: single-word changes to a valid config are refused with a message or train without trapping" {
    const a = testing.allocator;
    const bytes = try lstmImage(a);
    defer a.free(bytes);
    const base = configWords(2, 3, 1, 0, 0);
    const specials = [_]u32{
        0,           1,           2,           3,           4,           7,           0xFFFF_FFFF, 0x8000_0000,
        0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 0x0000_0001, 0x3F80_0000, 0x4F80_0000, 0x0DA2_4260, 65537,
    };
    var x: [2 * 3 * 4]f32 = @splat(0.5);
    const y = [_]f32{ 0, 1, 2, 3, 0, 1 };
    var err: [256]u8 = undefined;
    for (0..trainer.config_words) |word| for (specials) |value| {
        var words = base;
        words[word] = value;
        var handle: u64 = 0;
        const status = api.cz_trainer_create(bytes.ptr, bytes.len, &words, words.len, &handle, &err, err.len);
        if (status != 0) {
            try testing.expect(status == 1 or status == 2 or status == 5);
            try testing.expect(err[0] != 0);
            try testing.expectEqual(@as(u64, 0), handle);
            continue;
        }
        const h: ?*anyopaque = @ptrFromInt(handle);
        defer api.cz_trainer_destroy(h);
        var info: [11]u64 = undefined;
        try testing.expectEqual(@as(u32, 0), api.cz_trainer_info(h, &info, info.len));
        const rows = info[5] * info[6];
        if (rows != 6) continue; // batch or seq_len changed: the data above no longer fits
        var loss: f32 = undefined;
        const s = api.cz_trainer_step(h, &x, x.len, &y, y.len, null, 0, &loss);
        try testing.expect(s == 0 or s == 1);
        var metrics: [3]f32 = undefined;
        const e = api.cz_trainer_eval(h, &x, x.len, &y, y.len, null, 0, &metrics, 3);
        try testing.expect(e == 0 or e == 1); // 1: a loss whose targets are not class ids
        if (s == 0) try testing.expectEqual(@as(u32, 0), e);
    };
}

const TrainerInputs = struct { bytes: []const u8, words: []const u32 };

fn createTrainerWith(in: TrainerInputs, a: std.mem.Allocator, diag: *image.Diag) anyerror!*Trainer {
    return Trainer.create(a, in.bytes, in.words, diag);
}

test "trainer: an allocation failure at every point of create is error.OutOfMemory, no leak" {
    const layers = [_]helpers.Spec{
        .{ .kind = .dense, .act = .tanh, .in = 3, .out = 8, .p = helpers.params(1, 0, 0) },
        .{ .kind = .lstm, .in = 8, .out = 6 },
        .{ .kind = .gru, .in = 6, .out = 4, .p = helpers.params(1, 0, 0) },
    };
    const bytes = try helpers.build(testing.allocator, 8, 1, &layers);
    defer testing.allocator.free(bytes);
    const words = configWords(4, 5, 0, 0, 0);
    const points = try helpers.failEveryAllocation(Trainer, TrainerInputs{ .bytes = bytes, .words = &words }, createTrainerWith);
    try testing.expect(points >= 2);
}

test "trainer ABI: destroyed, stale, double-freed and foreign handles are status 4, never a read" {
    const a = testing.allocator;
    const bytes = try lstmImage(a);
    defer a.free(bytes);
    var words = configWords(2, 3, 1, 0, 0);
    var err: [256]u8 = undefined;
    var handle: u64 = 0;
    try testing.expectEqual(@as(u32, 0), api.cz_trainer_create(bytes.ptr, bytes.len, &words, 32, &handle, &err, err.len));
    const live_before = api.liveTrainerCount();
    const h: ?*anyopaque = @ptrFromInt(handle);
    var info: [11]u64 = undefined;
    try testing.expectEqual(@as(u32, 0), api.cz_trainer_info(h, &info, info.len));
    api.cz_trainer_destroy(h);
    try testing.expectEqual(live_before - 1, api.liveTrainerCount());
    // Stale: every call on the destroyed handle is 4 and names why.
    var loss: f32 = 0;
    var params: [4]f32 = undefined;
    try testing.expectEqual(@as(u32, 4), api.cz_trainer_info(h, &info, info.len));
    try testing.expectEqual(@as(u32, 4), api.cz_trainer_step(h, &params, 4, &params, 4, null, 0, &loss));
    try testing.expectEqual(@as(u32, 4), api.cz_trainer_get_params(h, &params, 4));
    try testing.expectEqual(@as(u32, 4), api.cz_trainer_set_state(h, &params, 4));
    var msg: [256]u8 = undefined;
    const n = api.cz_trainer_last_error(h, &msg, msg.len);
    try testing.expectEqualStrings("invalid trainer: null, destroyed, or not from cz_trainer_create", msg[0..n]);
    // Double free: nothing happens (the leak-checking allocator would catch a second free).
    api.cz_trainer_destroy(h);
    try testing.expectEqual(live_before - 1, api.liveTrainerCount());
    // A new trainer in the same slot gets a new generation: the old handle stays stale.
    var again: u64 = 0;
    try testing.expectEqual(@as(u32, 0), api.cz_trainer_create(bytes.ptr, bytes.len, &words, 32, &again, &err, err.len));
    defer api.cz_trainer_destroy(@ptrFromInt(again));
    try testing.expect(again != handle);
    try testing.expectEqual(@as(u32, 4), api.cz_trainer_info(h, &info, info.len));
    try testing.expectEqual(@as(u32, 0), api.cz_trainer_info(@ptrFromInt(again), &info, info.len));
    // Foreign: a model handle, a handle with another table's tag, an address, forged bits.
    const model_api = @import("../api.zig");
    var model_handle: u64 = 0;
    try testing.expectEqual(@as(u32, 0), model_api.cz_model_create(bytes.ptr, bytes.len, &model_handle, &err, err.len));
    defer model_api.cz_model_destroy(@ptrFromInt(model_handle));
    var on_stack: [64]u8 align(64) = @splat(0);
    const forged = [_]u64{ model_handle, again ^ (@as(u64, 3) << 48), again + 1, again ^ (1 << 16), @intFromPtr(&on_stack), 1, ~@as(u64, 0) };
    for (forged) |f| {
        try testing.expectEqual(@as(u32, 4), api.cz_trainer_info(@ptrFromInt(f), &info, info.len));
        api.cz_trainer_destroy(@ptrFromInt(f));
    }
    // The model survived being passed as a trainer, and the trainer as a model.
    try testing.expectEqual(@as(u32, 0), model_api.cz_model_info(@ptrFromInt(model_handle), &info, info.len));
    try testing.expectEqual(@as(u32, 4), model_api.cz_model_info(@ptrFromInt(again), &info, info.len));
    try testing.expectEqual(@as(u32, 0), api.cz_trainer_info(@ptrFromInt(again), &info, info.len));
    try testing.expectEqual(@as(u32, 4), api.cz_trainer_info(null, &info, info.len));
}

test "trainer: a step that would make a parameter or the optimizer state non-finite is refused, nothing changed (fuzz finds)" {
    // fuzz/regressions/trainer/: weight_decay = f32 max made the parameters inf after one step
    // and the next QAT forward trapped quantising them; a gradient of 1e20 made AdamW's v inf
    // (a state that set_state then refused); a subnormal eps divided 0 by 0 in the flushed step.
    const a = testing.allocator;
    const bytes = try lstmImage(a);
    defer a.free(bytes);
    var err: [256]u8 = undefined;
    const Case = struct { word: usize, value: f32, optimizer: u32, flags: u32, target: f32 };
    const cases = [_]Case{
        .{ .word = 16, .value = std.math.floatMax(f32), .optimizer = 0, .flags = 1, .target = 0.5 }, // weight decay, QAT
        .{ .word = 16, .value = std.math.floatMax(f32), .optimizer = 1, .flags = 0, .target = 0.5 }, // the same, SGD
        .{ .word = 11, .value = 1e38, .optimizer = 1, .flags = 0, .target = 0.5 }, // learning rate, SGD
        .{ .word = 11, .value = 1e-2, .optimizer = 0, .flags = 0, .target = 1e25 }, // v = g^2 overflows
    };
    for (cases) |c| {
        var words = configWords(2, 3, 0, c.optimizer, c.flags); // mse
        words[c.word] = @bitCast(c.value);
        if (c.target > 1) words[18] = 0; // no clipping: the gradient itself reaches 1e25
        var handle: u64 = 0;
        try testing.expectEqual(@as(u32, 0), api.cz_trainer_create(bytes.ptr, bytes.len, &words, 32, &handle, &err, err.len));
        const h: ?*anyopaque = @ptrFromInt(handle);
        defer api.cz_trainer_destroy(h);
        var info: [11]u64 = undefined;
        _ = api.cz_trainer_info(h, &info, info.len);
        const params = try a.alloc(f32, @intCast(info[1]));
        defer a.free(params);
        const after = try a.alloc(f32, params.len);
        defer a.free(after);
        const state = try a.alloc(f32, @intCast(info[2]));
        defer a.free(state);
        const state_after = try a.alloc(f32, state.len);
        defer a.free(state_after);
        var x: [2 * 3 * 4]f32 = @splat(0.5);
        var y: [2 * 3 * 4]f32 = @splat(0);
        // Unequal targets: equal ones would cancel through the output softmax's Jacobian.
        for (&y, 0..) |*v, i| v.* = if (i % 2 == 0) c.target else 0;
        var loss: f32 = 0;
        // The first steps may still be finite (parameters of 1e36); one within four is not.
        var refused = false;
        for (0..4) |_| {
            try testing.expectEqual(@as(u32, 0), api.cz_trainer_get_params(h, params.ptr, params.len));
            try testing.expectEqual(@as(u32, 0), api.cz_trainer_get_state(h, state.ptr, state.len));
            const status = api.cz_trainer_step(h, &x, x.len, &y, y.len, null, 0, &loss);
            if (status == 0) continue;
            try testing.expectEqual(@as(u32, 1), status);
            refused = true;
            break;
        }
        var msg: [256]u8 = undefined;
        const n = api.cz_trainer_last_error(h, &msg, msg.len);
        try testing.expect(refused);
        try testing.expect(std.mem.indexOf(u8, msg[0..n], "not finite") != null or
            std.mem.indexOf(u8, msg[0..n], "non-finite") != null);
        try testing.expectEqual(@as(u32, 0), api.cz_trainer_get_params(h, after.ptr, after.len));
        try testing.expectEqual(@as(u32, 0), api.cz_trainer_get_state(h, state_after.ptr, state_after.len));
        try testing.expectEqualSlices(u32, std.mem.bytesAsSlice(u32, std.mem.sliceAsBytes(params)), std.mem.bytesAsSlice(u32, std.mem.sliceAsBytes(after)));
        try testing.expectEqualSlices(u32, std.mem.bytesAsSlice(u32, std.mem.sliceAsBytes(state)), std.mem.bytesAsSlice(u32, std.mem.sliceAsBytes(state_after)));
        for (after) |v| try testing.expect(std.math.isFinite(v));
        for (state_after[2..]) |v| try testing.expect(std.math.isFinite(v));
        // The trainer still runs (the QAT forward quantises finite weights) and its own state
        // and parameters go back in.
        var metrics: [3]f32 = undefined;
        try testing.expectEqual(@as(u32, 0), api.cz_trainer_eval(h, &x, x.len, &y, y.len, null, 0, &metrics, 3));
        try testing.expectEqual(@as(u32, 0), api.cz_trainer_set_state(h, state_after.ptr, state_after.len));
        try testing.expectEqual(@as(u32, 0), api.cz_trainer_set_params(h, after.ptr, after.len));
    }
    // A subnormal eps is refused at create.
    var words = configWords(2, 3, 0, 0, 0);
    words[15] = 6;
    var handle: u64 = 0;
    try testing.expectEqual(@as(u32, 2), api.cz_trainer_create(bytes.ptr, bytes.len, &words, 32, &handle, &err, err.len));
    try testing.expect(std.mem.indexOf(u8, &err, "(eps)") != null);
}
