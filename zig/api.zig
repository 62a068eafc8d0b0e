//! The C ABI (docs/DESIGN.md, "C ABI"): the library's only exported functions. Nothing here
//! trusts the caller: every pointer is checked for null (and f32 pointers for alignment),
//! every length against the model, and failures return a status with a message, never trap.
//! No global mutable state: Workers share one loaded library, each with its own handles.
const std = @import("std");
const model = @import("model.zig");
const image = @import("image.zig");
const fpenv = @import("fpenv.zig");

const Model = model.Model;
const Diag = image.Diag;

pub const abi_version = model.abi_version;

pub const Status = enum(u32) {
    ok = 0,
    bad_argument = 1,
    bad_image = 2,
    out_of_memory = 3,
    bad_handle = 4,
    limit = 5,
};

/// Stateless and lock-free: safe from any thread without shared bookkeeping.
const backing = std.heap.page_allocator;

/// A failed safety check inside the library is a bug (caller input is checked before use):
/// say so on stderr and stop, without the stack-trace machinery, which would need
/// thread-local storage and libc symbols from the host process.
pub const panic = std.debug.FullPanic(struct {
    fn panic(msg: []const u8, first_trace_addr: ?usize) noreturn {
        _ = first_trace_addr;
        for ([_][]const u8{ "cadenza: internal error: ", msg, "\n" }) |part| {
            _ = std.posix.write(std.posix.STDERR_FILENO, part) catch {};
        }
        @trap();
    }
}.panic);

const invalid_handle_message = "invalid handle: null, destroyed, or not from cz_model_create";

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
    out.* = @intFromPtr(m);
    return .ok;
}

/// A null, destroyed or foreign handle is ignored.
pub export fn cz_model_destroy(handle: ?*anyopaque) void {
    const m = live(handle) orelse return;
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

/// The model behind a handle, or null (see liveAs).
fn live(handle: ?*anyopaque) ?*Model {
    return liveAs(Model, model.magic_live, handle);
}

/// The object (a Model or a Graph) behind a handle, if the handle is non-null, aligned and
/// its magic word is `magic_live`.
fn liveAs(comptime T: type, magic_live: u64, handle: ?*anyopaque) ?*T {
    const p = handle orelse return null;
    if (@intFromPtr(p) % @alignOf(T) != 0) return null;
    const object: *T = @ptrCast(@alignCast(p));
    if (object.magic != magic_live) return null;
    return object;
}

/// Runs a compute call, `f` on `args`, with subnormals flushed and the caller's floating-point
/// state restored after (see fpenv.zig); returns status ok.
inline fn compute(comptime f: anytype, args: anytype) u32 {
    const env = fpenv.enterNoSubnormals();
    defer fpenv.leave(env);
    @call(.auto, f, args);
    return @intFromEnum(Status.ok);
}

/// Keeps a failed call's message in the handle's `diag` (a model's or a graph's).
fn fail(diag: *Diag, status: Status, comptime fmt: []const u8, args: anytype) u32 {
    diag.set(fmt, args);
    return @intFromEnum(status);
}

fn statusOf(err: (image.Error || graph.Error || error{BadHandle})) Status {
    return switch (err) {
        error.BadArgument => .bad_argument,
        error.BadImage => .bad_image,
        error.OutOfMemory => .out_of_memory,
        error.BadHandle => .bad_handle,
        error.Limit => .limit,
    };
}

/// Copies min(out_len, fields.len) info fields to `out` (u64 each, any alignment).
fn writeInfo(
    diag: *Diag,
    comptime name: []const u8,
    out: ?*anyopaque,
    out_len: usize,
    fields: []const u64,
) u32 {
    const dst: [*]align(1) u64 = @ptrCast(out orelse {
        return fail(diag, .bad_argument, name ++ ": out is null", .{});
    });
    if (out_len == 0) {
        return fail(diag, .bad_argument, name ++ ": out_len is 0, expected at least 1", .{});
    }
    const n = @min(out_len, fields.len);
    for (dst[0..n], fields[0..n]) |*d, f| d.* = f;
    return @intFromEnum(Status.ok);
}

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

/// A call's f32 pointer, non-null and 4-byte aligned; else the message goes to `diag`.
fn floats(
    diag: *Diag,
    comptime label: []const u8,
    ptr: ?*const anyopaque,
) error{BadArgument}![*]const f32 {
    const p = ptr orelse return diag.fail(error.BadArgument, label ++ " is null", .{});
    const address = @intFromPtr(p);
    if (address % @alignOf(f32) != 0) {
        return diag.fail(error.BadArgument, label ++ " is not 4-byte aligned (address 0x{x})", .{
            address,
        });
    }
    return @ptrCast(@alignCast(p));
}

/// Writes msg NUL-terminated into buf, cut to buf_len - 1 bytes; returns the bytes before
/// the NUL. A null buf or zero length writes nothing.
fn writeMessage(buf: ?[*]u8, buf_len: usize, msg: []const u8) usize {
    const dst = buf orelse return 0;
    if (buf_len == 0) return 0;
    const n = @min(msg.len, buf_len - 1);
    @memcpy(dst[0..n], msg[0..n]);
    dst[n] = 0;
    return n;
}

test {
    _ = @import("test.zig");
    _ = @import("fpenv.zig");
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
    var models: [graph.node_count_max]*Model = undefined;
    const n = memberModels(handles_ptr, handle_count, &models, diag) catch |err| {
        return statusOf(err);
    };
    const g = Graph.create(backing, words[0..desc_len], models[0..n], diag) catch |err| {
        return statusOf(err);
    };
    out.* = @intFromPtr(g);
    return .ok;
}

/// Resolves the handles to live, distinct models.
fn memberModels(
    handles_ptr: ?*const anyopaque,
    handle_count: usize,
    models: *[graph.node_count_max]*Model,
    diag: *Diag,
) (graph.Error || error{BadHandle})!usize {
    const handles: [*]align(1) const u64 = @ptrCast(handles_ptr orelse {
        return diag.fail(error.BadArgument, "cz_graph_create: handles is null", .{});
    });
    if (handle_count == 0 or handle_count > graph.node_count_max) {
        const err = if (handle_count == 0) error.BadArgument else error.Limit;
        return diag.fail(err, "cz_graph_create: handle_count is {d}, expected 1..{d}", .{
            handle_count, graph.node_count_max,
        });
    }
    for (handles[0..handle_count], 0..) |h, i| {
        const address = std.math.cast(usize, h) orelse 0;
        models[i] = live(@ptrFromInt(address)) orelse {
            return diag.fail(error.BadHandle, "cz_graph_create: handle {d} (0x{x}) is not a " ++
                "live model", .{ i, h });
        };
        for (models[0..i], 0..) |other, j| if (other == models[i]) {
            return diag.fail(error.BadArgument, "cz_graph_create: handles {d} and {d} are the " ++
                "same model; each node needs its own", .{ j, i });
        };
    }
    return handle_count;
}

/// A null, destroyed or foreign graph is ignored; the member models stay loaded.
pub export fn cz_graph_destroy(handle: ?*anyopaque) void {
    const g = liveGraph(handle) orelse return;
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
/// and runs only the nodes downstream of it; `out` as for cz_graph_step.
pub export fn cz_graph_step_from(
    handle: ?*anyopaque,
    node: u32,
    in: ?*const anyopaque,
    in_len: usize,
    out: ?*anyopaque,
    out_len: usize,
) u32 {
    const g = liveGraph(handle) orelse return @intFromEnum(Status.bad_handle);
    if (staleMember(g, "cz_graph_step_from")) |status| return status;
    if (node >= g.nodes.len) {
        return fail(&g.diag, .bad_argument, "cz_graph_step_from: node {d}, expected 0..{d}", .{
            node, g.nodes.len - 1,
        });
    }
    if (g.nodes[node].downstream_reads_input) {
        return fail(&g.diag, .bad_argument, "cz_graph_step_from: a node downstream of node " ++
            "{d} reads the graph input", .{node});
    }
    const width = g.nodes[node].out_len;
    const io = graphIo(g, "cz_graph_step_from", in, in_len, width, out, out_len) catch {
        return @intFromEnum(Status.bad_argument);
    };
    return compute(Graph.stepFrom, .{ g, node, io.x, io.y });
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
/// the graph lives and its memory is still mapped or holds another model; a few compares per
/// node. (Unmapped memory faults on the read: the caller must destroy the graph first.)
fn staleMember(g: *Graph, comptime name: []const u8) ?u32 {
    const node = g.staleNode() orelse return null;
    return fail(&g.diag, .bad_handle, name ++ ": node {d}'s model was destroyed or replaced " ++
        "while the graph lives; destroy the graph before its models", .{node});
}

/// The graph behind a handle, or null (see liveAs).
fn liveGraph(handle: ?*anyopaque) ?*Graph {
    return liveAs(Graph, graph.magic_live, handle);
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
