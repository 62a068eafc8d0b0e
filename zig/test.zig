//! Test root and shared test helpers: an image builder, random data, naive references, and
//! the tests of the whole model and of the C ABI.
const std = @import("std");
const desc = @import("layers/desc.zig");
const image = @import("image.zig");
const model = @import("model.zig");
const api = @import("api.zig");
const mv = @import("layers/matvec.zig");

const testing = std.testing;
const Model = model.Model;

test {
    _ = @import("image.zig");
    _ = @import("layers/dense.zig");
    _ = @import("layers/conv1d.zig");
    _ = @import("layers/norm.zig");
    _ = @import("layers/act.zig");
    _ = @import("layers/matvec.zig");
    _ = @import("layers/lstm.zig");
    _ = @import("layers/gru.zig");
    _ = @import("layers/attention.zig");
    _ = @import("layers/skip.zig");
    _ = @import("layers/sparse.zig");
}

/// One layer for `build`: tensors are filled with random values unless given.
pub const Spec = struct {
    kind: desc.Kind,
    act: desc.Act = .linear,
    in: u32,
    out: u32,
    p: [8]u32 = @splat(0),
    f: [2]f32 = .{ 0, 0 },
    weight_type: desc.WeightType = .f32,
    tensors: ?[]const []const f32 = null,
};

pub fn descOf(s: Spec) desc.LayerDesc {
    return .{
        .kind = s.kind,
        .act = s.act,
        .in = s.in,
        .out = s.out,
        .p = s.p,
        .f = s.f,
        .weight_type = s.weight_type,
    };
}

/// The p words of a layer record from its first three.
pub fn params(p0: u32, p1: u32, p2: u32) [8]u32 {
    return .{ p0, p1, p2, 0, 0, 0, 0, 0 };
}

/// Random floats in [-scale, scale).
pub fn randomFloats(rng: std.Random, dst: []f32, scale: f32) void {
    for (dst) |*v| v.* = (rng.float(f32) * 2 - 1) * scale;
}

/// Builds a v1 image; the caller frees it. Random tensors use `seed`; batchnorm variances
/// are made positive.
pub fn build(a: std.mem.Allocator, seed: u64, max_batch: u32, layers: []const Spec) ![]u8 {
    var prng = std.Random.DefaultPrng.init(seed);
    var out: std.ArrayList(u8) = .empty;
    errdefer out.deinit(a);
    const last = layers[layers.len - 1];
    const n: u32 = @intCast(layers.len);
    const header = [8]u32{ image.magic, 1, 8, n, layers[0].in, last.out, max_batch, 0 };
    for (header) |w| try putWord(a, &out, w);
    for (layers) |s| {
        const d = descOf(s);
        var lens: [desc.tensors_max]u32 = undefined;
        const count = switch (s.kind) {
            inline else => |k| image.Impl(k).tensorLens(&d, &lens),
        };
        const rec = [4]u32{ @intFromEnum(s.kind), @intFromEnum(s.act), s.in, s.out } ++ s.p ++
            [4]u32{ @bitCast(s.f[0]), @bitCast(s.f[1]), count, @intFromEnum(s.weight_type) };
        for (rec) |w| try putWord(a, &out, w);
        for (0..count) |t| {
            if (s.tensors) |given| {
                try putTensor(a, &out, given[t]);
                continue;
            }
            const data = try a.alloc(f32, lens[t]);
            defer a.free(data);
            randomFloats(prng.random(), data, 0.5);
            if (s.kind == .batchnorm and t + 1 == count) {
                for (data) |*v| v.* = @abs(v.*) + 0.1;
            }
            try putTensor(a, &out, data);
        }
    }
    std.mem.writeInt(u32, out.items[28..32], @intCast(out.items.len), .little);
    return out.toOwnedSlice(a);
}

fn putWord(a: std.mem.Allocator, out: *std.ArrayList(u8), w: u32) !void {
    var b: [4]u8 = undefined;
    std.mem.writeInt(u32, &b, w, .little);
    try out.appendSlice(a, &b);
}

fn putTensor(a: std.mem.Allocator, out: *std.ArrayList(u8), data: []const f32) !void {
    try putWord(a, out, @intCast(data.len));
    for (data) |v| try putWord(a, out, @bitCast(v));
}

/// An allocator that writes `value` into `target` at byte `at` whenever something is
/// allocated: another thread changing a shared buffer while the library reads it, made
/// deterministic (create allocates between its passes over the caller's bytes).
pub const RacingAllocator = struct {
    backing: std.mem.Allocator,
    target: []u8,
    at: usize,
    value: u32,

    pub fn allocator(self: *RacingAllocator) std.mem.Allocator {
        return .{ .ptr = self, .vtable = &.{
            .alloc = alloc,
            .resize = std.mem.Allocator.noResize,
            .remap = std.mem.Allocator.noRemap,
            .free = free,
        } };
    }

    fn alloc(ctx: *anyopaque, len: usize, alignment: std.mem.Alignment, ret: usize) ?[*]u8 {
        const self: *RacingAllocator = @ptrCast(@alignCast(ctx));
        std.mem.writeInt(u32, self.target[self.at..][0..4], self.value, .little);
        return self.backing.rawAlloc(len, alignment, ret);
    }

    fn free(ctx: *anyopaque, memory: []u8, alignment: std.mem.Alignment, ret: usize) void {
        const self: *RacingAllocator = @ptrCast(@alignCast(ctx));
        self.backing.rawFree(memory, alignment, ret);
    }
};

/// Copies of `tensors` as a layer of weight type `t` computes with them: the matrix tensors
/// (bit i of `matrices` for tensor i) rounded to bf16 when t is bf16.
pub fn asStored(
    a: std.mem.Allocator,
    tensors: []const []const f32,
    matrices: u16,
    t: desc.WeightType,
) ![]const []const f32 {
    const out = try a.alloc([]const f32, tensors.len);
    for (out, tensors, 0..) |*o, src, i| {
        const copy = try a.dupe(f32, src);
        if (t == .bf16 and (matrices >> @intCast(i)) & 1 == 1) {
            for (copy) |*v| v.* = mv.roundBf16(v.*);
        }
        o.* = copy;
    }
    return out;
}

/// Tensors of the lengths `kernel.tensorLens` gives for `d`, uniform in [-scale/2, scale/2).
pub fn randomTensors(
    a: std.mem.Allocator,
    rng: std.Random,
    comptime kernel: type,
    d: *const desc.LayerDesc,
    scale: f32,
) ![][]f32 {
    var lens: [desc.tensors_max]u32 = undefined;
    const count = kernel.tensorLens(d, &lens);
    const tensors = try a.alloc([]f32, count);
    for (tensors, lens[0..count]) |*t, len| {
        t.* = try a.alloc(f32, len);
        for (t.*) |*v| v.* = (rng.float(f32) - 0.5) * scale;
    }
    return tensors;
}

/// One layer's parts of a model's arena, for a kernel test that runs one row at a time.
pub const LayerParts = struct { weights: []f32, state: []f32, scratch: []f32 };

/// `tensors` packed by `kernel` into new weights, with a zeroed state and a scratch for one row.
pub fn packLayer(
    a: std.mem.Allocator,
    comptime kernel: type,
    d: *const desc.LayerDesc,
    tensors: []const []f32,
) !LayerParts {
    const s = kernel.sizes(d, 1);
    const parts = LayerParts{
        .weights = try a.alloc(f32, s.weights),
        .state = try a.alloc(f32, s.state),
        .scratch = try a.alloc(f32, s.scratch),
    };
    kernel.pack(d, @ptrCast(tensors), parts.weights);
    @memset(parts.state, 0);
    return parts;
}

/// The logistic function in f64, for the recurrent kinds' naive references.
pub fn sigmoid64(v: f64) f64 {
    return 1 / (1 + @exp(-v));
}

/// Fills x with inputs uniform in [-2, 2) and x64 with the same values as f64.
pub fn randomInput(rng: std.Random, x: []f32, x64: []f64) void {
    for (x, x64) |*v, *w| {
        v.* = (rng.float(f32) - 0.5) * 4;
        w.* = v.*;
    }
}

/// The check of a gated recurrent kernel refuses in = out = 65536 with `msg`, and refuses a
/// fused activation.
pub fn expectGatedCheck(comptime kernel: type, kind: desc.Kind, msg: []const u8) !void {
    const d = descOf(.{ .kind = kind, .in = 65536, .out = 65536 });
    try testing.expectEqualStrings(msg, kernel.check(&d).?);
    const tanh_act = descOf(.{ .kind = kind, .act = .tanh, .in = 3, .out = 3 });
    try testing.expect(kernel.check(&tanh_act) != null);
}

/// |got - want| <= tol * (1 + |want|) for every element.
pub fn expectClose(want: []const f64, got: []const f32, tol: f64) !void {
    try testing.expectEqual(want.len, got.len);
    for (want, got, 0..) |w, g, i| {
        if (!(@abs(w - g) <= tol * (1 + @abs(w)))) {
            std.debug.print("element {d}: want {d}, got {d}\n", .{ i, w, g });
            return error.TestExpectedClose;
        }
    }
}

/// Every kind in one chain, widths odd where the kind allows.
const every_kind = [_]Spec{
    .{ .kind = .dense, .act = .tanh, .in = 3, .out = 17, .p = params(1, 0, 0) },
    .{ .kind = .lstm, .in = 17, .out = 9 },
    .{ .kind = .gru, .in = 9, .out = 8, .p = params(1, 0, 0) },
    .{ .kind = .conv1d, .act = .relu, .in = 8, .out = 6, .p = params(3, 2, 2) },
    .{
        .kind = .batchnorm,
        .act = .sigmoid,
        .in = 6,
        .out = 6,
        .p = params(1, 0, 0),
        .f = .{ 1e-3, 0 },
    },
    .{ .kind = .layernorm, .in = 6, .out = 6, .f = .{ 1e-5, 0 } },
    .{ .kind = .prelu, .in = 6, .out = 6 },
    .{ .kind = .dense, .in = 6, .out = 8, .p = params(0, 0, 0) },
    .{ .kind = .attention, .in = 8, .out = 8, .p = params(2, 4, 0) },
    .{
        .kind = .transformer,
        .act = .gelu,
        .in = 8,
        .out = 8,
        .p = params(2, 5, 12),
        .f = .{ 1e-5, 0 },
    },
    .{ .kind = .activation, .act = .softmax, .in = 8, .out = 8 },
};

fn createModel(bytes: []const u8) !*Model {
    var diag: image.Diag = .{};
    return Model.create(testing.allocator, bytes, &diag) catch |err| {
        std.debug.print("create failed: {s}\n", .{diag.message()});
        return err;
    };
}

test "model: every kind runs, 1000 forwards and batches allocate nothing" {
    const bytes = try build(testing.allocator, 7, 5, &every_kind);
    defer testing.allocator.free(bytes);
    const m = try createModel(bytes);
    defer m.destroy();
    const before = m.info();
    var prng = std.Random.DefaultPrng.init(3);
    var x: [3 * 5]f32 = undefined;
    var y: [8 * 5]f32 = undefined;
    for (0..1000) |_| {
        randomFloats(prng.random(), x[0..3], 1);
        m.forward(x[0..3], y[0..8]);
        for (y[0..8]) |v| try testing.expect(std.math.isFinite(v));
    }
    for (0..50) |_| {
        randomFloats(prng.random(), &x, 1);
        m.forwardBatch(&x, &y, 5);
        m.reset();
    }
    const after = m.info();
    try testing.expectEqual(before[9], after[9]);
    try testing.expectEqual(before[10], after[10]);
    try testing.expectEqual(@as(u64, 2), after[9]);
    try testing.expectEqual(@as(u64, 1), after[10]);
}

/// every_kind with the matrices held as `t` where the kind has them.
fn everyKindAs(t: desc.WeightType) [every_kind.len]Spec {
    var specs = every_kind;
    for (&specs) |*spec| {
        spec.weight_type = switch (spec.kind) {
            .dense, .lstm, .gru, .conv1d, .attention, .transformer => t,
            else => .f32,
        };
    }
    return specs;
}

fn everyKindBf16() [every_kind.len]Spec {
    return everyKindAs(.bf16);
}

test "model: int8 weights run every kind near f32, allocating nothing, in fewer bytes" {
    const int8_specs = everyKindAs(.int8);
    const bytes8 = try build(testing.allocator, 7, 5, &int8_specs);
    defer testing.allocator.free(bytes8);
    const bytes32 = try build(testing.allocator, 7, 5, &every_kind);
    defer testing.allocator.free(bytes32);
    const m8 = try createModel(bytes8);
    defer m8.destroy();
    const m32 = try createModel(bytes32);
    defer m32.destroy();
    const info8 = m8.info();
    const info32 = m32.info();
    try testing.expectEqual(info32[3], info8[3]);
    // Matrix elements at 1 byte plus a 4-byte scale per held row; the rest at 4 bytes.
    var want: u64 = 0;
    for (int8_specs) |spec| {
        const d = descOf(spec);
        var lens: [desc.tensors_max]u32 = undefined;
        switch (spec.kind) {
            inline else => |k| {
                const K = image.Impl(k);
                const n = K.tensorLens(&d, &lens);
                const mask: u16 = if (@hasDecl(K, "matrixTensors")) K.matrixTensors(&d) else 0;
                for (lens[0..n], 0..) |len, t| {
                    want += if ((mask >> @intCast(t)) & 1 == 1) len else 4 * @as(u64, len);
                }
                if (@hasDecl(K, "matrixGeometry")) want += 4 * K.matrixGeometry(&d).rows;
            },
        }
    }
    try testing.expectEqual(want, info8[4]);
    try testing.expect(info8[4] < info32[4] and info8[5] < info32[5]);
    var prng = std.Random.DefaultPrng.init(3);
    var x: [3 * 5]f32 = undefined;
    var y8: [8 * 5]f32 = undefined;
    var y32: [8 * 5]f32 = undefined;
    for (0..200) |_| {
        randomFloats(prng.random(), x[0..3], 1);
        m8.forward(x[0..3], y8[0..8]);
        m32.forward(x[0..3], y32[0..8]);
        // Weights and inputs move by up to half a step of 1/127 of their row's or vector's
        // largest magnitude; the chain ends in a softmax.
        for (y32[0..8], y8[0..8]) |w, got| try testing.expectApproxEqAbs(w, got, 5e-2);
    }
    randomFloats(prng.random(), &x, 1);
    m8.forwardBatch(&x, &y8, 5);
    m8.reset();
    const after = m8.info();
    try testing.expectEqual(info8[9], after[9]);
    try testing.expectEqual(info8[10], after[10]);
}

test "model: int8 refuses a matrix wider than its 32-bit sums allow" {
    // conv1d 65536 -> 1 with 3 taps: 196608 columns. The parser refuses the record before it
    // reads a tensor, so the image needs no tensor data.
    const wide: u32 = 65536;
    var rec: [8 + 16]u32 = @splat(0);
    rec[0..8].* = .{ image.magic, 1, 8, 1, wide, 1, 1, rec.len * 4 };
    rec[8..12].* = .{ @intFromEnum(desc.Kind.conv1d), 0, wide, 1 };
    rec[12..15].* = .{ 3, 1, 1 };
    rec[22] = 2;
    rec[23] = 2;
    var diag: image.Diag = .{};
    const bytes: []const u8 = std.mem.sliceAsBytes(&rec);
    try testing.expectError(error.Limit, image.parse(bytes, &diag));
    try testing.expectEqualStrings("layer 0 (conv1d): a weight matrix has 196608 columns, " ++
        "expected at most 133144 at int8 (word 15, weight_type, is 2): the integer sums " ++
        "must fit 32 bits", diag.message());
    rec[23] = 1;
    try testing.expectError(error.BadImage, image.parse(bytes, &diag));
}

test "model: bf16 weights run every kind near f32, allocating nothing, in fewer bytes" {
    const bf16_specs = everyKindBf16();
    const bytes16 = try build(testing.allocator, 7, 5, &bf16_specs);
    defer testing.allocator.free(bytes16);
    const bytes32 = try build(testing.allocator, 7, 5, &every_kind);
    defer testing.allocator.free(bytes32);
    const m16 = try createModel(bytes16);
    defer m16.destroy();
    const m32 = try createModel(bytes32);
    defer m32.destroy();
    const info16 = m16.info();
    const info32 = m32.info();
    try testing.expectEqual(info32[3], info16[3]);
    try testing.expectEqual(info32[3] * 4, info32[4]);
    try testing.expect(info16[4] < info32[4] and info16[5] < info32[5]);
    var prng = std.Random.DefaultPrng.init(3);
    var x: [3 * 5]f32 = undefined;
    var y16: [8 * 5]f32 = undefined;
    var y32: [8 * 5]f32 = undefined;
    for (0..200) |_| {
        randomFloats(prng.random(), x[0..3], 1);
        m16.forward(x[0..3], y16[0..8]);
        m32.forward(x[0..3], y32[0..8]);
        // Weights move by up to 2^-8 of themselves; the chain ends in a softmax.
        for (y32[0..8], y16[0..8]) |want, got| try testing.expectApproxEqAbs(want, got, 2e-2);
    }
    randomFloats(prng.random(), &x, 1);
    m16.forwardBatch(&x, &y16, 5);
    m16.reset();
    const after = m16.info();
    try testing.expectEqual(info16[9], after[9]);
    try testing.expectEqual(info16[10], after[10]);
}

test "model: forwardBatch rows start from the current state and do not advance it" {
    const bytes = try build(testing.allocator, 11, 4, &every_kind);
    defer testing.allocator.free(bytes);
    const a = try createModel(bytes);
    defer a.destroy();
    const b = try createModel(bytes);
    defer b.destroy();
    var prng = std.Random.DefaultPrng.init(5);
    var history: [6][3]f32 = undefined;
    var y: [8 * 4]f32 = undefined;
    for (&history) |*h| {
        randomFloats(prng.random(), h, 1);
        a.forward(h, y[0..8]);
    }
    var rows: [3 * 4]f32 = undefined;
    randomFloats(prng.random(), &rows, 1);
    var batch_out: [8 * 4]f32 = undefined;
    a.forwardBatch(&rows, &batch_out, 4);
    for (0..4) |r| {
        b.reset();
        for (&history) |*h| b.forward(h, y[0..8]);
        b.forward(rows[r * 3 ..][0..3], y[0..8]);
        // The batch kernels sum in another order than the one-row kernels.
        for (y[0..8], batch_out[r * 8 ..][0..8]) |want, got| {
            try testing.expectApproxEqAbs(want, got, 1e-5);
        }
    }
    // The batch left a's state where the history put it.
    b.reset();
    for (&history) |*h| b.forward(h, y[0..8]);
    var ya: [8]f32 = undefined;
    a.forward(rows[0..3], &ya);
    b.forward(rows[0..3], y[0..8]);
    try testing.expectEqualSlices(f32, y[0..8], &ya);
}

test "model: stateless batch equals rows one at a time; in and out may overlap" {
    const layers = [_]Spec{
        .{ .kind = .dense, .act = .relu, .in = 33, .out = 17, .p = params(1, 0, 0) },
        .{ .kind = .layernorm, .in = 17, .out = 17, .f = .{ 1e-5, 0 } },
        .{ .kind = .dense, .act = .softmax, .in = 17, .out = 40, .p = params(1, 0, 0) },
    };
    const bytes = try build(testing.allocator, 2, 13, &layers);
    defer testing.allocator.free(bytes);
    const m = try createModel(bytes);
    defer m.destroy();
    var prng = std.Random.DefaultPrng.init(9);
    var x: [33 * 13]f32 = undefined;
    randomFloats(prng.random(), &x, 2);
    var y: [40 * 13]f32 = undefined;
    m.forwardBatch(&x, &y, 13);
    var row: [40]f32 = undefined;
    for (0..13) |r| {
        m.forward(x[r * 33 ..][0..33], &row);
        for (row, y[r * 40 ..][0..40]) |want, got| try testing.expectApproxEqAbs(want, got, 1e-6);
    }
    var shared: [40]f32 = undefined;
    @memcpy(shared[0..33], x[0..33]);
    m.forward(shared[0..33], &shared);
    for (shared, y[0..40]) |want, got| try testing.expectApproxEqAbs(want, got, 1e-6);
}

test "model: batchnorm variance must give a positive denominator" {
    const n = 3;
    const gamma = [n]f32{ 1, 1, 1 };
    const zeros = [n]f32{ 0, 0, 0 };
    const variance = [n]f32{ 1, -0.5, 1 };
    const layers = [_]Spec{.{
        .kind = .batchnorm,
        .in = n,
        .out = n,
        .p = params(1, 0, 0),
        .f = .{ 1e-5, 0 },
        .tensors = &.{ &gamma, &zeros, &zeros, &variance },
    }};
    const bytes = try build(testing.allocator, 1, 1, &layers);
    defer testing.allocator.free(bytes);
    var diag: image.Diag = .{};
    try testing.expectError(error.BadImage, Model.create(testing.allocator, bytes, &diag));
    try testing.expectEqualStrings(
        "layer 0 (batchnorm): var + epsilon must be > 0",
        diag.message(),
    );
}

test "model: arena beyond 1 GiB is a limit error" {
    // A conv1d ring of (4096 - 1) * 4096 frames of 64 channels needs about 4 GiB.
    const layers = [_]Spec{.{
        .kind = .conv1d,
        .in = 64,
        .out = 64,
        .p = params(4096, 4096, 64),
    }};
    const bytes = try build(testing.allocator, 1, 1, &layers);
    defer testing.allocator.free(bytes);
    var diag: image.Diag = .{};
    try testing.expectError(error.Limit, Model.create(testing.allocator, bytes, &diag));
    try testing.expect(std.mem.indexOf(u8, diag.message(), "limit of 1073741824 bytes") != null);
}

test "api: statuses and messages for bad calls" {
    const layers = [_]Spec{.{ .kind = .dense, .in = 5, .out = 3, .p = params(1, 0, 0) }};
    const bytes = try build(testing.allocator, 4, 2, &layers);
    defer testing.allocator.free(bytes);
    var handle: u64 = 99;
    var err: [128]u8 = undefined;
    try testing.expectEqual(@as(u32, 1), api.cz_model_create(null, 0, &handle, &err, err.len));
    try testing.expectEqual(@as(u64, 0), handle);
    try testing.expectEqualStrings("cz_model_create: image is null", std.mem.sliceTo(&err, 0));
    const len = bytes.len;
    try testing.expectEqual(@as(u32, 1), api.cz_model_create(bytes.ptr, len, null, &err, err.len));
    try testing.expectEqual(@as(u32, 2), api.cz_model_create(bytes.ptr, len - 1, &handle, &err, 4));
    try testing.expectEqualStrings("hea", std.mem.sliceTo(&err, 0));
    try testing.expectEqual(@as(u32, 0), api.cz_model_create(bytes.ptr, len, &handle, null, 0));
    const h: ?*anyopaque = @ptrFromInt(handle);
    defer api.cz_model_destroy(h);

    var x = [_]f32{ 1, 2, 3, 4, 5, 6 };
    var y: [6]f32 = undefined;
    try testing.expectEqual(@as(u32, 0), api.cz_forward(h, &x, 5, &y, 3));
    try testing.expectEqual(@as(u32, 1), api.cz_forward(h, &x, 4, &y, 3));
    var msg: [128]u8 = undefined;
    const n = api.cz_last_error(h, &msg, msg.len);
    const want = "cz_forward: in_len is 4, expected 5 (input_size 5 x batch 1)";
    try testing.expectEqualStrings(want, msg[0..n]);
    try testing.expectEqual(@as(u32, 1), api.cz_forward(h, &x, 5, &y, 2));
    try testing.expectEqual(@as(u32, 1), api.cz_forward(h, null, 5, &y, 3));
    const odd: *const anyopaque = @ptrFromInt(@intFromPtr(&x) + 1);
    try testing.expectEqual(@as(u32, 1), api.cz_forward(h, odd, 5, &y, 3));
    try testing.expectEqual(@as(u32, 1), api.cz_forward_batch(h, &x, 15, 3, &y, 9));
    try testing.expectEqual(@as(u32, 1), api.cz_forward_batch(h, &x, 0, 0, &y, 0));
    var xb: [10]f32 = undefined;
    @memcpy(xb[0..5], x[0..5]);
    @memcpy(xb[5..10], x[0..5]);
    try testing.expectEqual(@as(u32, 0), api.cz_forward_batch(h, &xb, 10, 2, &y, 6));
    try testing.expectEqualSlices(f32, y[0..3], y[3..6]);
    try testing.expectEqual(@as(u32, 0), api.cz_reset(h));

    var info: [13]u64 = @splat(7);
    try testing.expectEqual(@as(u32, 1), api.cz_model_info(h, &info, 0));
    try testing.expectEqual(@as(u32, 0), api.cz_model_info(h, &info, 2));
    try testing.expectEqualSlices(u64, &.{ 1, 5, 7 }, info[0..3]);
    try testing.expectEqual(@as(u32, 0), api.cz_model_info(h, &info, info.len));
    try testing.expectEqualSlices(u64, &.{ 1, 5, 3, 18, 72 }, info[0..5]);
    try testing.expectEqual(@as(u64, 7), info[11]);

    var fake: [8]u64 = @splat(0);
    try testing.expectEqual(@as(u32, 4), api.cz_reset(&fake));
    try testing.expectEqual(@as(u32, 4), api.cz_forward(null, &x, 5, &y, 3));
    const m = api.cz_last_error(null, &msg, msg.len);
    try testing.expect(std.mem.startsWith(u8, msg[0..m], "invalid handle"));
    try testing.expectEqual(@as(usize, 0), api.cz_last_error(h, &msg, 0));
    api.cz_model_destroy(null);
    api.cz_model_destroy(&fake);
}

test "api: a destroyed handle is status 4 on every call, never a read of freed memory" {
    const layers = [_]Spec{.{ .kind = .lstm, .in = 5, .out = 3 }};
    const bytes = try build(testing.allocator, 6, 2, &layers);
    defer testing.allocator.free(bytes);
    var handle: u64 = 0;
    try testing.expectEqual(@as(u32, 0), api.cz_model_create(bytes.ptr, bytes.len, &handle, null, 0));
    const h: ?*anyopaque = @ptrFromInt(handle);
    const live_before = api.liveModelCount();
    var x: [10]f32 = @splat(0.25);
    var y: [6]f32 = undefined;
    try testing.expectEqual(@as(u32, 0), api.cz_forward(h, &x, 5, &y, 3));
    api.cz_model_destroy(h);
    try testing.expectEqual(live_before - 1, api.liveModelCount());
    // Every entry point, twice (the first failure must not change what the second sees).
    var info: [11]u64 = undefined;
    var msg: [128]u8 = undefined;
    for (0..2) |_| {
        try testing.expectEqual(@as(u32, 4), api.cz_model_info(h, &info, info.len));
        try testing.expectEqual(@as(u32, 4), api.cz_forward(h, &x, 5, &y, 3));
        try testing.expectEqual(@as(u32, 4), api.cz_forward_batch(h, &x, 10, 2, &y, 6));
        try testing.expectEqual(@as(u32, 4), api.cz_reset(h));
        const n = api.cz_last_error(h, &msg, msg.len);
        try testing.expect(std.mem.startsWith(u8, msg[0..n], "invalid handle: null, destroyed"));
        api.cz_model_destroy(h);
    }
    // A new model gets a new handle, and the old one stays stale beside it.
    var again: u64 = 0;
    try testing.expectEqual(@as(u32, 0), api.cz_model_create(bytes.ptr, bytes.len, &again, null, 0));
    defer api.cz_model_destroy(@ptrFromInt(again));
    try testing.expect(again != handle);
    try testing.expectEqual(@as(u32, 4), api.cz_forward(h, &x, 5, &y, 3));
    try testing.expectEqual(@as(u32, 0), api.cz_forward(@ptrFromInt(again), &x, 5, &y, 3));
    // The model's address is not its handle, nor is any neighbour of the handle.
    const m = api.live(@ptrFromInt(again)).?;
    try testing.expectEqual(@as(u32, 4), api.cz_reset(m));
    for ([_]u64{ again + 1, again - 1, again ^ (1 << 16), again ^ (1 << 47), again ^ (3 << 48) }) |forged| {
        try testing.expectEqual(@as(u32, 4), api.cz_model_info(@ptrFromInt(forged), &info, 1));
    }
}

test "api: create refuses with status 5 when every handle slot is live" {
    const layers = [_]Spec{.{ .kind = .dense, .in = 1, .out = 1, .p = params(1, 0, 0) }};
    const bytes = try build(testing.allocator, 7, 1, &layers);
    defer testing.allocator.free(bytes);
    const held = try testing.allocator.alloc(u64, api.models_max);
    defer testing.allocator.free(held);
    var n: usize = 0;
    defer for (held[0..n]) |h| api.cz_model_destroy(@ptrFromInt(h));
    var err: [160]u8 = undefined;
    while (n < held.len) {
        const status = api.cz_model_create(bytes.ptr, bytes.len, &held[n], &err, err.len);
        if (status == 5) break;
        try testing.expectEqual(@as(u32, 0), status);
        n += 1;
    }
    try testing.expectEqual(@as(u32, api.models_max), api.liveModelCount());
    var refused: u64 = 9;
    try testing.expectEqual(@as(u32, 5), api.cz_model_create(bytes.ptr, bytes.len, &refused, &err, err.len));
    try testing.expectEqual(@as(u64, 0), refused);
    try testing.expect(std.mem.indexOf(u8, &err, "16384 models are live") != null);
    // One destroyed frees one slot.
    n -= 1;
    api.cz_model_destroy(@ptrFromInt(held[n]));
    try testing.expectEqual(@as(u32, 0), api.cz_model_create(bytes.ptr, bytes.len, &held[n], null, 0));
    n += 1;
}

test "model: non-finite and huge inputs pass through every kind without a trap" {
    const bytes = try build(testing.allocator, 13, 2, &every_kind);
    defer testing.allocator.free(bytes);
    const m = try createModel(bytes);
    defer m.destroy();
    var acts: [@typeInfo(desc.Act).@"enum".fields.len]Spec = undefined;
    for (&acts, 0..) |*s, i| {
        s.* = .{ .kind = .dense, .act = @enumFromInt(i), .in = 3, .out = 3, .p = params(1, 0, 0) };
    }
    const act_bytes = try build(testing.allocator, 13, 2, &acts);
    defer testing.allocator.free(act_bytes);
    const chain = try createModel(act_bytes);
    defer chain.destroy();
    const inf = std.math.inf(f32);
    const values = [_]f32{ std.math.nan(f32), inf, -inf, 1e30, -1e30, 0, 3e38 };
    var y: [16]f32 = undefined;
    for (values) |v| {
        const x = [6]f32{ v, v, v, v, -v, 1 };
        m.forward(x[0..3], y[0..8]);
        m.forwardBatch(&x, &y, 2);
        m.reset();
        chain.forward(x[0..3], y[0..3]);
        chain.forwardBatch(&x, y[0..6], 2);
    }
}

test "model: every weight type takes non-finite, huge, tiny and subnormal inputs without a trap" {
    const inf = std.math.inf(f32);
    const values = [_]f32{ std.math.nan(f32), inf, -inf, 3e38, -1e30, 1e-37, -2e-38, 1e-45, 0 };
    for ([_]desc.WeightType{ .f32, .bf16, .int8 }) |t| {
        const specs = everyKindAs(t);
        const bytes = try build(testing.allocator, 19, 2, &specs);
        defer testing.allocator.free(bytes);
        const m = try createModel(bytes);
        defer m.destroy();
        var y: [16]f32 = undefined;
        for (values) |v| {
            const x = [6]f32{ v, -v, v, v, 0, 1 };
            for (0..3) |_| m.forward(x[0..3], y[0..8]);
            m.forwardBatch(&x, &y, 2);
            m.reset();
            // Finite inputs keep every output finite; after a reset a NaN or infinity is gone.
            m.forward(&.{ 0.5, -0.25, 1 }, y[0..8]);
            for (y[0..8]) |out| try testing.expect(std.math.isFinite(out));
        }
    }
}

test "model: an int8 input below 2^-121 counts as zeros, not as +-127 steps" {
    const w = [_]f32{ 1, -1, 0.5, 0.25, 2, 1, -1, 0.5 };
    const layers = [_]Spec{.{
        .kind = .dense,
        .in = 4,
        .out = 2,
        .weight_type = .int8,
        .tensors = &.{&w},
    }};
    const bytes = try build(testing.allocator, 1, 1, &layers);
    defer testing.allocator.free(bytes);
    const m = try createModel(bytes);
    defer m.destroy();
    var y: [2]f32 = undefined;
    m.forward(&.{ 1e-37, 0, 0, 0 }, &y);
    try testing.expectEqualSlices(f32, &.{ 0, 0 }, &y);
}

test "model: batchnorm refuses weights whose folded scale or shift is not finite" {
    const n = 2;
    const zeros = [n]f32{ 0, 0 };
    const ones = [n]f32{ 1, 1 };
    // gamma / sqrt(var + eps) = 1e30 / 1e-10 overflows f32: every output would be NaN.
    const big_gamma = [n]f32{ 1, 1e30 };
    const small_var = [n]f32{ 1, 1e-20 };
    // beta - mean * scale = 0 - 3e38 * 100 overflows too.
    const big_mean = [n]f32{ 3e38, 0 };
    const var_scale_100 = [n]f32{ 1e-4, 1 };
    const cases = [_][]const []const f32{
        &.{ &big_gamma, &zeros, &zeros, &small_var },
        &.{ &ones, &zeros, &big_mean, &var_scale_100 },
    };
    for (cases) |tensors| {
        const layers = [_]Spec{.{
            .kind = .batchnorm,
            .in = n,
            .out = n,
            .p = params(1, 0, 0),
            .tensors = tensors,
        }};
        const bytes = try build(testing.allocator, 1, 1, &layers);
        defer testing.allocator.free(bytes);
        var diag: image.Diag = .{};
        try testing.expectError(error.BadImage, Model.create(testing.allocator, bytes, &diag));
        const want = "layer 0 (batchnorm): gamma / sqrt(var + epsilon) and beta - mean * that " ++
            "must be finite (they are folded into one scale and shift)";
        try testing.expectEqualStrings(want, diag.message());
    }
}

test "model: an image changed by another thread during create is read once, never trusted twice" {
    // Layer 0's record starts at byte 32: word 14 (tensor_count) at 88, then tensor 0's
    // element count at 96. Changing them after the parse made pack read past its buffers.
    const layers = [_]Spec{
        .{ .kind = .dense, .in = 5, .out = 3, .p = params(1, 0, 0) },
        .{ .kind = .lstm, .in = 3, .out = 4 },
    };
    const bytes = try build(testing.allocator, 8, 2, &layers);
    defer testing.allocator.free(bytes);
    const original = try testing.allocator.dupe(u8, bytes);
    defer testing.allocator.free(original);
    const changes = [_][2]u32{ .{ 88, 200 }, .{ 88, 1 }, .{ 96, 1 << 20 }, .{ 96, 3 }, .{ 32, 9 } };
    for (changes) |c| {
        @memcpy(bytes, original);
        var racing = RacingAllocator{
            .backing = testing.allocator,
            .target = bytes,
            .at = c[0],
            .value = c[1],
        };
        var diag: image.Diag = .{};
        if (Model.create(racing.allocator(), bytes, &diag)) |m| {
            var y: [4]f32 = undefined;
            m.forward(&.{ 1, 2, 3, 4, 5 }, &y);
            m.destroy();
        } else |_| {
            try testing.expect(diag.len > 0);
        }
    }
}

test "api: compute calls read and write subnormals as zero, and restore the caller's mode" {
    // An identity dense layer: a subnormal input stays subnormal in IEEE arithmetic, and
    // cost about 150 times a normal one per multiply-add on the machine measured.
    const eye = [_]f32{ 1, 0, 0, 1 };
    const zero = [_]f32{ 0, 0 };
    const layers = [_]Spec{.{
        .kind = .dense,
        .in = 2,
        .out = 2,
        .p = params(1, 0, 0),
        .tensors = &.{ &eye, &zero },
    }};
    const bytes = try build(testing.allocator, 1, 2, &layers);
    defer testing.allocator.free(bytes);
    var handle: u64 = 0;
    const created = api.cz_model_create(bytes.ptr, bytes.len, &handle, null, 0);
    try testing.expectEqual(@as(u32, 0), created);
    const h: ?*anyopaque = @ptrFromInt(handle);
    defer api.cz_model_destroy(h);
    const x = [4]f32{ 1e-39, 0.5, -3e-42, 2 };
    var y: [4]f32 = undefined;
    try testing.expectEqual(@as(u32, 0), api.cz_forward(h, &x, 2, &y, 2));
    try testing.expectEqualSlices(f32, &.{ 0, 0.5 }, y[0..2]);
    try testing.expectEqual(@as(u32, 0), api.cz_forward_batch(h, &x, 4, 2, &y, 4));
    try testing.expectEqualSlices(f32, &.{ 0, 0.5, 0, 2 }, &y);
    // relu decides on the bits: exact for subnormals even inside the call.
    const relu_layers = [_]Spec{.{ .kind = .activation, .act = .relu, .in = 3, .out = 3 }};
    const relu_bytes = try build(testing.allocator, 1, 1, &relu_layers);
    defer testing.allocator.free(relu_bytes);
    var relu: u64 = 0;
    const relu_created = api.cz_model_create(relu_bytes.ptr, relu_bytes.len, &relu, null, 0);
    try testing.expectEqual(@as(u32, 0), relu_created);
    defer api.cz_model_destroy(@ptrFromInt(relu));
    const rx = [3]f32{ 1e-39, -1e-39, 3 };
    try testing.expectEqual(@as(u32, 0), api.cz_forward(@ptrFromInt(relu), &rx, 3, &y, 3));
    try testing.expectEqualSlices(u32, &.{ @bitCast(rx[0]), 0, @bitCast(rx[2]) }, &.{
        @bitCast(y[0]), @bitCast(y[1]), @bitCast(y[2]),
    });
    // Back in the caller's mode, subnormals are kept again.
    var tiny: f32 = 1e-39;
    std.mem.doNotOptimizeAway(&tiny);
    var kept = tiny * 1.0;
    std.mem.doNotOptimizeAway(&kept);
    try testing.expectEqual(@as(f32, 1e-39), kept);
}

test "api: cz_process equals cz_forward calls bit for bit and checks its buffers" {
    const layers = [_]Spec{
        .{ .kind = .lstm, .in = 2, .out = 5 },
        .{ .kind = .dense, .in = 5, .out = 2, .p = params(1, 0, 0) },
        .{ .kind = .skip, .in = 2, .out = 2 },
    };
    const bytes = try build(testing.allocator, 11, 2, &layers);
    defer testing.allocator.free(bytes);
    var handles: [2]u64 = undefined;
    for (&handles) |*h| {
        try testing.expectEqual(@as(u32, 0), api.cz_model_create(bytes.ptr, bytes.len, h, null, 0));
    }
    const stepped: ?*anyopaque = @ptrFromInt(handles[0]);
    const blocked: ?*anyopaque = @ptrFromInt(handles[1]);
    defer for (handles) |h| api.cz_model_destroy(@ptrFromInt(h));
    const steps = 40;
    var x: [2 * steps]f32 = undefined;
    var prng = std.Random.DefaultPrng.init(5);
    randomFloats(prng.random(), &x, 1.5);
    var want: [2 * steps]f32 = undefined;
    for (0..steps) |t| {
        const status = api.cz_forward(stepped, x[2 * t ..].ptr, 2, want[2 * t ..].ptr, 2);
        try testing.expectEqual(@as(u32, 0), status);
    }
    var got: [2 * steps]f32 = undefined;
    try testing.expectEqual(@as(u32, 0), api.cz_process(blocked, &x, x.len, steps, &got, got.len));
    try testing.expectEqualSlices(u32, @ptrCast(&want), @ptrCast(&got));
    // In place (out starts at in, output_size <= input_size) from a reset state.
    try testing.expectEqual(@as(u32, 0), api.cz_reset(blocked));
    var in_place = x;
    const status = api.cz_process(blocked, &in_place, x.len, steps, &in_place, x.len);
    try testing.expectEqual(@as(u32, 0), status);
    try testing.expectEqualSlices(u32, @ptrCast(&want), @ptrCast(&in_place));

    const odd: *anyopaque = @ptrFromInt(@intFromPtr(&got) + 1);
    const g = got.len;
    try expectRefused(blocked, api.cz_process(blocked, &x, x.len, 0, &got, g), "cz_process: steps is 0");
    try expectRefused(blocked, api.cz_process(blocked, null, x.len, steps, &got, g), "cz_process: in is null");
    try expectRefused(blocked, api.cz_process(blocked, &x, x.len - 1, steps, &got, g), "cz_process: in_len is 79, expected 80");
    try expectRefused(blocked, api.cz_process(blocked, &x, x.len, steps, &got, g - 1), "cz_process: out_len is 79");
    // Output one float past the input: step 0 would overwrite step 1's input.
    const shifted = api.cz_process(blocked, &x, x.len - 2, steps - 1, x[1..].ptr, x.len - 2);
    try expectRefused(blocked, shifted, "cz_process: out overlaps in");
    try expectRefused(blocked, api.cz_process(blocked, &x, x.len, steps, odd, g), "cz_process: out is not 4-byte aligned");
    try testing.expectEqual(@as(u32, 4), api.cz_process(null, &x, x.len, steps, &got, got.len));
}

/// A cz_process call refused with status 1 and a message starting with `prefix`.
fn expectRefused(h: ?*anyopaque, status: u32, prefix: []const u8) !void {
    try testing.expectEqual(@as(u32, 1), status);
    var msg: [200]u8 = undefined;
    const n = api.cz_last_error(h, &msg, msg.len);
    if (!std.mem.startsWith(u8, msg[0..n], prefix)) {
        std.debug.print("message: {s}\nexpected to start with: {s}\n", .{ msg[0..n], prefix });
        return error.TestUnexpectedResult;
    }
}

test "image: a skip layer wider than the model input is refused" {
    const layers = [_]Spec{
        .{ .kind = .dense, .in = 2, .out = 3, .p = params(1, 0, 0) },
        .{ .kind = .skip, .in = 3, .out = 3 },
    };
    const bytes = try build(testing.allocator, 3, 1, &layers);
    defer testing.allocator.free(bytes);
    var handle: u64 = 0;
    var err: [256]u8 = undefined;
    try testing.expectEqual(@as(u32, 2), api.cz_model_create(bytes.ptr, bytes.len, &handle, &err, err.len));
    const want = "layer 1 (skip): out is 3, expected at most 2 (the header's input_size: skip adds " ++
        "the model input)";
    try testing.expectEqualStrings(want, std.mem.sliceTo(&err, 0));
}

/// Runs `create` (returning a *T that T.destroy frees) with an allocator that fails at its
/// first, second, ... allocation, until one run allocates without an induced failure. Each
/// failing run must return error.OutOfMemory with a message that says so, and free what it
/// took: the backing is testing.allocator, which fails the test on any leak. Returns how many
/// allocation points were failed.
pub fn failEveryAllocation(
    comptime T: type,
    ctx: anytype,
    comptime create: fn (@TypeOf(ctx), std.mem.Allocator, *image.Diag) anyerror!*T,
) !usize {
    var index: usize = 0;
    while (index < 10_000) : (index += 1) {
        var failing = testing.FailingAllocator.init(testing.allocator, .{ .fail_index = index });
        var diag: image.Diag = .{};
        const made = create(ctx, failing.allocator(), &diag) catch |err| {
            try testing.expect(failing.has_induced_failure);
            try testing.expectEqual(error.OutOfMemory, err);
            try testing.expect(std.mem.indexOf(u8, diag.message(), "out of memory") != null);
            continue;
        };
        made.destroy();
        try testing.expect(!failing.has_induced_failure);
        try testing.expectEqual(failing.allocated_bytes, failing.freed_bytes);
        return index;
    }
    return error.TooManyAllocations;
}

fn createFrom(bytes: []const u8, a: std.mem.Allocator, diag: *image.Diag) anyerror!*Model {
    return Model.create(a, bytes, diag);
}

test "model: an allocation failure at every point of create is error.OutOfMemory, no leak" {
    const int8_specs = everyKindAs(.int8);
    const bf16_specs = everyKindBf16();
    for ([_][]const Spec{ &every_kind, &int8_specs, &bf16_specs }) |specs| {
        const bytes = try build(testing.allocator, 3, 4, specs);
        defer testing.allocator.free(bytes);
        const points = try failEveryAllocation(Model, @as([]const u8, bytes), createFrom);
        try testing.expect(points >= 2);
    }
}
