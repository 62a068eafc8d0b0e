//! The machine's limits, measured so the benchmarks can print each kernel beside them: the FP32
//! FMA peak of one core and the streaming read bandwidth at a given working-set size. Built by
//! bench/lib.ts with -O ReleaseFast -mcpu=native; not part of the cadenza library.
//!
//! Both 16-lane (zmm) and 8-lane (ymm) peaks are exported: the vector width is explicit, so the
//! figures do not depend on LLVM's `prefer_256_bit` tuning of the CPU (which build.zig drops for
//! the cadenza library on AVX-512 CPUs, and which `-mcpu=native` keeps here).

const std = @import("std");

/// Enough independent FMA chains to cover the FMA latency (4 cycles) times two FMA ports.
const fma_chains = 16;
/// Independent sums in the read loop, so that the adds never limit the loads.
const read_chains = 8;
const read_lanes = 16;

/// FMA peak loop with 16-lane vectors; FLOPs = iterations * 2 * 16 * fma_chains.
export fn cz_peak_fma16(iterations: u64, seed: f32) f32 {
    return fmaLoop(16, iterations, seed);
}

/// FMA peak loop with 8-lane vectors; FLOPs = iterations * 2 * 8 * fma_chains.
export fn cz_peak_fma8(iterations: u64, seed: f32) f32 {
    return fmaLoop(8, iterations, seed);
}

/// Independent FMA chains per iteration (for the caller's FLOP count).
export fn cz_peak_fma_chains() u32 {
    return fma_chains;
}

/// Returns the chains' sum so the work cannot be removed; `seed` comes from the caller so
/// nothing folds at compile time.
fn fmaLoop(comptime lanes: comptime_int, iterations: u64, seed: f32) f32 {
    const V = @Vector(lanes, f32);
    var acc: [fma_chains]V = undefined;
    for (&acc, 0..) |*a, i| a.* = @splat(seed + @as(f32, @floatFromInt(i)));
    const mul: V = @splat(1.0 - seed * 1e-7);
    const add: V = @splat(seed * 1e-7);
    var n: u64 = 0;
    while (n < iterations) : (n += 1) {
        inline for (&acc) |*a| a.* = @mulAdd(V, a.*, mul, add);
    }
    var sum: V = @splat(0);
    for (acc) |a| sum += a;
    return @reduce(.Add, sum);
}

/// Sums `len` floats from `data`, `repeats` times over; returns the sum. Bytes read are
/// len * 4 * repeats; a null pointer or zero length reads nothing and returns 0.
export fn cz_peak_read(data: ?[*]const f32, len: usize, repeats: u32) f32 {
    const ptr = data orelse return 0;
    if (len == 0) return 0;
    const values = ptr[0..len];
    var total: f32 = 0;
    var r: u32 = 0;
    while (r < repeats) : (r += 1) total += sumSlice(values);
    return total;
}

fn sumSlice(values: []const f32) f32 {
    const V = @Vector(read_lanes, f32);
    const block = read_lanes * read_chains;
    var acc: [read_chains]V = @splat(@as(V, @splat(0)));
    var i: usize = 0;
    while (i + block <= values.len) : (i += block) {
        inline for (&acc, 0..) |*a, c| {
            const v: V = values[i + c * read_lanes ..][0..read_lanes].*;
            a.* += v;
        }
    }
    var tail: f32 = 0;
    while (i < values.len) : (i += 1) tail += values[i];
    var sum: V = @splat(0);
    for (acc) |a| sum += a;
    return @reduce(.Add, sum) + tail;
}
