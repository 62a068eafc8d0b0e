//! The C ABI (docs/DESIGN.md, "C ABI"): the library's only exported functions. Nothing here
//! trusts the caller: every pointer is checked for null (and f32 pointers for alignment),
//! every length against the model, and failures return a status with a message, never trap.
//! No global mutable state: Workers share one loaded library, each with its own handles.
const std = @import("std");
const model = @import("model.zig");
const image = @import("image.zig");

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
    const m = Model.create(backing, ptr[0..image_len], diag) catch |err| return switch (err) {
        error.BadImage => .bad_image,
        error.Limit => .limit,
        error.OutOfMemory => .out_of_memory,
    };
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
    const dst: [*]align(1) u64 = @ptrCast(out orelse {
        return fail(m, .bad_argument, "cz_model_info: out is null", .{});
    });
    if (out_len == 0) {
        return fail(m, .bad_argument, "cz_model_info: out_len is 0, expected at least 1", .{});
    }
    const fields = m.info();
    const n = @min(out_len, fields.len);
    for (dst[0..n], fields[0..n]) |*d, f| d.* = f;
    return @intFromEnum(Status.ok);
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
    m.forward(io.x, io.y);
    return @intFromEnum(Status.ok);
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
        return fail(m, .bad_argument, "cz_forward_batch: batch is {d}, expected 1..{d} " ++
            "(max_batch)", .{ batch, m.max_batch });
    }
    const io = rows(m, "cz_forward_batch", in, in_len, out, out_len, batch) catch {
        return @intFromEnum(Status.bad_argument);
    };
    m.forwardBatch(io.x, io.y, batch);
    return @intFromEnum(Status.ok);
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

/// The model behind a handle, if it is non-null, aligned and carries the live magic word.
fn live(handle: ?*anyopaque) ?*Model {
    const p = handle orelse return null;
    if (@intFromPtr(p) % @alignOf(Model) != 0) return null;
    const m: *Model = @ptrCast(@alignCast(p));
    if (m.magic != model.magic_live) return null;
    return m;
}

fn fail(m: *Model, status: Status, comptime fmt: []const u8, args: anytype) u32 {
    m.diag.set(fmt, args);
    return @intFromEnum(status);
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
    const x = try floats(m, name ++ ": in", in);
    const y = try floats(m, name ++ ": out", out);
    if (in_len != in_expected) {
        _ = fail(m, .bad_argument, name ++ ": in_len is {d}, expected {d} " ++
            "(input_size {d} x batch {d})", .{ in_len, in_expected, m.input_size, batch });
        return error.BadArgument;
    }
    if (out_len < out_expected) {
        _ = fail(m, .bad_argument, name ++ ": out_len is {d}, expected at least {d} " ++
            "(output_size {d} x batch {d})", .{ out_len, out_expected, m.output_size, batch });
        return error.BadArgument;
    }
    return .{ .x = x[0..in_expected], .y = @constCast(y)[0..out_expected] };
}

fn floats(
    m: *Model,
    comptime label: []const u8,
    ptr: ?*const anyopaque,
) error{BadArgument}![*]const f32 {
    const p = ptr orelse {
        _ = fail(m, .bad_argument, label ++ " is null", .{});
        return error.BadArgument;
    };
    if (@intFromPtr(p) % @alignOf(f32) != 0) {
        const address = @intFromPtr(p);
        _ = fail(m, .bad_argument, label ++ " is not 4-byte aligned (address 0x{x})", .{address});
        return error.BadArgument;
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
}
