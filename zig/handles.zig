//! Handles that cannot dangle (docs/DESIGN.md, "Handles"). A handle is not an address but a
//! token: a slot index in a fixed-capacity table, the slot's generation when the object was
//! put there, and a tag saying which table. Destroy retires the slot (its generation moves on)
//! before the object's memory goes back, so a stale handle, one destroyed twice, or a forged
//! one finds no live slot of its generation and the API answers status 4; nothing is read
//! through it.
//!
//! These tables are the library's only global mutable state. They have to be global: Workers
//! (threads) share one loaded instance of the library, and a handle made in one must be
//! recognised as stale in every other. They are lock-free (one atomic word per slot, changed
//! by compare-and-swap) so no call can block another thread, and of fixed size, so the
//! lookup in every call is a bounds check, one acquire load and a compare.
//!
//! The contract that remains: a handle is used by one thread at a time, and destroy is a use.
//! A call racing with destroy of the same handle on another thread may still read freed memory.
const std = @import("std");

/// Handle bits on 64-bit targets: 4 bits of tag (48..51), 32 of generation (16..47), 16 of
/// slot index (0..15). The whole stays below 2^53, so JavaScript numbers (bun:ffi pointers)
/// hold it exactly. On 32-bit targets (wasm32) a handle is a 32-bit pointer-sized value: 2
/// bits of tag (30..31), then the generation, then as many index bits as the capacity needs
/// (a model handle: 16 bits of generation, 14 of index). Inserts rotate through every slot,
/// so a stale handle could meet its slot's generation again only after 2^30 creates.
pub const Tag = enum(u4) { model = 1, graph = 2, trainer = 3 };

const wide = @bitSizeOf(usize) >= 64;

/// A slot's atomic word: generation and state. wasm32 has no 64-bit atomics, so there it is
/// a u32 with the state in the low 2 bits.
const Word = if (wide) u64 else u32;
const state_bits = if (wide) 32 else 2;

const state_free: u32 = 0;
const state_reserved: u32 = 1;
const state_live: u32 = 2;

pub fn Table(comptime T: type, comptime capacity: u32, comptime tag: Tag) type {
    comptime std.debug.assert(capacity >= 1 and capacity <= 1 << 16);
    comptime std.debug.assert(wide or @intFromEnum(tag) < 4);
    return struct {
        const Self = @This();

        const index_bits = if (wide) 16 else std.math.log2_int_ceil(u32, capacity);
        const generation_bits = if (wide) 32 else 30 - index_bits;
        const generation_mask: u32 = @intCast((@as(u64, 1) << generation_bits) - 1);

        pub const slots_max = capacity;

        /// `word` is generation << 32 | state. A slot on its own cache line: Workers on
        /// different cores look up their own handles without sharing lines.
        const Slot = struct {
            word: std.atomic.Value(Word) align(std.atomic.cache_line),
            object: std.atomic.Value(usize),
        };

        slots: [capacity]Slot = std.mem.zeroes([capacity]Slot),
        /// Where the next insert starts looking, so that freed slots are reused last (a stale
        /// handle then meets a free slot rather than a newer generation) and inserts from
        /// several threads start apart.
        cursor: std.atomic.Value(u32) = .init(0),

        /// Puts `object` in a free slot and returns its handle (never 0), or null when every
        /// slot is in use.
        pub fn insert(t: *Self, object: *T) ?u64 {
            const start = t.cursor.fetchAdd(1, .monotonic);
            for (0..capacity) |i| {
                const index: u32 = @intCast((start +% i) % capacity);
                const slot = &t.slots[index];
                const word = slot.word.load(.monotonic);
                if (stateOf(word) != state_free) continue;
                const generation = generationOf(word);
                const reserved = pack(generation, state_reserved);
                if (slot.word.cmpxchgStrong(word, reserved, .acquire, .monotonic) != null) continue;
                slot.object.store(@intFromPtr(object), .monotonic);
                slot.word.store(pack(generation, state_live), .release);
                return encode(index, generation);
            }
            return null;
        }

        /// The live object behind `handle`, or null for a handle that is stale (destroyed),
        /// from another table, or was never made here.
        pub fn get(t: *Self, handle: u64) ?*T {
            const index, const generation = decode(handle) orelse return null;
            const slot = &t.slots[index];
            const live = pack(generation, state_live);
            if (slot.word.load(.acquire) != live) return null;
            const address = slot.object.load(.monotonic);
            // Re-read: a destroy and a new insert in between would have moved the generation.
            if (slot.word.load(.acquire) != live) return null;
            return @ptrFromInt(address);
        }

        /// Retires the slot and returns its object for the caller to free, or null when the
        /// handle is not live (so a second destroy of one handle does nothing). The slot's next
        /// object gets the next generation.
        pub fn remove(t: *Self, handle: u64) ?*T {
            const index, const generation = decode(handle) orelse return null;
            const slot = &t.slots[index];
            const live = pack(generation, state_live);
            if (slot.word.load(.acquire) != live) return null;
            const address = slot.object.load(.monotonic);
            const retired = pack((generation +% 1) & generation_mask, state_free);
            if (slot.word.cmpxchgStrong(live, retired, .acq_rel, .monotonic) != null) return null;
            return @ptrFromInt(address);
        }

        /// Live slots now (a snapshot; for tests and messages).
        pub fn liveCount(t: *Self) u32 {
            var n: u32 = 0;
            for (&t.slots) |*slot| n += @intFromBool(stateOf(slot.word.load(.monotonic)) == state_live);
            return n;
        }

        const tag_shift = if (wide) 48 else 30;

        fn encode(index: u32, generation: u32) u64 {
            return @as(u64, @intFromEnum(tag)) << tag_shift |
                @as(u64, generation) << index_bits | index;
        }

        fn decode(handle: u64) ?struct { u32, u32 } {
            if (handle >> tag_shift != @intFromEnum(tag)) return null;
            const index: u32 = @intCast(handle & ((1 << index_bits) - 1));
            if (index >= capacity) return null;
            return .{ index, @intCast((handle >> index_bits) & generation_mask) };
        }
    };
}

fn pack(generation: u32, state: u32) Word {
    return @as(Word, generation) << state_bits | state;
}

fn generationOf(word: Word) u32 {
    return @intCast(word >> state_bits);
}

fn stateOf(word: Word) u32 {
    return @intCast(word & ((1 << state_bits) - 1));
}

const testing = std.testing;

test "handles: a removed handle is stale, a reused slot gets a new handle" {
    var t: Table(u32, 4, .model) = .{};
    var a: u32 = 1;
    var b: u32 = 2;
    const ha = t.insert(&a).?;
    try testing.expect(ha != 0);
    try testing.expectEqual(&a, t.get(ha).?);
    try testing.expectEqual(&a, t.remove(ha).?);
    try testing.expectEqual(null, t.get(ha));
    try testing.expectEqual(null, t.remove(ha));
    // Fill every slot: the retired one comes back with the next generation.
    var handles: [4]u64 = undefined;
    for (&handles) |*h| h.* = t.insert(&b).?;
    try testing.expectEqual(null, t.insert(&b));
    try testing.expectEqual(4, t.liveCount());
    for (handles) |h| try testing.expect(h != ha);
    try testing.expectEqual(null, t.get(ha));
    for (handles) |h| try testing.expectEqual(&b, t.remove(h).?);
    try testing.expectEqual(0, t.liveCount());
}

test "handles: forged handles and handles of the other table find nothing" {
    var models: Table(u32, 8, .model) = .{};
    var graphs: Table(u32, 8, .graph) = .{};
    var x: u32 = 7;
    const hm = models.insert(&x).?;
    const hg = graphs.insert(&x).?;
    try testing.expectEqual(null, graphs.get(hm));
    try testing.expectEqual(null, models.get(hg));
    try testing.expectEqual(null, models.remove(hg));
    var prng = std.Random.DefaultPrng.init(0x5eed);
    const forged = [_]u64{ 0, 1, @intFromPtr(&x), hm ^ (1 << 16), hm + 8, hm | 0xFFFF, ~@as(u64, 0) };
    for (forged) |h| try testing.expectEqual(null, models.get(h));
    for (0..100_000) |_| {
        const h = prng.random().int(u64);
        if (h != hm) try testing.expectEqual(null, models.get(h));
    }
    try testing.expectEqual(&x, models.get(hm).?);
}

test "handles: threads inserting and removing at once never share a slot" {
    const threads = 4;
    const rounds = 20_000;
    const T = Table(usize, 64, .model);
    const Worker = struct {
        fn run(t: *T, id: usize, failures: *std.atomic.Value(u32)) void {
            var mine: [8]usize = undefined;
            var held: [8]u64 = undefined;
            for (0..rounds) |round| {
                for (&mine, &held, 0..) |*m, *h, k| {
                    m.* = id * 1_000_000 + round * 8 + k;
                    h.* = t.insert(m) orelse {
                        _ = failures.fetchAdd(1, .monotonic);
                        return;
                    };
                }
                for (&mine, held) |*m, h| {
                    const got = t.get(h) orelse {
                        _ = failures.fetchAdd(1, .monotonic);
                        return;
                    };
                    if (got != m or got.* != m.*) _ = failures.fetchAdd(1, .monotonic);
                    if (t.remove(h) != m) _ = failures.fetchAdd(1, .monotonic);
                    if (t.get(h) != null) _ = failures.fetchAdd(1, .monotonic);
                }
            }
        }
    };
    var t: T = .{};
    var failures: std.atomic.Value(u32) = .init(0);
    var pool: [threads]std.Thread = undefined;
    for (&pool, 0..) |*th, id| th.* = try std.Thread.spawn(.{}, Worker.run, .{ &t, id, &failures });
    for (pool) |th| th.join();
    try testing.expectEqual(0, failures.load(.monotonic));
    try testing.expectEqual(0, t.liveCount());
}
