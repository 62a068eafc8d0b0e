//! A loaded model: one arena, sized and allocated by create, holding the layer table, the
//! packed weights (each layer 64-byte aligned), every layer's state, one state copy for
//! batch rows, the scratch, and two activation buffers that layers write in turn.
//! forward, forwardBatch and reset allocate nothing; a counting allocator proves it.
const std = @import("std");
const desc = @import("layers/desc.zig");
const image = @import("image.zig");
const skip = @import("layers/skip.zig");
const simd = @import("simd.zig");

const Allocator = std.mem.Allocator;
const LayerDesc = desc.LayerDesc;
const Diag = image.Diag;

/// Bumped when the C ABI or the image format changes incompatibly.
pub const abi_version: u32 = 1;
/// Total arena limit (docs/DESIGN.md, "Limits").
pub const arena_bytes_max: u64 = 1 << 30;
/// Every region in the arena starts on a cache line, so do the packed weights of each layer.
const region_align = 64;
const region_floats = region_align / 4;

const Mode = enum { step, rows };

pub const CreateError = image.Error || error{OutOfMemory};

/// Wraps the backing allocator and counts what passes through it.
pub const CountingAllocator = struct {
    backing: Allocator,
    alloc_count: u64 = 0,
    free_count: u64 = 0,
    bytes_held: u64 = 0,

    pub fn allocator(self: *CountingAllocator) Allocator {
        return .{ .ptr = self, .vtable = &vtable };
    }

    const vtable = Allocator.VTable{
        .alloc = alloc,
        .resize = resize,
        .remap = remap,
        .free = free,
    };
    const Alignment = std.mem.Alignment;

    fn alloc(ctx: *anyopaque, len: usize, alignment: Alignment, ret: usize) ?[*]u8 {
        const self: *CountingAllocator = @ptrCast(@alignCast(ctx));
        const ptr = self.backing.rawAlloc(len, alignment, ret) orelse return null;
        self.alloc_count += 1;
        self.bytes_held += len;
        return ptr;
    }

    fn resize(
        ctx: *anyopaque,
        memory: []u8,
        alignment: Alignment,
        new_len: usize,
        ret: usize,
    ) bool {
        const self: *CountingAllocator = @ptrCast(@alignCast(ctx));
        if (!self.backing.rawResize(memory, alignment, new_len, ret)) return false;
        self.bytes_held = self.bytes_held - memory.len + new_len;
        return true;
    }

    /// Moving memory counts as a new allocation: refusing lets Allocator do alloc + free.
    fn remap(
        ctx: *anyopaque,
        memory: []u8,
        alignment: Alignment,
        new_len: usize,
        ret: usize,
    ) ?[*]u8 {
        _ = .{ ctx, memory, alignment, new_len, ret };
        return null;
    }

    fn free(ctx: *anyopaque, memory: []u8, alignment: Alignment, ret: usize) void {
        const self: *CountingAllocator = @ptrCast(@alignCast(ctx));
        self.backing.rawFree(memory, alignment, ret);
        self.free_count += 1;
        self.bytes_held -= memory.len;
    }
};

pub const Layer = struct {
    desc: LayerDesc,
    weights: []f32,
    /// Empty for stateless layers.
    state: []f32,
};

/// The fields cz_model_info reports, in order (docs/DESIGN.md, "C ABI").
pub const info_fields = 11;

pub const Model = struct {
    counting: CountingAllocator,
    arena: []align(region_align) u8,
    layers: []Layer,
    input_size: u32,
    output_size: u32,
    max_batch: u32,
    parameter_count: u64,
    /// Bytes the parameters take as held: matrices at their layer's weight type.
    weight_bytes: u64,
    /// Every layer's state, contiguous: reset zeroes it at once.
    state: []f32,
    /// One layer's state, copied per row by forwardBatch so rows do not advance the model.
    state_copy: []f32,
    scratch: []f32,
    acts: [2][]f32,
    /// Where a model input that overlaps the output is copied first; no layer writes it, so
    /// a skip layer can still read the input after the layers before it ran.
    input_copy: []f32,
    /// The last error on this handle (cz_last_error).
    diag: Diag = .{},

    pub fn create(backing: Allocator, caller_bytes: []const u8, diag: *Diag) CreateError!*Model {
        // The parse checks the words that carving and packing read again; the caller's buffer
        // may change in between (shared memory another thread writes), so both read one
        // private copy. Uncounted: it is gone when create returns. The header alone is
        // checked first, so that a length that disagrees with it is refused, not copied.
        _ = try image.parseHeader(caller_bytes, diag);
        const bytes = backing.dupe(u8, caller_bytes) catch {
            return outOfMemory(diag, caller_bytes.len);
        };
        defer backing.free(bytes);
        const img = try image.parse(bytes, diag);
        const plan = try Plan.of(&img, diag);
        const m = backing.create(Model) catch return outOfMemory(diag, @sizeOf(Model));
        errdefer backing.destroy(m);
        m.* = .{
            .counting = .{ .backing = backing },
            .arena = &.{},
            .layers = &.{},
            .input_size = img.header.input_size,
            .output_size = img.header.output_size,
            .max_batch = img.header.max_batch,
            .parameter_count = img.parameter_count,
            .weight_bytes = img.weight_bytes,
            .state = &.{},
            .state_copy = &.{},
            .scratch = &.{},
            .acts = .{ &.{}, &.{} },
            .input_copy = &.{},
        };
        const a = m.counting.allocator();
        m.arena = a.alignedAlloc(u8, .fromByteUnits(region_align), plan.total_bytes) catch {
            return outOfMemory(diag, plan.total_bytes);
        };
        errdefer a.free(m.arena);
        @memset(m.arena, 0);
        m.carve(&img, &plan);
        try m.packAll(&img, diag);
        return m;
    }

    pub fn destroy(m: *Model) void {
        const backing = m.counting.backing;
        m.counting.allocator().free(m.arena);
        backing.destroy(m);
    }

    /// One step: every stateful layer advances. x.len == input_size, y.len >= output_size.
    pub fn forward(m: *Model, x: []const f32, y: []f32) void {
        std.debug.assert(x.len == m.input_size and y.len >= m.output_size);
        m.chain(x, y, 1, .step);
    }

    /// `batch` independent rows, each from the current state, which does not advance.
    pub fn forwardBatch(m: *Model, x: []const f32, y: []f32, batch: u32) void {
        std.debug.assert(batch >= 1 and batch <= m.max_batch);
        std.debug.assert(x.len == m.input_size * batch and y.len >= m.output_size * batch);
        m.chain(x, y, batch, .rows);
    }

    /// `steps` steps in turn, exactly as `steps` calls of forward: step t reads
    /// x[t * input_size ..][0..input_size] and writes y[t * output_size ..][0..output_size].
    /// The caller (api.zig) has checked that no step's output overlaps a later step's input.
    pub fn process(m: *Model, x: []const f32, y: []f32, steps: usize) void {
        const n_in: usize = m.input_size;
        const n_out: usize = m.output_size;
        std.debug.assert(x.len == n_in * steps and y.len >= n_out * steps);
        // Apart, no step's input overlaps its output: the check (and copy) per step is
        // skipped. In place (the usual audio call), every step takes unalias's copy.
        const apart = !overlap(x, y[0 .. n_out * steps]);
        for (0..steps) |t| {
            const x_t = x[t * n_in ..][0..n_in];
            const y_t = y[t * n_out ..][0..n_out];
            if (apart) m.chainFrom(x_t, y_t, 1, .step) else m.chain(x_t, y_t, 1, .step);
        }
    }

    pub fn reset(m: *Model) void {
        @memset(m.state, 0);
    }

    /// The cz_model_info fields; see docs/DESIGN.md.
    pub fn info(m: *const Model) [info_fields]u64 {
        return .{
            abi_version,
            m.input_size,
            m.output_size,
            m.parameter_count,
            m.weight_bytes,
            m.counting.bytes_held + @sizeOf(Model),
            m.state.len,
            m.max_batch,
            m.layers.len,
            m.counting.alloc_count,
            m.counting.free_count,
        };
    }

    /// Runs the layers in turn through the two activation buffers; the last writes y.
    /// `step` advances stateful layers; `rows` runs each row from a copy of the state.
    fn chain(m: *Model, x_in: []const f32, y: []f32, batch: u32, comptime mode: Mode) void {
        m.chainFrom(m.unalias(x_in, y), y, batch, mode);
    }

    /// chain for an x that does not overlap y.
    inline fn chainFrom(m: *Model, x: []const f32, y: []f32, batch: u32, comptime mode: Mode) void {
        var src: []const f32 = x;
        for (m.layers, 0..) |*l, i| {
            const n = l.desc.out * batch;
            const dst = if (i + 1 == m.layers.len) y[0..n] else m.acts[i % 2][0..n];
            if (l.desc.kind == .skip) {
                skip.add(&l.desc, x, m.input_size, src, dst, batch);
                src = dst;
                continue;
            }
            switch (mode) {
                .step => runLayer(l, l.state, m.scratch, src, dst),
                .rows => m.runRows(l, src, dst, batch),
            }
            src = dst;
        }
    }

    /// Layers read x while the last writes y: when the caller passed overlapping buffers,
    /// x moves to a region that no layer writes (skip layers read it after the others ran).
    fn unalias(m: *Model, x: []const f32, y: []const f32) []const f32 {
        if (!overlap(x, y)) return x;
        const copy = m.input_copy[0..x.len];
        if (x.len <= simd.lanes) simd.copy(copy, x) else @memcpy(copy, x);
        return copy;
    }

    fn runRows(m: *Model, l: *const Layer, src: []const f32, dst: []f32, batch: u32) void {
        const in: usize = l.desc.in;
        const out: usize = l.desc.out;
        if (l.state.len == 0) {
            switch (l.desc.kind) {
                inline else => |k| if (@hasDecl(image.Impl(k), "forwardBatch")) {
                    image.Impl(k).forwardBatch(&l.desc, l.weights, m.scratch, src, dst, batch);
                    return;
                },
            }
            for (0..batch) |r| {
                runLayer(l, l.state, m.scratch, src[r * in ..][0..in], dst[r * out ..][0..out]);
            }
            return;
        }
        const copy = m.state_copy[0..l.state.len];
        for (0..batch) |r| {
            @memcpy(copy, l.state);
            runLayer(l, copy, m.scratch, src[r * in ..][0..in], dst[r * out ..][0..out]);
        }
    }

    fn carve(m: *Model, img: *const image.Image, plan: *const Plan) void {
        const base = m.arena.ptr;
        const n = img.header.layer_count;
        m.layers = @as([*]Layer, @ptrCast(@alignCast(base + plan.layers_at)))[0..n];
        const weights = floatsAt(base, plan.weights_at, plan.weights_floats);
        m.state = floatsAt(base, plan.state_at, plan.state_floats);
        m.state_copy = floatsAt(base, plan.copy_at, plan.copy_floats);
        m.scratch = floatsAt(base, plan.scratch_at, plan.scratch_floats);
        m.acts[0] = floatsAt(base, plan.acts_at[0], plan.act_floats);
        m.acts[1] = floatsAt(base, plan.acts_at[1], plan.act_floats);
        m.input_copy = floatsAt(base, plan.input_at, plan.input_floats);
        var w_at: usize = 0;
        var s_at: usize = 0;
        var it = img.layers();
        for (m.layers) |*l| {
            const view = it.next().?;
            const s = layerSizes(&view.desc, m.max_batch);
            l.* = .{
                .desc = view.desc,
                .weights = weights[w_at..][0..s.weights],
                .state = m.state[s_at..][0..s.state],
            };
            w_at += roundFloats(s.weights);
            s_at += roundFloats(s.state);
        }
        std.debug.assert(w_at == weights.len and s_at == m.state.len);
    }

    fn packAll(m: *Model, img: *const image.Image, diag: *Diag) CreateError!void {
        const a = m.counting.allocator();
        const tmp = a.alloc(f32, @max(img.layer_floats_max, 1)) catch {
            return outOfMemory(diag, img.layer_floats_max * 4);
        };
        defer a.free(tmp);
        var slices: [desc.tensors_max][]const f32 = undefined;
        var it = img.layers();
        for (m.layers, 0..) |*l, index| {
            const view = it.next().?;
            const tensors = view.copyTensors(img.bytes, tmp, &slices);
            switch (l.desc.kind) {
                inline else => |k| {
                    const K = image.Impl(k);
                    if (@hasDecl(K, "checkTensors")) {
                        if (K.checkTensors(&l.desc, tensors)) |msg| {
                            const args = .{ index, @tagName(k), msg };
                            return diag.fail(error.BadImage, "layer {d} ({s}): {s}", args);
                        }
                    }
                    K.pack(&l.desc, tensors, l.weights);
                },
            }
        }
    }
};

fn overlap(x: []const f32, y: []const f32) bool {
    const x0 = @intFromPtr(x.ptr);
    const y0 = @intFromPtr(y.ptr);
    return !(x0 >= y0 + y.len * 4 or y0 >= x0 + x.len * 4);
}

fn outOfMemory(diag: *Diag, bytes: usize) error{OutOfMemory} {
    const fmt = "out of memory allocating {d} bytes for the model";
    return diag.fail(error.OutOfMemory, fmt, .{bytes});
}

fn runLayer(l: *const Layer, state: []f32, scratch: []f32, x: []const f32, y: []f32) void {
    switch (l.desc.kind) {
        .skip => unreachable, // chain runs it: it reads the model input
        inline else => |k| image.Impl(k).forward(&l.desc, l.weights, state, scratch, x, y),
    }
}

fn layerSizes(d: *const LayerDesc, max_batch: u32) desc.Sizes {
    return switch (d.kind) {
        inline else => |k| image.Impl(k).sizes(d, max_batch),
    };
}

fn roundFloats(n: usize) usize {
    return std.mem.alignForward(usize, n, region_floats);
}

fn floatsAt(base: [*]align(region_align) u8, at: usize, n: usize) []f32 {
    return @as([*]f32, @ptrCast(@alignCast(base + at)))[0..n];
}

/// Where each region goes in the arena; all sums overflow-checked in u64.
const Plan = struct {
    layers_at: usize = 0,
    weights_at: usize = 0,
    weights_floats: usize = 0,
    state_at: usize = 0,
    state_floats: usize = 0,
    copy_at: usize = 0,
    copy_floats: usize = 0,
    scratch_at: usize = 0,
    scratch_floats: usize = 0,
    acts_at: [2]usize = .{ 0, 0 },
    act_floats: usize = 0,
    input_at: usize = 0,
    input_floats: usize = 0,
    total_bytes: usize = 0,

    fn of(img: *const image.Image, diag: *Diag) image.Error!Plan {
        return plan(img) catch |err| switch (err) {
            error.Overflow => diag.fail(error.Limit, "the model needs more memory than " ++
                "the limit of {d} bytes", .{arena_bytes_max}),
        };
    }

    fn plan(img: *const image.Image) error{Overflow}!Plan {
        const h = img.header;
        var p = Plan{};
        var weights: u64 = 0;
        var state: u64 = 0;
        var copy: u64 = 0;
        var scratch: u64 = 0;
        var width: u64 = h.input_size;
        var it = img.layers();
        while (it.next()) |view| {
            const s = layerSizes(&view.desc, h.max_batch);
            weights = try add(weights, roundUp(s.weights));
            state = try add(state, roundUp(s.state));
            copy = @max(copy, s.state);
            scratch = @max(scratch, s.scratch);
            width = @max(width, view.desc.out);
        }
        const act = try std.math.mul(u64, width, h.max_batch);
        var at: u64 = try regionBytes(@sizeOf(Layer) * @as(u64, h.layer_count));
        p.weights_at = @intCast(at);
        at = try add(at, try regionBytes(try std.math.mul(u64, weights, 4)));
        p.state_at = @intCast(at);
        at = try add(at, try regionBytes(try std.math.mul(u64, state, 4)));
        p.copy_at = @intCast(at);
        at = try add(at, try regionBytes(try std.math.mul(u64, copy, 4)));
        p.scratch_at = @intCast(at);
        at = try add(at, try regionBytes(try std.math.mul(u64, scratch, 4)));
        p.acts_at[0] = @intCast(at);
        at = try add(at, try regionBytes(try std.math.mul(u64, act, 4)));
        p.acts_at[1] = @intCast(at);
        at = try add(at, try regionBytes(try std.math.mul(u64, act, 4)));
        const input = try std.math.mul(u64, h.input_size, h.max_batch);
        p.input_at = @intCast(at);
        at = try add(at, try regionBytes(try std.math.mul(u64, input, 4)));
        p.input_floats = @intCast(input);
        p.weights_floats = @intCast(weights);
        p.state_floats = @intCast(state);
        p.copy_floats = @intCast(copy);
        p.scratch_floats = @intCast(scratch);
        p.act_floats = @intCast(act);
        p.total_bytes = @intCast(at);
        return p;
    }

    fn add(a: u64, b: u64) error{Overflow}!u64 {
        const s = try std.math.add(u64, a, b);
        if (s > arena_bytes_max) return error.Overflow;
        return s;
    }

    fn roundUp(n: u64) u64 {
        return std.mem.alignForward(u64, n, region_floats);
    }

    fn regionBytes(n: u64) error{Overflow}!u64 {
        if (n > arena_bytes_max) return error.Overflow;
        return std.mem.alignForward(u64, n, region_align);
    }
};
