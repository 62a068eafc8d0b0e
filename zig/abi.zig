//! What the two C ABI files (zig/api.zig: models and graphs; zig/train/api.zig: trainers)
//! share: the status codes, the allocator, the argument checks and the message copy. Nothing
//! here keeps state.
const std = @import("std");
const image = @import("image.zig");

const Diag = image.Diag;

pub const Status = enum(u32) {
    ok = 0,
    bad_argument = 1,
    bad_image = 2,
    out_of_memory = 3,
    bad_handle = 4,
    limit = 5,
};

/// Every error a create or a call can end in; each module's own error set is a subset.
pub const Error = error{ BadArgument, BadImage, OutOfMemory, BadHandle, Limit };

pub fn statusOf(err: Error) Status {
    return switch (err) {
        error.BadArgument => .bad_argument,
        error.BadImage => .bad_image,
        error.OutOfMemory => .out_of_memory,
        error.BadHandle => .bad_handle,
        error.Limit => .limit,
    };
}

pub fn code(err: Error) u32 {
    return @intFromEnum(statusOf(err));
}

/// Stateless and lock-free: safe from any thread without shared bookkeeping
/// (page_allocator). Under `zig build test` the leak-checking testing allocator, so that every
/// test that goes through the C ABI fails on a model, graph or trainer it created and did not
/// free.
pub const backing = if (@import("builtin").is_test) std.testing.allocator else std.heap.page_allocator;

/// The handle as the token create wrote (a pointer-sized integer, not an address).
pub fn token(handle: ?*anyopaque) u64 {
    return @intFromPtr(handle);
}

/// Keeps a failed call's message in the handle's `diag` and returns the status's code.
pub fn fail(diag: *Diag, status: Status, comptime fmt: []const u8, args: anytype) u32 {
    diag.set(fmt, args);
    return @intFromEnum(status);
}

/// A call's f32 pointer, non-null and 4-byte aligned; else the message goes to `diag`.
pub fn floats(
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

/// Copies min(out_len, fields.len) info fields to `out` (u64 each, any alignment).
pub fn writeInfo(
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

/// Writes msg NUL-terminated into buf, cut to buf_len - 1 bytes; returns the bytes before
/// the NUL. A null buf or zero length writes nothing.
pub fn writeMessage(buf: ?[*]u8, buf_len: usize, msg: []const u8) usize {
    const dst = buf orelse return 0;
    if (buf_len == 0) return 0;
    const n = @min(msg.len, buf_len - 1);
    @memcpy(dst[0..n], msg[0..n]);
    dst[n] = 0;
    return n;
}
