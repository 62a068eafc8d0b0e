//! The training ABI's exported functions (docs/DESIGN.md, "Training ABI"). As zig/api.zig:
//! every pointer checked for null (f32 pointers for alignment), every length against the
//! trainer, every failure a status and a message kept with the handle (or, for create, in
//! the caller's buffer); compute calls run with subnormals flushed (fpenv.zig). Trainer
//! handles are tokens from a handle table (zig/handles.zig), as model and graph handles: a
//! destroyed, stale or forged handle is status 4, never a read through it.
const std = @import("std");
const image = @import("../image.zig");
const fpenv = @import("../fpenv.zig");
const handles = @import("../handles.zig");
const abi = @import("../abi.zig");
const trainer = @import("trainer.zig");

const Trainer = trainer.Trainer;
const Diag = image.Diag;
const Status = abi.Status;
const backing = abi.backing;
const writeMessage = abi.writeMessage;

const invalid_message = "invalid trainer: null, destroyed, or not from cz_trainer_create";

/// The most trainers alive at once (each slot is one cache line: 64 KiB).
pub const trainers_max = 1024;

/// Every live trainer, by handle.
var trainers: handles.Table(Trainer, trainers_max, .trainer) = .{};

fn statusOf(err: trainer.Error) u32 {
    return abi.code(err);
}

/// The live trainer behind a handle, or null for a null, destroyed, stale or forged one.
fn live(handle: ?*anyopaque) ?*Trainer {
    return trainers.get(abi.token(handle));
}

/// Live trainers now (for tests).
pub fn liveTrainerCount() u32 {
    return trainers.liveCount();
}

/// A call's f32 array: non-null, 4-byte aligned, `len` elements.
fn floats(diag: *Diag, comptime label: []const u8, ptr: ?*const anyopaque, len: usize) trainer.Error![]const f32 {
    return (try abi.floats(diag, label, ptr))[0..len];
}

fn mutFloats(diag: *Diag, comptime label: []const u8, ptr: ?*anyopaque, len: usize) trainer.Error![]f32 {
    return @constCast(try floats(diag, label, ptr, len));
}

fn exactLen(diag: *Diag, comptime label: []const u8, len: usize, want: usize, comptime what: []const u8) trainer.Error!void {
    if (len != want) return diag.fail(error.BadArgument, label ++ " is {d}, expected {d} (" ++ what ++ ")", .{ len, want });
}

pub export fn cz_trainer_create(
    image_ptr: ?[*]const u8,
    image_len: usize,
    config_ptr: ?*const anyopaque,
    config_len: usize,
    handle_out: ?*anyopaque,
    err_buf: ?[*]u8,
    err_len: usize,
) u32 {
    var diag: Diag = .{};
    const status = create(image_ptr, image_len, config_ptr, config_len, handle_out, &diag);
    _ = writeMessage(err_buf, err_len, diag.message());
    return status;
}

fn create(
    image_ptr: ?[*]const u8,
    image_len: usize,
    config_ptr: ?*const anyopaque,
    config_len: usize,
    handle_out: ?*anyopaque,
    diag: *Diag,
) u32 {
    const out: *align(1) u64 = @ptrCast(handle_out orelse {
        diag.set("cz_trainer_create: handle_out is null", .{});
        return @intFromEnum(Status.bad_argument);
    });
    out.* = 0;
    const bytes = image_ptr orelse {
        diag.set("cz_trainer_create: image is null", .{});
        return @intFromEnum(Status.bad_argument);
    };
    const words: [*]align(1) const u32 = @ptrCast(config_ptr orelse {
        diag.set("cz_trainer_create: config is null", .{});
        return @intFromEnum(Status.bad_argument);
    });
    if (config_len != trainer.config_words) {
        diag.set("cz_trainer_create: config_len is {d}, expected {d} words", .{ config_len, trainer.config_words });
        return @intFromEnum(Status.bad_argument);
    }
    var copy: [trainer.config_words]u32 = undefined;
    for (&copy, 0..) |*w, i| w.* = words[i];
    const t = Trainer.create(backing, bytes[0..image_len], &copy, diag) catch |err| return statusOf(err);
    out.* = trainers.insert(t) orelse {
        t.destroy();
        diag.set("cz_trainer_create: {d} trainers are live, the most the library holds at " ++
            "once; destroy one first", .{trainers_max});
        return @intFromEnum(Status.limit);
    };
    return @intFromEnum(Status.ok);
}

/// A null, destroyed or foreign handle is ignored. The handle is retired before the memory
/// goes back, so every later call with it is status 4.
pub export fn cz_trainer_destroy(handle: ?*anyopaque) void {
    const t = trainers.remove(abi.token(handle)) orelse return;
    t.destroy();
}

pub export fn cz_trainer_last_error(handle: ?*anyopaque, buf: ?[*]u8, buf_len: usize) usize {
    const msg = if (live(handle)) |t| t.diag.message() else invalid_message;
    return writeMessage(buf, buf_len, msg);
}

/// Writes min(out_len, 11) u64 fields (any alignment); see trainer.Trainer.info.
pub export fn cz_trainer_info(handle: ?*anyopaque, out: ?*anyopaque, out_len: usize) u32 {
    const t = live(handle) orelse return @intFromEnum(Status.bad_handle);
    return abi.writeInfo(&t.diag, "cz_trainer_info", out, out_len, &t.info());
}

fn batchOf(
    t: *Trainer,
    comptime name: []const u8,
    in: ?*const anyopaque,
    in_len: usize,
    targets: ?*const anyopaque,
    targets_len: usize,
    mask: ?*const anyopaque,
    mask_len: usize,
) trainer.Error!Trainer.Batch {
    const x = try floats(&t.diag, name ++ ": in", in, in_len);
    const y = try floats(&t.diag, name ++ ": targets", targets, targets_len);
    const m: ?[]const f32 = if (mask == null and mask_len == 0) null else try floats(&t.diag, name ++ ": mask", mask, mask_len);
    return t.checkBatch(name, x, y, m);
}

fn scalarOut(t: *Trainer, comptime label: []const u8, ptr: ?*anyopaque) trainer.Error!*f32 {
    const s = try mutFloats(&t.diag, label, ptr, 1);
    return &s[0];
}

pub export fn cz_trainer_step(
    handle: ?*anyopaque,
    in: ?*const anyopaque,
    in_len: usize,
    targets: ?*const anyopaque,
    targets_len: usize,
    mask: ?*const anyopaque,
    mask_len: usize,
    loss_out: ?*anyopaque,
) u32 {
    const t = live(handle) orelse return @intFromEnum(Status.bad_handle);
    const l = scalarOut(t, "cz_trainer_step: loss_out", loss_out) catch |err| return statusOf(err);
    const b = batchOf(t, "cz_trainer_step", in, in_len, targets, targets_len, mask, mask_len) catch |err| return statusOf(err);
    const env = fpenv.enterNoSubnormals();
    defer fpenv.leave(env);
    const value = t.step(b) catch |err| return statusOf(err);
    l.* = @floatCast(value);
    return @intFromEnum(Status.ok);
}

/// metrics_out gets min(metrics_len, 3) of: loss, accuracy (mse: mean absolute error),
/// the mask's sum.
pub export fn cz_trainer_eval(
    handle: ?*anyopaque,
    in: ?*const anyopaque,
    in_len: usize,
    targets: ?*const anyopaque,
    targets_len: usize,
    mask: ?*const anyopaque,
    mask_len: usize,
    metrics_out: ?*anyopaque,
    metrics_len: usize,
) u32 {
    const t = live(handle) orelse return @intFromEnum(Status.bad_handle);
    if (metrics_len == 0) {
        t.diag.set("cz_trainer_eval: metrics_len is 0, expected at least 1", .{});
        return @intFromEnum(Status.bad_argument);
    }
    const out = mutFloats(&t.diag, "cz_trainer_eval: metrics_out", metrics_out, @min(metrics_len, 3)) catch |err| return statusOf(err);
    const b = batchOf(t, "cz_trainer_eval", in, in_len, targets, targets_len, mask, mask_len) catch |err| return statusOf(err);
    const env = fpenv.enterNoSubnormals();
    defer fpenv.leave(env);
    const r = t.evaluate(b);
    const values = [3]f64{ r.loss, r.metric, r.weight };
    for (out, values[0..out.len]) |*o, v| o.* = @floatCast(v);
    return @intFromEnum(Status.ok);
}

pub export fn cz_trainer_grad(
    handle: ?*anyopaque,
    in: ?*const anyopaque,
    in_len: usize,
    targets: ?*const anyopaque,
    targets_len: usize,
    mask: ?*const anyopaque,
    mask_len: usize,
    loss_out: ?*anyopaque,
    grad_out: ?*anyopaque,
    grad_len: usize,
) u32 {
    const t = live(handle) orelse return @intFromEnum(Status.bad_handle);
    const l = scalarOut(t, "cz_trainer_grad: loss_out", loss_out) catch |err| return statusOf(err);
    exactLen(&t.diag, "cz_trainer_grad: grad_len", grad_len, t.parameterCount(), "parameter_count") catch |err| return statusOf(err);
    const g = mutFloats(&t.diag, "cz_trainer_grad: grad_out", grad_out, grad_len) catch |err| return statusOf(err);
    const b = batchOf(t, "cz_trainer_grad", in, in_len, targets, targets_len, mask, mask_len) catch |err| return statusOf(err);
    const env = fpenv.enterNoSubnormals();
    defer fpenv.leave(env);
    const r = t.gradient(b);
    l.* = @floatCast(r.loss);
    @memcpy(g, t.engine.grads);
    return @intFromEnum(Status.ok);
}

pub export fn cz_trainer_forward(handle: ?*anyopaque, in: ?*const anyopaque, in_len: usize, out: ?*anyopaque, out_len: usize) u32 {
    const t = live(handle) orelse return @intFromEnum(Status.bad_handle);
    const want = t.engine.rows() * t.engine.output_size;
    if (out_len < want) {
        t.diag.set("cz_trainer_forward: out_len is {d}, expected at least {d} (batch x seq_len x output_size)", .{ out_len, want });
        return @intFromEnum(Status.bad_argument);
    }
    const y = mutFloats(&t.diag, "cz_trainer_forward: out", out, want) catch |err| return statusOf(err);
    const x = floats(&t.diag, "cz_trainer_forward: in", in, in_len) catch |err| return statusOf(err);
    t.checkInputs("cz_trainer_forward", x) catch |err| return statusOf(err);
    const env = fpenv.enterNoSubnormals();
    defer fpenv.leave(env);
    t.forward(x, y);
    return @intFromEnum(Status.ok);
}

pub export fn cz_trainer_get_params(handle: ?*anyopaque, out: ?*anyopaque, out_len: usize) u32 {
    const t = live(handle) orelse return @intFromEnum(Status.bad_handle);
    exactLen(&t.diag, "cz_trainer_get_params: out_len", out_len, t.parameterCount(), "parameter_count") catch |err| return statusOf(err);
    const y = mutFloats(&t.diag, "cz_trainer_get_params: out", out, out_len) catch |err| return statusOf(err);
    @memcpy(y, t.engine.params);
    return @intFromEnum(Status.ok);
}

pub export fn cz_trainer_set_params(handle: ?*anyopaque, in: ?*const anyopaque, in_len: usize) u32 {
    const t = live(handle) orelse return @intFromEnum(Status.bad_handle);
    exactLen(&t.diag, "cz_trainer_set_params: in_len", in_len, t.parameterCount(), "parameter_count") catch |err| return statusOf(err);
    const x = floats(&t.diag, "cz_trainer_set_params: in", in, in_len) catch |err| return statusOf(err);
    t.setParams(x) catch |err| return statusOf(err);
    return @intFromEnum(Status.ok);
}

/// Which parameters step may change (`in_len` == parameter_count, each 0 or 1).
pub export fn cz_trainer_set_trainable(handle: ?*anyopaque, in: ?*const anyopaque, in_len: usize) u32 {
    const t = live(handle) orelse return @intFromEnum(Status.bad_handle);
    exactLen(&t.diag, "cz_trainer_set_trainable: in_len", in_len, t.parameterCount(), "parameter_count") catch |err| return statusOf(err);
    const x = floats(&t.diag, "cz_trainer_set_trainable: in", in, in_len) catch |err| return statusOf(err);
    t.setTrainable(x) catch |err| return statusOf(err);
    return @intFromEnum(Status.ok);
}

pub export fn cz_trainer_get_state(handle: ?*anyopaque, out: ?*anyopaque, out_len: usize) u32 {
    const t = live(handle) orelse return @intFromEnum(Status.bad_handle);
    exactLen(&t.diag, "cz_trainer_get_state: out_len", out_len, t.stateLen(), "state_len = 2 + 2 x parameter_count") catch |err| return statusOf(err);
    const y = mutFloats(&t.diag, "cz_trainer_get_state: out", out, out_len) catch |err| return statusOf(err);
    t.getState(y);
    return @intFromEnum(Status.ok);
}

pub export fn cz_trainer_set_state(handle: ?*anyopaque, in: ?*const anyopaque, in_len: usize) u32 {
    const t = live(handle) orelse return @intFromEnum(Status.bad_handle);
    exactLen(&t.diag, "cz_trainer_set_state: in_len", in_len, t.stateLen(), "state_len = 2 + 2 x parameter_count") catch |err| return statusOf(err);
    const x = floats(&t.diag, "cz_trainer_set_state: in", in, in_len) catch |err| return statusOf(err);
    t.setState(x) catch |err| return statusOf(err);
    return @intFromEnum(Status.ok);
}

test {
    _ = @import("engine.zig");
    _ = @import("common.zig");
    _ = @import("loss.zig");
    _ = @import("tests.zig");
}
