//! The C ABI (docs/DESIGN.md, "C ABI"): the library's only exported functions. Nothing here
//! trusts the caller: every pointer is checked for null (and f32 pointers for alignment),
//! every length against the model, and failures return a status with a message, never trap.
//! Handles are tokens from two fixed tables (zig/handles.zig), the library's only global
//! mutable state: a destroyed, stale or forged handle is status 4, never a read through it.
const std = @import("std");
const model = @import("model.zig");
const image = @import("image.zig");
const fpenv = @import("fpenv.zig");
const handles = @import("handles.zig");
const abi = @import("abi.zig");

const Model = model.Model;
const Diag = image.Diag;

pub const abi_version = model.abi_version;

pub const Status = abi.Status;
const backing = abi.backing;
const token = abi.token;
const fail = abi.fail;
const floats = abi.floats;
const writeInfo = abi.writeInfo;
const writeMessage = abi.writeMessage;

/// A failed safety check inside the library is a bug (caller input is checked before use):
/// say so on stderr and stop, without the stack-trace machinery, which would need
/// thread-local storage and libc symbols from the host process.
pub const panic = std.debug.FullPanic(struct {
    fn panic(msg: []const u8, first_trace_addr: ?usize) noreturn {
        _ = first_trace_addr;
        // wasm has no stderr: the trap reaches the host as a RuntimeError.
        if (comptime @import("builtin").os.tag == .windows) {
            for ([_][]const u8{ "cadenza: internal error: ", msg, "\n" }) |part| {
                std.fs.File.stderr().writeAll(part) catch {};
            }
        } else if (comptime !@import("builtin").cpu.arch.isWasm()) {
            for ([_][]const u8{ "cadenza: internal error: ", msg, "\n" }) |part| {
                _ = std.posix.write(std.posix.STDERR_FILENO, part) catch {};
            }
        }
        @trap();
    }
}.panic);

const invalid_handle_message = "invalid handle: null, destroyed, or not from cz_model_create";

/// The most models and graphs alive at once (each slot is one cache line: 1 MiB and 64 KiB).
pub const models_max = 16384;
pub const graphs_max = 1024;

/// Every live model and graph, by handle (see handles.zig for why these are global).
var models: handles.Table(Model, models_max, .model) = .{};
var graphs: handles.Table(Graph, graphs_max, .graph) = .{};

pub export fn cz_abi_version() u32 {
    return abi_version;
}

/// On success writes the handle to `handle_out` (8 bytes, any alignment) and an empty
/// message to err_buf; on failure writes 0 and the message (NUL-terminated, cut to fit).
pub export fn cz_model_create(
    image_ptr: ?[*]const u8,
    image_len: usize,
    handle_out: ?*anyopaque,
    err_buf: ?[*]u8,
    err_len: usize,
) u32 {
    var diag: Diag = .{};
    const status = create(image_ptr, image_len, handle_out, &diag);
    _ = writeMessage(err_buf, err_len, diag.message());
    return @intFromEnum(status);
}

fn create(image_ptr: ?[*]const u8, image_len: usize, handle_out: ?*anyopaque, diag: *Diag) Status {
    const out: *align(1) u64 = @ptrCast(handle_out orelse {
        diag.set("cz_model_create: handle_out is null", .{});
        return .bad_argument;
    });
    out.* = 0;
    const ptr = image_ptr orelse {
        diag.set("cz_model_create: image is null", .{});
        return .bad_argument;
    };
    const m = Model.create(backing, ptr[0..image_len], diag) catch |err| return statusOf(err);
    out.* = models.insert(m) orelse {
        m.destroy();
        diag.set("cz_model_create: {d} models are live, the most the library holds at once; " ++
            "destroy one first", .{models_max});
        return .limit;
    };
    return .ok;
}

/// A null, destroyed or foreign handle is ignored. The handle is retired before the memory
/// goes back, so every later call with it is status 4.
pub export fn cz_model_destroy(handle: ?*anyopaque) void {
    const m = models.remove(token(handle)) orelse return;
    m.destroy();
}

/// Writes min(out_len, 11) u64 fields (any alignment); see model.Model.info.
pub export fn cz_model_info(handle: ?*anyopaque, out: ?*anyopaque, out_len: usize) u32 {
    const m = live(handle) orelse return @intFromEnum(Status.bad_handle);
    return writeInfo(&m.diag, "cz_model_info", out, out_len, &m.info());
}

pub export fn cz_forward(
    handle: ?*anyopaque,
    in: ?*const anyopaque,
    in_len: usize,
    out: ?*anyopaque,
    out_len: usize,
) u32 {
    const m = live(handle) orelse return @intFromEnum(Status.bad_handle);
    const io = rows(m, "cz_forward", in, in_len, out, out_len, 1) catch {
        return @intFromEnum(Status.bad_argument);
    };
    return compute(Model.forward, .{ m, io.x, io.y });
}

pub export fn cz_forward_batch(
    handle: ?*anyopaque,
    in: ?*const anyopaque,
    in_len: usize,
    batch: u32,
    out: ?*anyopaque,
    out_len: usize,
) u32 {
    const m = live(handle) orelse return @intFromEnum(Status.bad_handle);
    if (batch == 0 or batch > m.max_batch) {
        return fail(&m.diag, .bad_argument, "cz_forward_batch: batch is {d}, expected 1..{d} " ++
            "(max_batch)", .{ batch, m.max_batch });
    }
    const io = rows(m, "cz_forward_batch", in, in_len, out, out_len, batch) catch {
        return @intFromEnum(Status.bad_argument);
    };
    return compute(Model.forwardBatch, .{ m, io.x, io.y, batch });
}

/// `steps` steps of the model in one call, exactly as `steps` calls of cz_forward (state
/// carried from each to the next): `in_len == input_size * steps`, `out_len >= output_size *
/// steps`. `out` may start at `in` (in-place processing) when output_size <= input_size; any
/// other overlap would overwrite inputs not yet read and is status 1.
pub export fn cz_process(
    handle: ?*anyopaque,
    in: ?*const anyopaque,
    in_len: usize,
    steps: u32,
    out: ?*anyopaque,
    out_len: usize,
) u32 {
    const m = live(handle) orelse return @intFromEnum(Status.bad_handle);
    const io = blocks(m, in, in_len, steps, out, out_len) catch {
        return @intFromEnum(Status.bad_argument);
    };
    return compute(Model.process, .{ m, io.x, io.y, steps });
}

/// Checks cz_process's buffers: lengths for `steps` rows, and an overlap only where step t's
/// output ends before step t + 1's input starts.
fn blocks(
    m: *Model,
    in: ?*const anyopaque,
    in_len: usize,
    steps: u32,
    out: ?*anyopaque,
    out_len: usize,
) error{BadArgument}!Rows {
    const name = "cz_process";
    if (steps == 0) return m.diag.fail(error.BadArgument, name ++ ": steps is 0, expected >= 1", .{});
    const x = try floats(&m.diag, name ++ ": in", in);
    const y = try floats(&m.diag, name ++ ": out", out);
    const in_expected = std.math.mul(usize, m.input_size, steps) catch std.math.maxInt(usize);
    const out_expected = std.math.mul(usize, m.output_size, steps) catch std.math.maxInt(usize);
    if (in_len != in_expected) {
        return m.diag.fail(error.BadArgument, name ++ ": in_len is {d}, expected {d} " ++
            "(input_size {d} x steps {d})", .{ in_len, in_expected, m.input_size, steps });
    }
    if (out_len < out_expected) {
        return m.diag.fail(error.BadArgument, name ++ ": out_len is {d}, expected at least {d} " ++
            "(output_size {d} x steps {d})", .{ out_len, out_expected, m.output_size, steps });
    }
    const x0 = @intFromPtr(x);
    const y0 = @intFromPtr(y);
    const apart = x0 >= y0 + out_expected * 4 or y0 >= x0 + in_expected * 4;
    if (!apart and !(y0 <= x0 and m.output_size <= m.input_size)) {
        return m.diag.fail(error.BadArgument, name ++ ": out overlaps in where a step would " ++
            "overwrite a later step's input (out may start at in, or at or before it, when " ++
            "output_size {d} <= input_size {d})", .{ m.output_size, m.input_size });
    }
    return .{ .x = x[0..in_expected], .y = @constCast(y)[0..out_expected] };
}

pub export fn cz_reset(handle: ?*anyopaque) u32 {
    const m = live(handle) orelse return @intFromEnum(Status.bad_handle);
    m.reset();
    return @intFromEnum(Status.ok);
}

/// Copies the handle's last error message (or why the handle is invalid) into buf,
/// NUL-terminated and cut to fit; returns the bytes written before the NUL.
pub export fn cz_last_error(handle: ?*anyopaque, buf: ?[*]u8, buf_len: usize) usize {
    const msg = if (live(handle)) |m| m.diag.message() else invalid_handle_message;
    return writeMessage(buf, buf_len, msg);
}

/// The live model behind a handle, or null for a null, destroyed, stale or forged one: the
/// one lookup every export that takes a model handle starts with.
pub fn live(handle: ?*anyopaque) ?*Model {
    return models.get(token(handle));
}

// A token takes 52 bits on 64-bit targets and 32 on wasm32 (handles.zig): pointer-sized.

/// Live models now (for tests).
pub fn liveModelCount() u32 {
    return models.liveCount();
}

/// Runs a compute call, `f` on `args`, with subnormals flushed and the caller's floating-point
/// state restored after (see fpenv.zig); returns status ok.
inline fn compute(comptime f: anytype, args: anytype) u32 {
    const env = fpenv.enterNoSubnormals();
    defer fpenv.leave(env);
    @call(.auto, f, args);
    return @intFromEnum(Status.ok);
}

const statusOf = abi.statusOf;

const Rows = struct { x: []const f32, y: []f32 };

/// Checks the input and output buffers of a forward call against the model.
fn rows(
    m: *Model,
    comptime name: []const u8,
    in: ?*const anyopaque,
    in_len: usize,
    out: ?*anyopaque,
    out_len: usize,
    batch: u32,
) error{BadArgument}!Rows {
    const in_expected = @as(usize, m.input_size) * batch;
    const out_expected = @as(usize, m.output_size) * batch;
    const x = try floats(&m.diag, name ++ ": in", in);
    const y = try floats(&m.diag, name ++ ": out", out);
    if (in_len != in_expected) {
        return m.diag.fail(error.BadArgument, name ++ ": in_len is {d}, expected {d} " ++
            "(input_size {d} x batch {d})", .{ in_len, in_expected, m.input_size, batch });
    }
    if (out_len < out_expected) {
        return m.diag.fail(error.BadArgument, name ++ ": out_len is {d}, expected at least {d} " ++
            "(output_size {d} x batch {d})", .{ out_len, out_expected, m.output_size, batch });
    }
    return .{ .x = x[0..in_expected], .y = @constCast(y)[0..out_expected] };
}

test {
    _ = @import("test.zig");
    _ = @import("fpenv.zig");
    _ = @import("handles.zig");
}

// The native graph (docs/DESIGN.md, "Native graph"): a pipeline step in one call.

const graph = @import("graph.zig");
const Graph = graph.Graph;

const invalid_graph_message = "invalid graph: null, destroyed, or not from cz_graph_create";

/// Validates the description (`desc_len` u32 words, any alignment) against `handle_count`
/// model handles (u64 each, any alignment; node records name them by index) and writes the
/// graph to `graph_out` (8 bytes, any alignment), or 0 and a message to err_buf.
pub export fn cz_graph_create(
    desc_ptr: ?*const anyopaque,
    desc_len: usize,
    handles_ptr: ?*const anyopaque,
    handle_count: usize,
    graph_out: ?*anyopaque,
    err_buf: ?[*]u8,
    err_len: usize,
) u32 {
    var diag: Diag = .{};
    const status = createGraph(desc_ptr, desc_len, handles_ptr, handle_count, graph_out, &diag);
    _ = writeMessage(err_buf, err_len, diag.message());
    return @intFromEnum(status);
}

fn createGraph(
    desc_ptr: ?*const anyopaque,
    desc_len: usize,
    handles_ptr: ?*const anyopaque,
    handle_count: usize,
    graph_out: ?*anyopaque,
    diag: *Diag,
) Status {
    const out: *align(1) u64 = @ptrCast(graph_out orelse {
        diag.set("cz_graph_create: graph_out is null", .{});
        return .bad_argument;
    });
    out.* = 0;
    const words: [*]align(1) const u32 = @ptrCast(desc_ptr orelse {
        diag.set("cz_graph_create: desc is null", .{});
        return .bad_argument;
    });
    var members: [graph.node_count_max]*Model = undefined;
    const n = memberModels(handles_ptr, handle_count, &members, diag) catch |err| {
        return statusOf(err);
    };
    const g = Graph.create(backing, words[0..desc_len], members[0..n], diag) catch |err| {
        return statusOf(err);
    };
    // The handle of each node's model, which every call checks is still live.
    const given: [*]align(1) const u64 = @ptrCast(handles_ptr.?);
    for (g.nodes, g.member_handles[0..g.nodes.len]) |*node, *h| {
        const i = std.mem.indexOfScalar(*Model, members[0..n], node.model).?;
        h.* = given[i];
    }
    out.* = graphs.insert(g) orelse {
        g.destroy();
        diag.set("cz_graph_create: {d} graphs are live, the most the library holds at once; " ++
            "destroy one first", .{graphs_max});
        return .limit;
    };
    return .ok;
}

/// Resolves the handles to live, distinct models.
fn memberModels(
    handles_ptr: ?*const anyopaque,
    handle_count: usize,
    members: *[graph.node_count_max]*Model,
    diag: *Diag,
) (graph.Error || error{BadHandle})!usize {
    const given: [*]align(1) const u64 = @ptrCast(handles_ptr orelse {
        return diag.fail(error.BadArgument, "cz_graph_create: handles is null", .{});
    });
    if (handle_count == 0 or handle_count > graph.node_count_max) {
        const err = if (handle_count == 0) error.BadArgument else error.Limit;
        return diag.fail(err, "cz_graph_create: handle_count is {d}, expected 1..{d}", .{
            handle_count, graph.node_count_max,
        });
    }
    for (given[0..handle_count], 0..) |h, i| {
        members[i] = models.get(h) orelse {
            return diag.fail(error.BadHandle, "cz_graph_create: handle {d} (0x{x}) is not a " ++
                "live model", .{ i, h });
        };
        for (members[0..i], 0..) |other, j| if (other == members[i]) {
            return diag.fail(error.BadArgument, "cz_graph_create: handles {d} and {d} are the " ++
                "same model; each node needs its own", .{ j, i });
        };
    }
    return handle_count;
}

/// A null, destroyed or foreign graph is ignored; the member models stay loaded.
pub export fn cz_graph_destroy(handle: ?*anyopaque) void {
    const g = graphs.remove(token(handle)) orelse return;
    g.destroy();
}

/// Writes min(out_len, 7) u64 fields (any alignment); see graph.Graph.info.
pub export fn cz_graph_info(handle: ?*anyopaque, out: ?*anyopaque, out_len: usize) u32 {
    const g = liveGraph(handle) orelse return @intFromEnum(Status.bad_handle);
    return writeInfo(&g.diag, "cz_graph_info", out, out_len, &g.info());
}

/// One step of every node from the graph input (`in_len` == input_size); `out` receives every
/// node's output, concatenated in node order (`out_len` >= their sum).
pub export fn cz_graph_step(
    handle: ?*anyopaque,
    in: ?*const anyopaque,
    in_len: usize,
    out: ?*anyopaque,
    out_len: usize,
) u32 {
    const g = liveGraph(handle) orelse return @intFromEnum(Status.bad_handle);
    if (staleMember(g, "cz_graph_step")) |status| return status;
    const io = graphIo(g, "cz_graph_step", in, in_len, g.input_size, out, out_len) catch {
        return @intFromEnum(Status.bad_argument);
    };
    return compute(Graph.step, .{ g, io.x, io.y });
}

/// Sets node `node`'s output to `in` (`in_len` == its output size; its model does not run)
/// and runs only the nodes downstream of it; `out` as for cz_graph_step. Refused when a node
/// downstream reads the graph input: cz_graph_step_from_input supplies it.
pub export fn cz_graph_step_from(
    handle: ?*anyopaque,
    node: u32,
    in: ?*const anyopaque,
    in_len: usize,
    out: ?*anyopaque,
    out_len: usize,
) u32 {
    return stepFrom("cz_graph_step_from", handle, node, in, in_len, null, out, out_len);
}

/// cz_graph_step_from with the graph input `x` (`x_len` == input_size) for the nodes
/// downstream that read it (e.g. a context slice beside the node being set).
pub export fn cz_graph_step_from_input(
    handle: ?*anyopaque,
    node: u32,
    in: ?*const anyopaque,
    in_len: usize,
    x: ?*const anyopaque,
    x_len: usize,
    out: ?*anyopaque,
    out_len: usize,
) u32 {
    const name = "cz_graph_step_from_input";
    const g = liveGraph(handle) orelse return @intFromEnum(Status.bad_handle);
    const graph_input = floats(&g.diag, name ++ ": x", x) catch {
        return @intFromEnum(Status.bad_argument);
    };
    if (x_len != g.input_size) {
        return fail(&g.diag, .bad_argument, name ++ ": x_len is {d}, expected {d} (the graph " ++
            "input)", .{ x_len, g.input_size });
    }
    return stepFrom(name, handle, node, in, in_len, graph_input[0..x_len], out, out_len);
}

fn stepFrom(
    comptime name: []const u8,
    handle: ?*anyopaque,
    node: u32,
    in: ?*const anyopaque,
    in_len: usize,
    x: ?[]const f32,
    out: ?*anyopaque,
    out_len: usize,
) u32 {
    const g = liveGraph(handle) orelse return @intFromEnum(Status.bad_handle);
    if (staleMember(g, name)) |status| return status;
    if (node >= g.nodes.len) {
        return fail(&g.diag, .bad_argument, name ++ ": node {d}, expected 0..{d}", .{
            node, g.nodes.len - 1,
        });
    }
    if (x == null and g.nodes[node].downstream_reads_input) {
        return fail(&g.diag, .bad_argument, name ++ ": a node downstream of node " ++
            "{d} reads the graph input (use cz_graph_step_from_input)", .{node});
    }
    const width = g.nodes[node].out_len;
    const io = graphIo(g, name, in, in_len, width, out, out_len) catch {
        return @intFromEnum(Status.bad_argument);
    };
    return compute(Graph.stepFrom, .{ g, node, io.x, x orelse &.{}, io.y });
}

/// Resets every member model's state and zeroes every node output.
pub export fn cz_graph_reset(handle: ?*anyopaque) u32 {
    const g = liveGraph(handle) orelse return @intFromEnum(Status.bad_handle);
    if (staleMember(g, "cz_graph_reset")) |status| return status;
    g.reset();
    return @intFromEnum(Status.ok);
}

/// Writes min(out_len, node_count) f64 values (any alignment): the nanoseconds each node took
/// in the graph's last step or step_from, in node order (0 for a node step_from did not run,
/// and for every node before the first step).
pub export fn cz_graph_node_ns(handle: ?*anyopaque, out: ?*anyopaque, out_len: usize) u32 {
    const g = liveGraph(handle) orelse return @intFromEnum(Status.bad_handle);
    const dst: [*]align(1) f64 = @ptrCast(out orelse {
        return fail(&g.diag, .bad_argument, "cz_graph_node_ns: out is null", .{});
    });
    if (out_len == 0) {
        return fail(&g.diag, .bad_argument, "cz_graph_node_ns: out_len is 0, expected at " ++
            "least 1", .{});
    }
    const n = @min(out_len, g.node_ns.len);
    for (dst[0..n], g.node_ns[0..n]) |*d, v| d.* = v;
    return @intFromEnum(Status.ok);
}

/// Prefetches every member model's memory into the caches (graph.Graph.prefetch) and writes
/// the bytes covered to `bytes_out` (8 bytes, any alignment; may be null).
pub export fn cz_graph_prefetch(handle: ?*anyopaque, bytes_out: ?*anyopaque) u32 {
    const g = liveGraph(handle) orelse return @intFromEnum(Status.bad_handle);
    if (staleMember(g, "cz_graph_prefetch")) |status| return status;
    const bytes = g.prefetch();
    if (bytes_out) |out| @as(*align(1) u64, @ptrCast(out)).* = bytes;
    return @intFromEnum(Status.ok);
}

/// As cz_last_error, for a graph.
pub export fn cz_graph_last_error(handle: ?*anyopaque, buf: ?[*]u8, buf_len: usize) usize {
    const msg = if (liveGraph(handle)) |g| g.diag.message() else invalid_graph_message;
    return writeMessage(buf, buf_len, msg);
}

/// Status 4 (with the message in the graph's diag) when a member model was destroyed while
/// the graph lives: each node's handle is looked up before any member's memory is touched (a
/// load and two compares per node).
fn staleMember(g: *Graph, comptime name: []const u8) ?u32 {
    for (g.nodes, g.member_handles[0..g.nodes.len], 0..) |*node, h, i| {
        if (models.get(h) == node.model) continue;
        return fail(&g.diag, .bad_handle, name ++ ": node {d}'s model was destroyed while " ++
            "the graph lives; destroy the graph before its models", .{i});
    }
    return null;
}

/// The live graph behind a handle, or null (as `live` for models).
pub fn liveGraph(handle: ?*anyopaque) ?*Graph {
    return graphs.get(token(handle));
}

/// Checks a graph call's buffers: `in_len` must be `in_expected`, `out_len` at least the
/// graph's total output, both pointers non-null and 4-byte aligned.
fn graphIo(
    g: *Graph,
    comptime name: []const u8,
    in: ?*const anyopaque,
    in_len: usize,
    in_expected: usize,
    out: ?*anyopaque,
    out_len: usize,
) error{BadArgument}!Rows {
    const x = try floats(&g.diag, name ++ ": in", in);
    const y = try floats(&g.diag, name ++ ": out", out);
    if (in_len != in_expected) {
        return g.diag.fail(error.BadArgument, name ++ ": in_len is {d}, expected {d}", .{
            in_len, in_expected,
        });
    }
    if (out_len < g.outs.len) {
        return g.diag.fail(error.BadArgument, name ++ ": out_len is {d}, expected at least " ++
            "{d} (every node's output)", .{ out_len, g.outs.len });
    }
    return .{ .x = x[0..in_expected], .y = @constCast(y)[0..g.outs.len] };
}

test {
    _ = @import("graph.zig");
}

// The training ABI (docs/DESIGN.md, "Training ABI"): its exports live in zig/train/api.zig.
// The wasm build leaves it out (its engine uses threads and 64-bit sizes): training runs on
// the native library only.
comptime {
    if (!@import("builtin").cpu.arch.isWasm()) _ = @import("train/api.zig");
    if (@import("builtin").cpu.arch.isWasm()) _ = @import("wasm.zig");
}

test {
    _ = @import("train/api.zig");
}
