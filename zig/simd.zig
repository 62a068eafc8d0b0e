//! Vector width for f32, chosen by the target at compile time, and the few helpers the kernels
//! share. Loads and stores go through arrays so they never assume more than f32 alignment.
const std = @import("std");
const builtin = @import("builtin");

pub const lanes: comptime_int = std.simd.suggestVectorLength(f32) orelse 4;
pub const V = @Vector(lanes, f32);

/// 32 vector registers (AVX-512, NEON) allow larger register blocks in matrix kernels.
pub const many_registers = switch (builtin.cpu.arch) {
    .x86_64, .x86 => std.Target.x86.featureSetHas(builtin.cpu.features, .avx512f),
    .aarch64 => true,
    else => false,
};

/// a*b + c, fused where the target has FMA; elsewhere `@mulAdd` would become a call per lane.
pub inline fn madd(a: anytype, b: @TypeOf(a), c: @TypeOf(a)) @TypeOf(a) {
    const fused = switch (builtin.cpu.arch) {
        .x86_64, .x86 => std.Target.x86.featureSetHas(builtin.cpu.features, .fma),
        .aarch64 => true,
        else => false,
    };
    return if (fused) @mulAdd(@TypeOf(a), a, b, c) else a * b + c;
}

pub inline fn splat(x: f32) V {
    return @splat(x);
}

pub inline fn load(s: []const f32, i: usize) V {
    return s[i..][0..lanes].*;
}

pub inline fn store(s: []f32, i: usize, v: V) void {
    s[i..][0..lanes].* = v;
}

/// Unchecked forms for inner loops whose bounds were asserted once outside the loop.
pub inline fn loadPtr(p: [*]const f32) V {
    return p[0..lanes].*;
}

pub inline fn storePtr(p: [*]f32, v: V) void {
    p[0..lanes].* = v;
}

/// True in the lanes below `n` (all of them when n >= lanes): masks a ragged last vector.
pub inline fn lanesBelow(n: usize) @Vector(lanes, bool) {
    const index = std.simd.iota(u32, lanes);
    return index < @as(@Vector(lanes, u32), @splat(@intCast(@min(n, lanes))));
}

/// `n` rounded up to a whole number of vectors.
pub inline fn roundUp(n: usize) usize {
    return std.mem.alignForward(usize, n, lanes);
}

/// Sum of the lanes; the order is fixed, so results are reproducible.
pub inline fn sum(v: V) f32 {
    return @reduce(.Add, v);
}

/// Stores the first `n` lanes of `v` (n <= lanes) to `dst`, for the ragged end of a row.
/// A switch over the length gives each case a fixed-size copy: a runtime-length @memcpy
/// would be a call to memcpy, which costs more than the copy at these sizes.
pub fn storePartial(dst: []f32, v: V) void {
    std.debug.assert(dst.len <= lanes);
    const a: [lanes]f32 = v;
    switch (dst.len) {
        inline 0...lanes => |n| dst[0..n].* = a[0..n].*,
        else => unreachable,
    }
}

/// Loads up to `lanes` floats from `src`, zero-filling the missing lanes.
pub fn loadPartial(src: []const f32) V {
    std.debug.assert(src.len <= lanes);
    var a: [lanes]f32 = @splat(0);
    switch (src.len) {
        inline 0...lanes => |n| a[0..n].* = src[0..n].*,
        else => unreachable,
    }
    return a;
}

/// dst = src (equal lengths, not overlapping) in whole vectors and one partial one, without
/// a call to memcpy: for the short vectors of a recurrent step.
pub inline fn copy(dst: []f32, src: []const f32) void {
    std.debug.assert(dst.len == src.len);
    var i: usize = 0;
    while (i + lanes <= src.len) : (i += lanes) store(dst, i, load(src, i));
    storePartial(dst[i..], loadPartial(src[i..]));
}
