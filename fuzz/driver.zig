//! A coverage-guided fuzzer for the library's C ABI readers (docs/TESTING.md, "Coverage-guided
//! fuzzing"). The library is compiled with Zig's fuzz instrumentation (`-ffuzz`: LLVM's
//! SanitizerCoverage with inline 8-bit counters and comparison tracing) into an object that
//! this driver links; the driver itself is not instrumented. It implements the callbacks the
//! instrumentation calls (`__sanitizer_cov_trace_cmp*`, `__sanitizer_cov_trace_switch`) and
//! reads the counters from the `__sancov_cntrs` section.
//!
//! Three targets, each the bytes of one reader's input:
//!   model    a model image into cz_model_create (run as given, and again with its image_bytes
//!            word set to the length so mutations reach past that check); a model made is run
//!            (forward, forward_batch, process, reset, wrong lengths) and destroyed;
//!   graph    a graph description (u32 words) into cz_graph_create over four small models
//!            (fuzz/graph-nodes/); a graph made is stepped from the input and from every node;
//!   trainer  32 config words then a model image into cz_trainer_create; a trainer made runs
//!            forward, step, eval, grad, params and state round trips.
//! Every call's contract is checked (status codes, a message with every failure, a zero handle
//! with every failure, status 4 for a destroyed handle); a broken one panics, which is a crash.
//!
//! A supervising parent forks the worker that fuzzes. The worker writes each input to shared
//! memory before it runs it; when the worker dies (a panic traps, a signal) the parent saves
//! that input under OUT/crashes/, and when the worker's execution count stops for --timeout
//! seconds the parent kills it and saves the input under OUT/hangs/; then it starts a new
//! worker, which reloads the corpus. Coverage is AFL-style: each counter's hit count in
//! buckets (1, 2, 3, 4-7, 8-15, 16-31, 32-127, 128+); an input that sets a bucket bit never
//! seen before (a map in shared memory, so that it outlives workers) joins the corpus and is
//! written to OUT/corpus/.
//!
//! Mutations, one to eight stacked: bit flips, random bytes, interesting 8/16/32-bit values
//! (often at 4-byte-aligned offsets: both formats are little-endian u32 words), small
//! arithmetic on a word, special float bits (NaN, Inf, -0, 1e39 overflow), inserts, deletes,
//! duplicated ranges, truncation, dictionary tokens (--dict, libFuzzer/AFL syntax) inserted or
//! written over, comparison operands the library just compared (a value found in the input
//! replaced by what it was compared with, or written anywhere), and splices of two entries.
//!
//!   cadenza-fuzz TARGET [--seconds N] [--runs N] [--corpus DIR]... [--dict FILE]
//!                [--out DIR] [--seed N] [--max-len BYTES] [--timeout S] [--mem-mb MB]
//!   cadenza-fuzz TARGET --reproduce FILE...     run each file once, in this process
//!
//! Prints a status line every few seconds and a JSON summary line at the end; exits 1 when a
//! crash or hang was found, 2 on bad arguments.
const std = @import("std");
const posix = std.posix;

// ---------------------------------------------------------------------------------------------
// The library's C ABI (zig/api.zig, zig/train/api.zig), linked from the instrumented object.

extern fn cz_model_create(ptr: ?[*]const u8, len: usize, out: ?*u64, err: ?[*]u8, err_len: usize) u32;
extern fn cz_model_destroy(h: u64) void;
extern fn cz_model_info(h: u64, out: ?*anyopaque, out_len: usize) u32;
extern fn cz_forward(h: u64, in: ?*const anyopaque, in_len: usize, out: ?*anyopaque, out_len: usize) u32;
extern fn cz_forward_batch(h: u64, in: ?*const anyopaque, in_len: usize, batch: u32, out: ?*anyopaque, out_len: usize) u32;
extern fn cz_process(h: u64, in: ?*const anyopaque, in_len: usize, steps: u32, out: ?*anyopaque, out_len: usize) u32;
extern fn cz_reset(h: u64) u32;
extern fn cz_last_error(h: u64, buf: ?[*]u8, len: usize) usize;
extern fn cz_graph_create(desc: ?*const anyopaque, desc_len: usize, handles: ?*const anyopaque, count: usize, out: ?*u64, err: ?[*]u8, err_len: usize) u32;
extern fn cz_graph_destroy(h: u64) void;
extern fn cz_graph_info(h: u64, out: ?*anyopaque, out_len: usize) u32;
extern fn cz_graph_step(h: u64, in: ?*const anyopaque, in_len: usize, out: ?*anyopaque, out_len: usize) u32;
extern fn cz_graph_step_from(h: u64, node: u32, in: ?*const anyopaque, in_len: usize, out: ?*anyopaque, out_len: usize) u32;
extern fn cz_graph_step_from_input(h: u64, node: u32, in: ?*const anyopaque, in_len: usize, x: ?*const anyopaque, x_len: usize, out: ?*anyopaque, out_len: usize) u32;
extern fn cz_graph_reset(h: u64) u32;
extern fn cz_graph_node_ns(h: u64, out: ?*anyopaque, out_len: usize) u32;
extern fn cz_graph_prefetch(h: u64, bytes_out: ?*anyopaque) u32;
extern fn cz_trainer_create(ptr: ?[*]const u8, len: usize, config: ?*const anyopaque, config_len: usize, out: ?*u64, err: ?[*]u8, err_len: usize) u32;
extern fn cz_trainer_destroy(h: u64) void;
extern fn cz_trainer_info(h: u64, out: ?*anyopaque, out_len: usize) u32;
extern fn cz_trainer_last_error(h: u64, buf: ?[*]u8, len: usize) usize;
extern fn cz_trainer_forward(h: u64, in: ?*const anyopaque, in_len: usize, out: ?*anyopaque, out_len: usize) u32;
extern fn cz_trainer_step(h: u64, in: ?*const anyopaque, in_len: usize, t: ?*const anyopaque, t_len: usize, m: ?*const anyopaque, m_len: usize, loss: ?*anyopaque) u32;
extern fn cz_trainer_eval(h: u64, in: ?*const anyopaque, in_len: usize, t: ?*const anyopaque, t_len: usize, m: ?*const anyopaque, m_len: usize, out: ?*anyopaque, out_len: usize) u32;
extern fn cz_trainer_grad(h: u64, in: ?*const anyopaque, in_len: usize, t: ?*const anyopaque, t_len: usize, m: ?*const anyopaque, m_len: usize, loss: ?*anyopaque, g: ?*anyopaque, g_len: usize) u32;
extern fn cz_trainer_get_params(h: u64, out: ?*anyopaque, out_len: usize) u32;
extern fn cz_trainer_set_params(h: u64, in: ?*const anyopaque, in_len: usize) u32;
extern fn cz_trainer_get_state(h: u64, out: ?*anyopaque, out_len: usize) u32;
extern fn cz_trainer_set_state(h: u64, in: ?*const anyopaque, in_len: usize) u32;

// ---------------------------------------------------------------------------------------------
// SanitizerCoverage callbacks. Comparisons feed a small table of operand pairs (the mutator's
// "replace what was compared" step); the counters are read directly from their section.

export threadlocal var __sancov_lowest_stack: usize = 0;

const cmp_slots = 512;
var cmp_a: [cmp_slots]u64 = @splat(0);
var cmp_b: [cmp_slots]u64 = @splat(0);
var cmp_size: [cmp_slots]u8 = @splat(0);
/// Off while the driver itself runs library code it does not fuzz (graph node set-up).
var tracing = false;

inline fn traceCmp(pc: usize, a: u64, b: u64, size: u8) void {
    if (!tracing or a == b) return;
    const slot = (pc ^ (pc >> 9) ^ a ^ (b << 1)) % cmp_slots;
    cmp_a[slot] = a;
    cmp_b[slot] = b;
    cmp_size[slot] = size;
}

export fn __sanitizer_cov_trace_cmp1(a: u8, b: u8) void {
    _ = a;
    _ = b;
}
export fn __sanitizer_cov_trace_const_cmp1(a: u8, b: u8) void {
    _ = a;
    _ = b;
}
export fn __sanitizer_cov_trace_cmp2(a: u16, b: u16) void {
    traceCmp(@returnAddress(), a, b, 2);
}
export fn __sanitizer_cov_trace_const_cmp2(a: u16, b: u16) void {
    traceCmp(@returnAddress(), a, b, 2);
}
export fn __sanitizer_cov_trace_cmp4(a: u32, b: u32) void {
    traceCmp(@returnAddress(), a, b, 4);
}
export fn __sanitizer_cov_trace_const_cmp4(a: u32, b: u32) void {
    traceCmp(@returnAddress(), a, b, 4);
}
export fn __sanitizer_cov_trace_cmp8(a: u64, b: u64) void {
    traceCmp(@returnAddress(), a, b, 8);
}
export fn __sanitizer_cov_trace_const_cmp8(a: u64, b: u64) void {
    traceCmp(@returnAddress(), a, b, 8);
}
export fn __sanitizer_cov_trace_switch(val: u64, cases: [*]const u64) void {
    // cases[0]: count, cases[1]: bit width, then the case values.
    const n = cases[0];
    if (n == 0 or !tracing) return;
    const pick = (val *% 0x9E3779B97F4A7C15) >> 40;
    const size: u8 = @intCast(@min(8, @max(1, cases[1] / 8)));
    if (size >= 2) traceCmp(@returnAddress() +% pick, cases[2 + pick % n], val, size);
}

fn counters() []u8 {
    const start = @extern([*]u8, .{ .name = "__start___sancov_cntrs", .linkage = .weak }) orelse
        @panic("no __sancov_cntrs section: the library object was not built with -ffuzz");
    const stop = @extern([*]u8, .{ .name = "__stop___sancov_cntrs", .linkage = .weak }).?;
    return start[0 .. @intFromPtr(stop) - @intFromPtr(start)];
}

// ---------------------------------------------------------------------------------------------
// Targets.

const Target = enum { model, graph, trainer };

/// Inputs the targets pass to compute calls and outputs they receive (f32, aligned).
const scratch_floats = 1 << 20;
var in_buf: [scratch_floats]f32 align(64) = undefined;
var out_buf: [scratch_floats]f32 align(64) = undefined;
var copy_buf: [1 << 20]u8 align(64) = undefined;

fn contract(ok: bool, comptime what: []const u8, args: anytype) void {
    if (ok) return;
    std.debug.print("cadenza-fuzz: contract broken: " ++ what ++ "\n", args);
    @panic("contract broken");
}

fn le32(b: []const u8, at: usize) u32 {
    return std.mem.readInt(u32, b[at..][0..4], .little);
}

fn fillInputs(n: usize) void {
    for (in_buf[0..n], 0..) |*v, i| v.* = @as(f32, @floatFromInt(@as(i32, @intCast(i % 17)) - 8)) / 8;
}

/// Checks a create's result: ok with a handle and an empty message, or a failure status with
/// a zero handle and a message.
fn checkCreate(comptime name: []const u8, status: u32, handle: u64, msg: []const u8) void {
    const text = std.mem.sliceTo(msg, 0);
    if (verbose) std.debug.print("  {s}: status {d} {s}\n", .{ name, status, text });
    if (status == 0) {
        contract(handle != 0 and text.len == 0, name ++ ": status 0 with handle 0x{x}, message '{s}'", .{ handle, text });
    } else {
        contract(handle == 0, name ++ ": status {d} with handle 0x{x}", .{ status, handle });
        contract(status <= 5 and status != 4, name ++ ": status {d} from create", .{status});
        contract(text.len > 0, name ++ ": status {d} without a message", .{status});
    }
}

fn runModel(data: []const u8) void {
    tryModel(data);
    // A length change fails at header word 7 (image_bytes): run the input again with the
    // word set to the length (at an odd address: the ABI takes any alignment).
    if (data.len >= 32 and data.len + 1 <= copy_buf.len and le32(data, 28) != data.len) {
        const img = copy_buf[1..][0..data.len];
        @memcpy(img, data);
        std.mem.writeInt(u32, img[28..32], @intCast(data.len), .little);
        tryModel(img);
    }
}

fn tryModel(img: []const u8) void {
    var h: u64 = 0xDEAD;
    var msg: [300]u8 = @splat(0);
    const status = cz_model_create(img.ptr, img.len, &h, &msg, msg.len);
    checkCreate("cz_model_create", status, h, &msg);
    if (status != 0) return;
    exerciseModel(h);
    cz_model_destroy(h);
    var info: [11]u64 = undefined;
    contract(cz_model_info(h, &info, 11) == 4, "cz_model_info on a destroyed model is not status 4", .{});
    cz_model_destroy(h); // a second destroy does nothing
}

fn exerciseModel(h: u64) void {
    var info: [11]u64 = undefined;
    contract(cz_model_info(h, &info, 11) == 0, "cz_model_info failed on a live model", .{});
    const in: usize = @intCast(info[1]);
    const out: usize = @intCast(info[2]);
    const max_batch: u32 = @intCast(info[7]);
    contract(in >= 1 and in <= 65536 and out >= 1 and out <= 65536, "model sizes {d} -> {d}", .{ in, out });
    const steps: u32 = 3;
    if (in * steps > scratch_floats or out * steps > scratch_floats) return;
    fillInputs(in * steps);
    contract(cz_forward(h, &in_buf, in, &out_buf, out) == 0, "cz_forward failed on a live model", .{});
    contract(cz_forward(h, &in_buf, in + 1, &out_buf, out) == 1, "cz_forward took in_len + 1", .{});
    contract(cz_forward(h, &in_buf, in, &out_buf, out - 1) == 1, "cz_forward took out_len - 1", .{});
    var msg: [300]u8 = undefined;
    contract(cz_last_error(h, &msg, msg.len) > 0, "no message after a refused call", .{});
    const batch = @min(max_batch, steps);
    contract(cz_forward_batch(h, &in_buf, in * batch, batch, &out_buf, out * batch) == 0, "cz_forward_batch failed", .{});
    contract(cz_forward_batch(h, &in_buf, in, max_batch + 1, &out_buf, out) == 1, "cz_forward_batch took batch > max_batch", .{});
    contract(cz_process(h, &in_buf, in * steps, steps, &out_buf, out * steps) == 0, "cz_process failed", .{});
    contract(cz_reset(h) == 0, "cz_reset failed", .{});
    contract(cz_forward(h, &in_buf, in, &out_buf, out) == 0, "cz_forward after reset failed", .{});
}

// The graph target's member models: four small images written by scripts/fuzz-seeds.ts.
const node_images = [_][]const u8{
    @embedFile("graph-nodes/node0.img"),
    @embedFile("graph-nodes/node1.img"),
    @embedFile("graph-nodes/node2.img"),
    @embedFile("graph-nodes/node3.img"),
};
var node_handles: [node_images.len]u64 = @splat(0);

fn graphSetUp() void {
    for (node_images, &node_handles, 0..) |img, *h, i| {
        var msg: [300]u8 = @splat(0);
        // @embedFile data is only byte-aligned, which the ABI accepts.
        const status = cz_model_create(img.ptr, img.len, h, &msg, msg.len);
        if (status != 0) {
            std.debug.print("cadenza-fuzz: graph node {d} does not load: {s}\n", .{ i, std.mem.sliceTo(&msg, 0) });
            std.process.exit(2);
        }
    }
}

fn runGraph(data: []const u8) void {
    const n_words = data.len / 4;
    const words = copy_buf[0 .. n_words * 4];
    @memcpy(words, data[0 .. n_words * 4]);
    // One handle per node the description claims (1..4), so node_count can match.
    const claimed: usize = if (n_words >= 3) le32(words, 8) else node_images.len;
    const count = std.math.clamp(claimed, 1, node_images.len);
    var g: u64 = 0xDEAD;
    var msg: [300]u8 = @splat(0);
    const status = cz_graph_create(words.ptr, n_words, &node_handles, count, &g, &msg, msg.len);
    checkCreate("cz_graph_create", status, g, &msg);
    if (status != 0) return;
    var info: [7]u64 = undefined;
    contract(cz_graph_info(g, &info, 7) == 0, "cz_graph_info failed on a live graph", .{});
    const nodes: u32 = @intCast(info[1]);
    const in: usize = @intCast(info[2]);
    const outs: usize = @intCast(info[3]);
    if (in <= scratch_floats and outs <= scratch_floats) {
        fillInputs(in);
        contract(cz_graph_step(g, &in_buf, in, &out_buf, outs) == 0, "cz_graph_step failed", .{});
        contract(cz_graph_step(g, &in_buf, in + 1, &out_buf, outs) == 1, "cz_graph_step took in_len + 1", .{});
        contract(cz_graph_step(g, &in_buf, in, &out_buf, outs - 1) == 1, "cz_graph_step took out_len - 1", .{});
        var x: [65536]f32 = undefined;
        @memcpy(x[0..in], in_buf[0..in]);
        for (0..nodes) |node| {
            // The node's output width: try every width the member models have.
            for (node_handles[0..count]) |mh| {
                var mi: [11]u64 = undefined;
                _ = cz_model_info(mh, &mi, 11);
                const w: usize = @intCast(mi[2]);
                const s1 = cz_graph_step_from(g, @intCast(node), &in_buf, w, &out_buf, outs);
                contract(s1 <= 1, "cz_graph_step_from status {d}", .{s1});
                const s2 = cz_graph_step_from_input(g, @intCast(node), &in_buf, w, &x, in, &out_buf, outs);
                contract(s2 <= 1, "cz_graph_step_from_input status {d}", .{s2});
            }
        }
        contract(cz_graph_step_from(g, nodes, &in_buf, 1, &out_buf, outs) == 1, "cz_graph_step_from took node {d} of {d}", .{ nodes, nodes });
        var ns: [256]f64 = undefined;
        contract(cz_graph_node_ns(g, &ns, ns.len) == 0, "cz_graph_node_ns failed", .{});
        var bytes: u64 = 0;
        contract(cz_graph_prefetch(g, &bytes) == 0, "cz_graph_prefetch failed", .{});
    }
    contract(cz_graph_reset(g) == 0, "cz_graph_reset failed", .{});
    cz_graph_destroy(g);
    contract(cz_graph_info(g, &info, 7) == 4, "cz_graph_info on a destroyed graph is not status 4", .{});
    cz_graph_destroy(g);
}

const config_bytes = 32 * 4;

fn runTrainer(data: []const u8) void {
    const config_len = @min(data.len, config_bytes) / 4;
    const image = if (data.len > config_bytes) data[config_bytes..] else data[data.len..];
    var config: [32]u32 = @splat(0);
    for (0..config_len) |i| config[i] = le32(data, i * 4);
    // As for models: a second try with the image's image_bytes word set to its length.
    tryTrainer(image, &config, config_len);
    if (image.len >= 32 and image.len + 1 <= copy_buf.len and le32(image, 28) != image.len) {
        const img = copy_buf[1..][0..image.len];
        @memcpy(img, image);
        std.mem.writeInt(u32, img[28..32], @intCast(image.len), .little);
        tryTrainer(img, &config, config_len);
    }
}

fn tryTrainer(image: []const u8, config: *const [32]u32, config_len: usize) void {
    var t: u64 = 0xDEAD;
    var msg: [300]u8 = @splat(0);
    const status = cz_trainer_create(image.ptr, image.len, config, config_len, &t, &msg, msg.len);
    checkCreate("cz_trainer_create", status, t, &msg);
    if (status != 0) return;
    var info: [11]u64 = undefined;
    contract(cz_trainer_info(t, &info, 11) == 0, "cz_trainer_info failed on a live trainer", .{});
    const params: usize = @intCast(info[1]);
    const state_len: usize = @intCast(info[2]);
    const in: usize = @intCast(info[3]);
    const out: usize = @intCast(info[4]);
    const rows: usize = @intCast(info[5] * info[6]);
    // Compute only where it is quick: a trainer step costs about rows x parameters.
    const small = rows * in <= scratch_floats and rows * out <= scratch_floats and
        params <= scratch_floats / 2 and state_len <= scratch_floats and rows * params <= 4 << 20;
    if (small) {
        fillInputs(rows * in);
        contract(cz_trainer_forward(t, &in_buf, rows * in, &out_buf, rows * out) == 0, "cz_trainer_forward failed", .{});
        // Targets: zeros, valid for every loss (mse, kl, bce; xent as rows).
        const targets = out_buf[0 .. rows * out];
        @memset(targets, 0);
        var loss: f32 = 0;
        const s = cz_trainer_step(t, &in_buf, rows * in, targets.ptr, targets.len, null, 0, &loss);
        // Refused (status 1) when the loss, the gradient or the update would not be finite.
        contract(s <= 1, "cz_trainer_step status {d}: {s}", .{ s, trainerMessage(t) });
        if (s == 1) contract(trainerMessage(t).len > 0, "cz_trainer_step status 1 without a message", .{});
        var metrics: [3]f32 = undefined;
        contract(cz_trainer_eval(t, &in_buf, rows * in, targets.ptr, targets.len, null, 0, &metrics, 3) == 0, "cz_trainer_eval failed", .{});
        contract(cz_trainer_step(t, &in_buf, rows * in + 1, targets.ptr, targets.len, null, 0, &loss) == 1, "cz_trainer_step took in_len + 1", .{});
        var msg2: [300]u8 = undefined;
        contract(cz_trainer_last_error(t, &msg2, msg2.len) > 0, "no message after a refused call", .{});
        const p = out_buf[0..params];
        contract(cz_trainer_get_params(t, p.ptr, params) == 0, "cz_trainer_get_params failed", .{});
        contract(cz_trainer_set_params(t, p.ptr, params) == 0, "cz_trainer_set_params of its own params failed: {s}", .{trainerMessage(t)});
        contract(cz_trainer_get_params(t, p.ptr, params + 1) == 1, "cz_trainer_get_params took params + 1", .{});
        const st = out_buf[params..][0..state_len];
        contract(cz_trainer_get_state(t, st.ptr, state_len) == 0, "cz_trainer_get_state failed", .{});
        contract(cz_trainer_set_state(t, st.ptr, state_len) == 0, "cz_trainer_set_state of its own state failed: {s}", .{trainerMessage(t)});
    }
    cz_trainer_destroy(t);
    contract(cz_trainer_info(t, &info, 11) == 4, "cz_trainer_info on a destroyed trainer is not status 4", .{});
    cz_trainer_destroy(t);
}

var message_buf: [300]u8 = undefined;

fn trainerMessage(t: u64) []const u8 {
    const n = cz_trainer_last_error(t, &message_buf, message_buf.len);
    return message_buf[0..n];
}

fn runTarget(target: Target, data: []const u8) void {
    switch (target) {
        .model => runModel(data),
        .graph => runGraph(data),
        .trainer => runTrainer(data),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared memory between the supervisor and its worker.

const Shared = extern struct {
    execs: u64,
    new_units: u64,
    input_len: u64,
    corpus_count: u64,
    corpus_bytes: u64,
};

const Options = struct {
    target: Target,
    seconds: u64 = 60,
    runs: u64 = 0,
    corpus: std.ArrayList([]const u8) = .empty,
    dict: ?[]const u8 = null,
    out: []const u8 = "fuzz-out",
    seed: u64 = 1,
    max_len: usize = 64 * 1024,
    timeout_s: u64 = 10,
    mem_mb: u64 = 4096,
    reproduce: std.ArrayList([]const u8) = .empty,
};

const gpa = std.heap.page_allocator;

fn usage() noreturn {
    std.debug.print(
        \\usage: cadenza-fuzz model|graph|trainer [--seconds N] [--runs N] [--corpus DIR]...
        \\         [--dict FILE] [--out DIR] [--seed N] [--max-len BYTES] [--timeout S] [--mem-mb MB]
        \\       cadenza-fuzz model|graph|trainer --reproduce FILE...
        \\
    , .{});
    std.process.exit(2);
}

fn parseArgs() Options {
    const args = std.process.argsAlloc(gpa) catch @panic("out of memory");
    if (args.len < 2) usage();
    const target = std.meta.stringToEnum(Target, args[1]) orelse usage();
    var o: Options = .{ .target = target };
    var i: usize = 2;
    while (i < args.len) : (i += 1) {
        const a = args[i];
        if (std.mem.eql(u8, a, "--reproduce")) {
            for (args[i + 1 ..]) |f| o.reproduce.append(gpa, f) catch unreachable;
            if (o.reproduce.items.len == 0) usage();
            break;
        }
        if (i + 1 >= args.len) usage();
        const v = args[i + 1];
        i += 1;
        const num = std.fmt.parseInt(u64, v, 10) catch 0;
        if (std.mem.eql(u8, a, "--seconds")) o.seconds = num //
        else if (std.mem.eql(u8, a, "--runs")) o.runs = num //
        else if (std.mem.eql(u8, a, "--corpus")) o.corpus.append(gpa, v) catch unreachable //
        else if (std.mem.eql(u8, a, "--dict")) o.dict = v //
        else if (std.mem.eql(u8, a, "--out")) o.out = v //
        else if (std.mem.eql(u8, a, "--seed")) o.seed = num //
        else if (std.mem.eql(u8, a, "--max-len")) o.max_len = @max(64, num) //
        else if (std.mem.eql(u8, a, "--timeout")) o.timeout_s = @max(1, num) //
        else if (std.mem.eql(u8, a, "--mem-mb")) o.mem_mb = num //
        else usage();
    }
    o.max_len = @min(o.max_len, copy_buf.len - 8);
    return o;
}

pub fn main() void {
    const o = parseArgs();
    if (o.reproduce.items.len > 0) return reproduce(o);
    supervise(o);
}

/// --reproduce prints every create's status and message.
var verbose = false;

/// Runs each file once in this process: a crash shows as this process dying.
fn reproduce(o: Options) void {
    verbose = true;
    if (o.target == .graph) graphSetUp();
    for (o.reproduce.items) |path| {
        const data = std.fs.cwd().readFileAlloc(gpa, path, 64 << 20) catch |err| {
            std.debug.print("cadenza-fuzz: cannot read {s}: {t}\n", .{ path, err });
            std.process.exit(2);
        };
        runTarget(o.target, data);
        std.debug.print("cadenza-fuzz: {s}: ran, no crash\n", .{path});
        gpa.free(data);
    }
}

fn hashName(buf: []u8, prefix: []const u8, data: []const u8) []const u8 {
    return std.fmt.bufPrint(buf, "{s}{x:0>16}", .{ prefix, std.hash.Wyhash.hash(0, data) }) catch unreachable;
}

fn saveFile(dir: []const u8, name: []const u8, data: []const u8) void {
    var d = std.fs.cwd().makeOpenPath(dir, .{}) catch |err| {
        std.debug.print("cadenza-fuzz: cannot make {s}: {t}\n", .{ dir, err });
        return;
    };
    defer d.close();
    d.writeFile(.{ .sub_path = name, .data = data }) catch |err| {
        std.debug.print("cadenza-fuzz: cannot write {s}/{s}: {t}\n", .{ dir, name, err });
    };
}

fn nowMs() i64 {
    return std.time.milliTimestamp();
}

fn supervise(o: Options) void {
    const n_counters = counters().len;
    // Shared: the header, the current input, the seen-buckets map.
    const header_len = std.mem.alignForward(usize, @sizeOf(Shared), 64);
    const total = header_len + o.max_len + 64 + n_counters;
    const mem = posix.mmap(null, total, posix.PROT.READ | posix.PROT.WRITE, .{ .TYPE = .SHARED, .ANONYMOUS = true }, -1, 0) catch {
        std.debug.print("cadenza-fuzz: cannot map shared memory\n", .{});
        std.process.exit(2);
    };
    const shared: *volatile Shared = @ptrCast(@alignCast(mem.ptr));
    const input = mem[header_len..][0 .. o.max_len + 64];
    const seen = mem[header_len + o.max_len + 64 ..][0..n_counters];

    const crash_dir = std.fmt.allocPrint(gpa, "{s}/crashes", .{o.out}) catch unreachable;
    const hang_dir = std.fmt.allocPrint(gpa, "{s}/hangs", .{o.out}) catch unreachable;
    std.fs.cwd().makePath(o.out) catch {};

    const start = nowMs();
    var crashes: u64 = 0;
    var hangs: u64 = 0;
    var restarts: u64 = 0;
    var last_status = start;
    const deadline = start + @as(i64, @intCast(o.seconds)) * 1000;
    std.debug.print("cadenza-fuzz: target {t}, {d} counters instrumented, {d} s, out {s}\n", .{ o.target, n_counters, o.seconds, o.out });

    outer: while (true) {
        const pid = posix.fork() catch {
            std.debug.print("cadenza-fuzz: fork failed\n", .{});
            std.process.exit(2);
        };
        if (pid == 0) worker(o, shared, input, seen, restarts);
        var last_execs = shared.execs;
        var last_progress = nowMs();
        while (true) {
            std.Thread.sleep(50 * std.time.ns_per_ms);
            const now = nowMs();
            const r = posix.waitpid(pid, posix.W.NOHANG);
            if (r.pid == pid) {
                const st = r.status;
                const len: usize = @intCast(shared.input_len);
                if (posix.W.IFEXITED(st) and posix.W.EXITSTATUS(st) == 0) break :outer; // --runs reached
                var name_buf: [64]u8 = undefined;
                const name = hashName(&name_buf, "crash-", input[0..len]);
                saveFile(crash_dir, name, input[0..len]);
                crashes += 1;
                const how: u32 = if (posix.W.IFSIGNALED(st)) posix.W.TERMSIG(st) else posix.W.EXITSTATUS(st);
                std.debug.print("cadenza-fuzz: CRASH ({s} {d}) on a {d}-byte input, saved {s}/{s}\n", .{
                    if (posix.W.IFSIGNALED(st)) "signal" else "exit", how, len, crash_dir, name,
                });
                restarts += 1;
                if (now >= deadline) break :outer;
                continue :outer;
            }
            const execs = shared.execs;
            if (execs != last_execs) {
                last_execs = execs;
                last_progress = now;
            } else if (now - last_progress > @as(i64, @intCast(o.timeout_s)) * 1000) {
                posix.kill(pid, posix.SIG.KILL) catch {};
                _ = posix.waitpid(pid, 0);
                const len: usize = @intCast(shared.input_len);
                var name_buf: [64]u8 = undefined;
                const name = hashName(&name_buf, "hang-", input[0..len]);
                saveFile(hang_dir, name, input[0..len]);
                hangs += 1;
                std.debug.print("cadenza-fuzz: HANG (no progress for {d} s) on a {d}-byte input, saved {s}/{s}\n", .{ o.timeout_s, len, hang_dir, name });
                restarts += 1;
                if (now >= deadline) break :outer;
                continue :outer;
            }
            if (now - last_status >= 10_000) {
                last_status = now;
                printStatus(shared, seen, n_counters, now - start, crashes, hangs);
            }
            if (now >= deadline and o.runs == 0) {
                posix.kill(pid, posix.SIG.KILL) catch {};
                _ = posix.waitpid(pid, 0);
                break :outer;
            }
        }
    }
    const elapsed = nowMs() - start;
    printStatus(shared, seen, n_counters, elapsed, crashes, hangs);
    var covered: usize = 0;
    for (seen) |b| covered += @intFromBool(b != 0);
    std.debug.print("{{\"target\":\"{t}\",\"seconds\":{d:.1},\"execs\":{d},\"execs_per_s\":{d:.0},\"counters\":{d},\"covered\":{d},\"corpus\":{d},\"corpus_bytes\":{d},\"crashes\":{d},\"hangs\":{d},\"worker_restarts\":{d}}}\n", .{
        o.target,            @as(f64, @floatFromInt(elapsed)) / 1000,
        shared.execs,        @as(f64, @floatFromInt(shared.execs)) * 1000 / @as(f64, @floatFromInt(@max(1, elapsed))),
        n_counters,          covered,
        shared.corpus_count, shared.corpus_bytes,
        crashes,             hangs,
        restarts,
    });
    std.process.exit(if (crashes + hangs > 0) 1 else 0);
}

fn printStatus(shared: *volatile Shared, seen: []const u8, n: usize, ms: i64, crashes: u64, hangs: u64) void {
    var covered: usize = 0;
    for (seen) |b| covered += @intFromBool(b != 0);
    std.debug.print("cadenza-fuzz: {d:>6.0} s  execs {d}  ({d:.0}/s)  covered {d}/{d} counters  corpus {d}  crashes {d}  hangs {d}\n", .{
        @as(f64, @floatFromInt(ms)) / 1000,                                                  shared.execs,
        @as(f64, @floatFromInt(shared.execs)) * 1000 / @as(f64, @floatFromInt(@max(1, ms))), covered,
        n,                                                                                   shared.corpus_count,
        crashes,                                                                             hangs,
    });
}

// ---------------------------------------------------------------------------------------------
// The worker: corpus, mutation, coverage.

const Entry = struct { data: []u8 };

const Worker = struct {
    o: Options,
    shared: *volatile Shared,
    input: []u8,
    seen: []u8,
    rng: std.Random.DefaultPrng,
    corpus: std.ArrayList(Entry) = .empty,
    hashes: std.AutoHashMapUnmanaged(u64, void) = .empty,
    dict: std.ArrayList([]const u8) = .empty,
    corpus_dir: []const u8,
    cntrs: []u8,

    fn random(w: *Worker) std.Random {
        return w.rng.random();
    }

    /// Runs `len` bytes of the shared input buffer; true when it reached a new bucket.
    fn run(w: *Worker, len: usize) bool {
        w.shared.input_len = len;
        @memset(w.cntrs, 0);
        tracing = true;
        runTarget(w.o.target, w.input[0..len]);
        tracing = false;
        w.shared.execs += 1;
        return w.merge();
    }

    fn merge(w: *Worker) bool {
        var fresh = false;
        const V = @Vector(32, u8);
        const zero: V = @splat(0);
        var i: usize = 0;
        while (i + 32 <= w.cntrs.len) : (i += 32) {
            const v: V = w.cntrs[i..][0..32].*;
            if (@reduce(.Or, v != zero)) {
                for (i..i + 32) |k| fresh = w.bucket(k) or fresh;
            }
        }
        while (i < w.cntrs.len) : (i += 1) fresh = w.bucket(i) or fresh;
        return fresh;
    }

    inline fn bucket(w: *Worker, k: usize) bool {
        const c = w.cntrs[k];
        if (c == 0) return false;
        const bit: u8 = switch (c) {
            1 => 1,
            2 => 2,
            3 => 4,
            4...7 => 8,
            8...15 => 16,
            16...31 => 32,
            32...127 => 64,
            else => 128,
        };
        if (w.seen[k] & bit != 0) return false;
        w.seen[k] |= bit;
        return true;
    }

    fn add(w: *Worker, data: []const u8, write: bool) void {
        const h = std.hash.Wyhash.hash(0, data);
        const gop = w.hashes.getOrPut(gpa, h) catch @panic("out of memory");
        if (gop.found_existing) return;
        w.corpus.append(gpa, .{ .data = gpa.dupe(u8, data) catch @panic("out of memory") }) catch @panic("out of memory");
        w.shared.corpus_count = w.corpus.items.len;
        w.shared.corpus_bytes += data.len;
        if (write) {
            var name_buf: [40]u8 = undefined;
            saveFile(w.corpus_dir, hashName(&name_buf, "", data), data);
        }
    }

    fn loadDir(w: *Worker, path: []const u8, files: *std.ArrayList([]u8)) void {
        var dir = std.fs.cwd().openDir(path, .{ .iterate = true }) catch return;
        defer dir.close();
        var it = dir.iterate();
        while (it.next() catch null) |e| {
            if (e.kind != .file) continue;
            const data = dir.readFileAlloc(gpa, e.name, 64 << 20) catch continue;
            if (data.len > w.o.max_len) {
                gpa.free(data);
                continue;
            }
            files.append(gpa, data) catch @panic("out of memory");
        }
    }

    fn loadDict(w: *Worker, path: []const u8) void {
        const text = std.fs.cwd().readFileAlloc(gpa, path, 1 << 20) catch |err| {
            std.debug.print("cadenza-fuzz: cannot read dictionary {s}: {t}\n", .{ path, err });
            std.process.exit(2);
        };
        var lines = std.mem.splitScalar(u8, text, '\n');
        while (lines.next()) |line| {
            const t = std.mem.trim(u8, line, " \t\r");
            if (t.len == 0 or t[0] == '#') continue;
            const q0 = std.mem.indexOfScalar(u8, t, '"') orelse continue;
            const q1 = std.mem.lastIndexOfScalar(u8, t, '"') orelse continue;
            if (q1 <= q0) continue;
            const token = unescape(t[q0 + 1 .. q1]) orelse {
                std.debug.print("cadenza-fuzz: bad dictionary line: {s}\n", .{t});
                std.process.exit(2);
            };
            if (token.len > 0) w.dict.append(gpa, token) catch @panic("out of memory");
        }
    }

    fn mutate(w: *Worker, len0: usize) usize {
        const r = w.random();
        var len = len0;
        const buf = w.input;
        const max = w.o.max_len;
        const n = @as(usize, 1) << r.uintLessThan(u6, 4);
        for (0..n) |_| {
            if (len == 0) {
                buf[0] = r.int(u8);
                len = 1;
            }
            switch (r.uintLessThan(u32, 16)) {
                0 => buf[r.uintLessThan(usize, len)] ^= @as(u8, 1) << r.int(u3),
                1 => buf[r.uintLessThan(usize, len)] = r.int(u8),
                2, 3 => { // an interesting value, often at a word boundary
                    const values = [_]u32{ 0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 1023, 1024, 1025, 4095, 4096, 4097, 8192, 8193, 32767, 32768, 65535, 65536, 65537, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, 0x100000, 0x40000000 };
                    const v = values[r.uintLessThan(usize, values.len)];
                    const size: usize = if (r.boolean()) 4 else if (r.boolean()) 2 else 1;
                    if (len < size) continue;
                    var at = r.uintLessThan(usize, len - size + 1);
                    if (r.uintLessThan(u8, 4) != 0) at &= ~@as(usize, 3);
                    writeLe(buf[at..][0..size], v);
                },
                4 => { // a word plus or minus a little
                    if (len < 4) continue;
                    const at = r.uintLessThan(usize, len / 4) * 4;
                    const v = std.mem.readInt(u32, buf[at..][0..4], .little);
                    const d = r.uintLessThan(u32, 35) + 1;
                    std.mem.writeInt(u32, buf[at..][0..4], if (r.boolean()) v +% d else v -% d, .little);
                },
                5 => { // special float bits
                    if (len < 4) continue;
                    const values = [_]u32{ 0x7FC00000, 0x7F800000, 0xFF800000, 0x80000000, 0x7F7FFFFF, 0x00000001, 0x3F800000, 0xBF800000, 0x7F800001, 0x4B000000 };
                    const at = r.uintLessThan(usize, len / 4) * 4;
                    std.mem.writeInt(u32, buf[at..][0..4], values[r.uintLessThan(usize, values.len)], .little);
                },
                6 => { // insert bytes (random or one repeated)
                    const k = @min(r.uintLessThan(usize, 16) + 1, max - len);
                    if (k == 0) continue;
                    const at = r.uintLessThan(usize, len + 1);
                    std.mem.copyBackwards(u8, buf[at + k .. len + k], buf[at..len]);
                    const same = r.boolean();
                    const b = r.int(u8);
                    for (buf[at..][0..k]) |*x| x.* = if (same) b else r.int(u8);
                    len += k;
                },
                7 => { // delete a range, often whole words
                    if (len < 2) continue;
                    var k = @min(r.uintLessThan(usize, 16) + 1, len - 1);
                    if (r.boolean() and k >= 4) k &= ~@as(usize, 3);
                    const at = r.uintLessThan(usize, len - k + 1);
                    std.mem.copyForwards(u8, buf[at .. len - k], buf[at + k .. len]);
                    len -= k;
                },
                8 => { // duplicate a range (a layer record, a node, an edge)
                    const k = @min(r.uintLessThan(usize, @min(len, 128)) + 1, max - len);
                    if (k == 0 or k > len) continue;
                    const from = r.uintLessThan(usize, len - k + 1);
                    const at = r.uintLessThan(usize, len + 1);
                    var tmp: [128]u8 = undefined;
                    @memcpy(tmp[0..k], buf[from..][0..k]);
                    std.mem.copyBackwards(u8, buf[at + k .. len + k], buf[at..len]);
                    @memcpy(buf[at..][0..k], tmp[0..k]);
                    len += k;
                },
                9 => len = r.uintLessThan(usize, len) + 1, // truncate
                10, 11 => { // a dictionary token, written over or inserted
                    if (w.dict.items.len == 0) continue;
                    const tok = w.dict.items[r.uintLessThan(usize, w.dict.items.len)];
                    if (tok.len > max) continue;
                    if (r.boolean() and len + tok.len <= max) {
                        const at = r.uintLessThan(usize, len + 1);
                        std.mem.copyBackwards(u8, buf[at + tok.len .. len + tok.len], buf[at..len]);
                        @memcpy(buf[at..][0..tok.len], tok);
                        len += tok.len;
                    } else if (tok.len <= len) {
                        var at = r.uintLessThan(usize, len - tok.len + 1);
                        if (r.boolean()) at &= ~@as(usize, 3);
                        @memcpy(buf[at..][0..tok.len], tok);
                    }
                },
                12, 13 => { // a comparison operand: replace its partner where found, else anywhere
                    const slot = r.uintLessThan(usize, cmp_slots);
                    const size = cmp_size[slot];
                    if (size == 0 or len < size) continue;
                    const a = cmp_a[slot];
                    const b = cmp_b[slot];
                    const from, const to = if (r.boolean()) .{ a, b } else .{ b, a };
                    var pat: [8]u8 = undefined;
                    writeLe(pat[0..size], from);
                    var rep: [8]u8 = undefined;
                    writeLe(rep[0..size], to);
                    const begin = r.uintLessThan(usize, len);
                    const found = std.mem.indexOfPos(u8, buf[0..len], begin, pat[0..size]) orelse
                        std.mem.indexOf(u8, buf[0..begin], pat[0..size]);
                    const at = found orelse (r.uintLessThan(usize, len - size + 1) & ~@as(usize, if (size >= 4) 3 else 0));
                    @memcpy(buf[at..][0..size], rep[0..size]);
                },
                14 => { // splice: this entry's head, another's tail
                    const other = w.corpus.items[r.uintLessThan(usize, w.corpus.items.len)].data;
                    if (other.len < 2) continue;
                    const cut = r.uintLessThan(usize, len);
                    const from = r.uintLessThan(usize, other.len);
                    const k = @min(other.len - from, max - cut);
                    @memcpy(buf[cut..][0..k], other[from..][0..k]);
                    len = cut + k;
                },
                else => { // extend with zeros or copy a word elsewhere
                    if (r.boolean()) {
                        const k = @min(r.uintLessThan(usize, 64) + 1, max - len);
                        @memset(buf[len..][0..k], 0);
                        len += k;
                    } else if (len >= 8) {
                        const a = r.uintLessThan(usize, len / 4) * 4;
                        const b = r.uintLessThan(usize, len / 4) * 4;
                        std.mem.copyForwards(u8, buf[b..][0..4], buf[a..][0..4]);
                    }
                },
            }
            if (len == 0) len = 1;
        }
        return len;
    }
};

fn writeLe(dst: []u8, v: u64) void {
    for (dst, 0..) |*b, i| b.* = @truncate(v >> @intCast(8 * i));
}

fn unescape(s: []const u8) ?[]u8 {
    var out: std.ArrayList(u8) = .empty;
    var i: usize = 0;
    while (i < s.len) : (i += 1) {
        if (s[i] != '\\') {
            out.append(gpa, s[i]) catch return null;
            continue;
        }
        i += 1;
        if (i >= s.len) return null;
        switch (s[i]) {
            '\\', '"' => out.append(gpa, s[i]) catch return null,
            'x' => {
                if (i + 2 >= s.len) return null;
                const b = std.fmt.parseInt(u8, s[i + 1 .. i + 3], 16) catch return null;
                out.append(gpa, b) catch return null;
                i += 2;
            },
            else => return null,
        }
    }
    return out.items;
}

fn worker(o: Options, shared: *volatile Shared, input: []u8, seen: []u8, restarts: u64) noreturn {
    if (o.mem_mb > 0) {
        const bytes = o.mem_mb << 20;
        posix.setrlimit(.AS, .{ .cur = bytes, .max = bytes }) catch {};
    }
    var w: Worker = .{
        .o = o,
        .shared = shared,
        .input = input,
        .seen = seen,
        .rng = std.Random.DefaultPrng.init(o.seed *% 0x9E3779B97F4A7C15 +% restarts),
        .corpus_dir = std.fmt.allocPrint(gpa, "{s}/corpus", .{o.out}) catch unreachable,
        .cntrs = counters(),
    };
    if (o.dict) |d| w.loadDict(d);
    if (o.target == .graph) graphSetUp();
    shared.corpus_count = 0;
    shared.corpus_bytes = 0;
    // Seeds and earlier finds, each run once (a crash among them is reported like any other).
    var files: std.ArrayList([]u8) = .empty;
    for (o.corpus.items) |dir| w.loadDir(dir, &files);
    w.loadDir(w.corpus_dir, &files);
    for (files.items) |data| {
        @memcpy(input[0..data.len], data);
        _ = w.run(data.len);
        w.add(data, false);
    }
    if (w.corpus.items.len == 0) {
        input[0] = 0;
        _ = w.run(1);
        w.add(input[0..1], false);
    }
    const r = w.random();
    while (o.runs == 0 or shared.execs < o.runs) {
        // Newer entries (found later, deeper) a little more often than older ones.
        const n = w.corpus.items.len;
        const pick = if (r.boolean()) r.uintLessThan(usize, n) else n - 1 - @min(n - 1, r.uintLessThan(usize, @min(n, 64)));
        const src = w.corpus.items[pick].data;
        const len0 = @min(src.len, o.max_len);
        @memcpy(input[0..len0], src[0..len0]);
        const len = w.mutate(len0);
        if (w.run(len)) w.add(input[0..len], true);
    }
    std.process.exit(0);
}
