//! A graph of loaded models run in one call (docs/DESIGN.md, "Native graph"): nodes in
//! topological order, each one model fed by slices of the graph input or of earlier nodes'
//! outputs (copied or pooled), so that a pipeline step crosses the FFI once instead of once
//! per model. create validates the whole description against the models and allocates every
//! buffer; step, stepFrom and reset allocate nothing. The graph does not own its models: the
//! caller destroys the graph before any of them (destroy never touches them).
const std = @import("std");
const builtin = @import("builtin");
const model = @import("model.zig");
const image = @import("image.zig");

const Model = model.Model;
const Diag = image.Diag;
const Allocator = std.mem.Allocator;

/// Word 0 of a description: the bytes "CZGR" read as a little-endian u32.
pub const magic: u32 = 0x52475A43;
pub const version: u32 = 1;
pub const header_words = 4;
pub const node_words = 2;
pub const edge_words = 4;
pub const node_count_max = 256;
pub const edge_count_max = 256;
/// The widths a graph input may have, as for a model (docs/DESIGN.md, "Limits").
pub const width_max: u32 = 65536;
/// The longest description: every node with the most edges.
pub const desc_words_max = header_words +
    node_count_max * (node_words + edge_count_max * edge_words);
/// An edge source that names the graph input rather than a node.
pub const graph_input: u32 = 0xFFFF_FFFF;
/// The fields cz_graph_info reports, in order (docs/DESIGN.md, "Native graph").
pub const info_fields = 7;

pub const Error = error{ BadArgument, Limit, OutOfMemory };

/// How an edge turns its source slice into node input values: `copy` keeps the slice;
/// `maxpoolN` / `meanpoolN` reduce each run of N consecutive values to one.
pub const Op = enum(u32) {
    copy = 0,
    maxpool2 = 1,
    maxpool4 = 2,
    meanpool2 = 3,
    meanpool4 = 4,

    fn factor(op: Op) u32 {
        return switch (op) {
            .copy => 1,
            .maxpool2, .meanpool2 => 2,
            .maxpool4, .meanpool4 => 4,
        };
    }
};
const op_max = @typeInfo(Op).@"enum".fields.len - 1;

const Edge = struct {
    /// A node before this edge's node, or graph_input.
    source: u32,
    offset: u32,
    length: u32,
    op: Op,
};

const Node = struct {
    model: *Model,
    edges: []const Edge,
    /// This node's output in `Graph.outs`.
    out_at: u32,
    out_len: u32,
    /// The gather buffer; empty when one copy edge feeds the model its source slice in place.
    input: []f32,
    /// Some node downstream of this one reads the graph input: stepFrom needs it then.
    downstream_reads_input: bool,
};

/// What pass 1 learns from the description: enough to size the arena.
const Plan = struct {
    node_count: u32,
    input_size: u32,
    edge_count: usize = 0,
    out_floats: usize = 0,
    gather_floats: usize = 0,
    /// The model each node runs, by handle index.
    node_model: [node_count_max]u32 = undefined,
};

const region_align = 64;

pub const Graph = struct {
    counting: model.CountingAllocator,
    arena: []align(region_align) u8,
    nodes: []Node,
    input_size: u32,
    /// Every node's last output, in node order: what step copies out, and what stepFrom
    /// reads for nodes it does not run.
    outs: []f32,
    /// stepFrom's mark of the nodes downstream of its start node.
    reached: []bool,
    /// Nanoseconds each node took in the last step or stepFrom (0 for a node it did not run),
    /// on the monotonic clock (the vDSO's, so no system call): cz_graph_node_ns.
    node_ns: []f64,
    /// The last error on this handle (cz_graph_last_error).
    diag: Diag = .{},
    /// Node i's model as the C ABI's handle (zig/api.zig sets them after create and checks
    /// them before every call; the graph itself uses `nodes[i].model`).
    member_handles: [node_count_max]u64 = @splat(0),

    /// Validates `words` (the description) against `models` (the handles, resolved and
    /// distinct) and allocates every buffer the graph will use.
    pub fn create(
        backing: Allocator,
        caller_words: []align(1) const u32,
        models: []const *Model,
        diag: *Diag,
    ) Error!*Graph {
        // Both passes read one private copy: the caller's words may change in between.
        if (caller_words.len > desc_words_max) {
            return diag.fail(error.BadArgument, "graph description has {d} words, expected " ++
                "at most {d} ({d} nodes of {d} edges)", .{
                caller_words.len, desc_words_max, node_count_max, edge_count_max,
            });
        }
        const words = backing.alloc(u32, caller_words.len) catch {
            return outOfMemory(diag, caller_words.len * 4);
        };
        defer backing.free(words);
        @memcpy(words, caller_words);
        const plan = try parse(words, models, diag);
        const g = backing.create(Graph) catch return outOfMemory(diag, @sizeOf(Graph));
        errdefer backing.destroy(g);
        g.* = .{
            .counting = .{ .backing = backing },
            .arena = &.{},
            .nodes = &.{},
            .input_size = plan.input_size,
            .outs = &.{},
            .reached = &.{},
            .node_ns = &.{},
        };
        const bytes = arenaBytes(&plan);
        const a = g.counting.allocator();
        g.arena = a.alignedAlloc(u8, .fromByteUnits(region_align), bytes) catch {
            return outOfMemory(diag, bytes);
        };
        @memset(g.arena, 0);
        g.fill(words, models, &plan);
        return g;
    }

    /// Frees the graph's memory; its models stay loaded.
    pub fn destroy(g: *Graph) void {
        const backing = g.counting.backing;
        g.counting.allocator().free(g.arena);
        backing.destroy(g);
    }

    /// Runs every node in order; y receives every node's output (y.len >= outs.len).
    pub fn step(g: *Graph, x: []const f32, y: []f32) void {
        std.debug.assert(x.len == g.input_size and y.len >= g.outs.len);
        var last = nowNs();
        for (g.nodes, g.node_ns) |*node, *ns| {
            g.run(node, x);
            const after = nowNs();
            ns.* = @floatFromInt(after -% last);
            last = after;
        }
        @memcpy(y[0..g.outs.len], g.outs);
    }

    /// Sets node `start`'s output to `values` (its model does not run) and runs the nodes
    /// downstream of it; the others keep their last outputs. `x` is the graph input those
    /// nodes read (input_size values), or empty when none of them reads it. The caller checked
    /// `start` and the lengths.
    pub fn stepFrom(g: *Graph, start: u32, values: []const f32, x: []const f32, y: []f32) void {
        const first = &g.nodes[start];
        std.debug.assert(values.len == first.out_len);
        std.debug.assert(x.len == g.input_size or (x.len == 0 and !first.downstream_reads_input));
        std.debug.assert(y.len >= g.outs.len);
        @memcpy(g.outs[first.out_at..][0..first.out_len], values);
        g.markDownstream(start);
        @memset(g.node_ns, 0);
        for (g.nodes[start + 1 ..], g.reached[start + 1 ..], g.node_ns[start + 1 ..]) |*node, reached, *ns| {
            if (!reached) continue;
            const before = nowNs();
            g.run(node, x);
            ns.* = @floatFromInt(nowNs() -% before);
        }
        @memcpy(y[0..g.outs.len], g.outs);
    }

    /// Resets every member model and zeroes the outputs, as just after create.
    pub fn reset(g: *Graph) void {
        for (g.nodes) |*node| {
            node.model.reset();
            @memset(node.input, 0);
        }
        @memset(g.outs, 0);
    }

    /// Asks the CPU to bring every cache line of every member model's memory (weights, state,
    /// scratch) into the caches, without waiting for it: a caller that slept calls this a
    /// little before its next step. Returns the bytes covered.
    pub fn prefetch(g: *const Graph) usize {
        var total: usize = 0;
        for (g.nodes) |*node| {
            const arena = node.model.arena;
            var i: usize = 0;
            while (i < arena.len) : (i += 64) {
                @prefetch(arena.ptr + i, .{ .rw = .read, .locality = 3, .cache = .data });
            }
            total += arena.len;
        }
        return total;
    }

    /// The cz_graph_info fields; see docs/DESIGN.md.
    pub fn info(g: *const Graph) [info_fields]u64 {
        return .{
            model.abi_version,
            g.nodes.len,
            g.input_size,
            g.outs.len,
            g.counting.bytes_held + @sizeOf(Graph),
            g.counting.alloc_count,
            g.counting.free_count,
        };
    }

    /// Gathers the node's input (unless one copy edge feeds it in place) and runs its model.
    fn run(g: *Graph, node: *const Node, x: []const f32) void {
        const y = g.outs[node.out_at..][0..node.out_len];
        if (node.input.len == 0) {
            const e = node.edges[0];
            node.model.forward(g.source(e, x)[e.offset..][0..e.length], y);
            return;
        }
        var at: usize = 0;
        for (node.edges) |e| at += gather(e, g.source(e, x), node.input[at..]);
        std.debug.assert(at == node.input.len);
        node.model.forward(node.input, y);
    }

    fn source(g: *const Graph, e: Edge, x: []const f32) []const f32 {
        if (e.source == graph_input) return x;
        const from = &g.nodes[e.source];
        return g.outs[from.out_at..][0..from.out_len];
    }

    /// Sets reached[i] for `start` and every node that reads from it, directly or not.
    fn markDownstream(g: *Graph, start: u32) void {
        @memset(g.reached, false);
        g.reached[start] = true;
        for (g.nodes[start + 1 ..], start + 1..) |*node, i| {
            for (node.edges) |e| {
                if (e.source != graph_input and g.reached[e.source]) g.reached[i] = true;
            }
        }
    }

    /// Pass 2: carves the arena and copies the description, which pass 1 validated.
    fn fill(
        g: *Graph,
        words: []align(1) const u32,
        models: []const *Model,
        plan: *const Plan,
    ) void {
        var at: usize = 0;
        g.nodes = carve(Node, g.arena, &at, plan.node_count);
        const edges = carve(Edge, g.arena, &at, plan.edge_count);
        g.outs = carve(f32, g.arena, &at, plan.out_floats);
        const inputs = carve(f32, g.arena, &at, plan.gather_floats);
        g.reached = carve(bool, g.arena, &at, plan.node_count);
        g.node_ns = carve(f64, g.arena, &at, plan.node_count);
        std.debug.assert(at <= g.arena.len);
        var w: usize = header_words;
        var edge_at: usize = 0;
        var out_at: u32 = 0;
        var input_at: usize = 0;
        for (g.nodes, 0..) |*node, i| {
            const m = models[plan.node_model[i]];
            const edge_count = words[w + 1];
            w += node_words;
            const node_edges = edges[edge_at..][0..edge_count];
            for (node_edges) |*e| {
                e.* = .{
                    .source = words[w],
                    .offset = words[w + 1],
                    .length = words[w + 2],
                    .op = @enumFromInt(words[w + 3]),
                };
                w += edge_words;
            }
            edge_at += edge_count;
            const gathers = needsGather(node_edges);
            node.* = .{
                .model = m,
                .edges = node_edges,
                .out_at = out_at,
                .out_len = m.output_size,
                .input = if (gathers) inputs[input_at..][0..m.input_size] else &.{},
                .downstream_reads_input = false,
            };
            out_at += m.output_size;
            if (gathers) input_at += m.input_size;
        }
        std.debug.assert(w == words.len and out_at == g.outs.len and input_at == inputs.len);
        for (g.nodes, 0..) |*node, i| node.downstream_reads_input = g.readsInputBelow(@intCast(i));
    }

    /// Whether a node strictly downstream of `start` has an edge from the graph input.
    fn readsInputBelow(g: *Graph, start: u32) bool {
        g.markDownstream(start);
        for (g.nodes[start + 1 ..], g.reached[start + 1 ..]) |*node, reached| {
            if (!reached) continue;
            for (node.edges) |e| if (e.source == graph_input) return true;
        }
        return false;
    }
};

/// wasm has no clock of its own: the host passes one in (src/native/wasm.ts, performance.now),
/// as an f64 of nanoseconds (exact to 2^53 ns; a u64 would cost the host a BigInt per call).
const host = struct {
    extern "env" fn cz_host_now_ns() f64;
};

/// The monotonic clock in nanoseconds (0 if it cannot be read). Without libc, Zig's std finds
/// the vDSO through the host process's getauxval, so this makes no system call.
fn nowNs() u64 {
    if (comptime builtin.cpu.arch.isWasm()) {
        const ns = host.cz_host_now_ns();
        return if (ns >= 0 and ns < 1e18) @intFromFloat(ns) else 0;
    }
    if (comptime builtin.os.tag == .windows) {
        const ticks: u128 = std.os.windows.QueryPerformanceCounter();
        return @truncate(ticks * 1_000_000_000 / @max(1, std.os.windows.QueryPerformanceFrequency()));
    }
    const ts = std.posix.clock_gettime(.MONOTONIC) catch return 0;
    return @as(u64, @intCast(ts.sec)) *% 1_000_000_000 +% @as(u64, @intCast(ts.nsec));
}

/// One copy edge hands the model its source slice in place; anything else is gathered.
fn needsGather(edges: []const Edge) bool {
    return edges.len != 1 or edges[0].op != .copy;
}

/// Writes the edge's values at the start of dst; returns how many.
fn gather(e: Edge, src: []const f32, dst: []f32) usize {
    const s = src[e.offset..][0..e.length];
    switch (e.op) {
        .copy => {
            @memcpy(dst[0..s.len], s);
            return s.len;
        },
        .maxpool2 => return maxPool(2, s, dst),
        .maxpool4 => return maxPool(4, s, dst),
        .meanpool2 => return meanPool(2, s, dst),
        .meanpool4 => return meanPool(4, s, dst),
    }
}

fn maxPool(comptime factor: usize, s: []const f32, dst: []f32) usize {
    const n = s.len / factor;
    for (dst[0..n], 0..) |*d, i| {
        var best = s[i * factor];
        inline for (1..factor) |k| best = maxOf(best, s[i * factor + k]);
        d.* = best;
    }
    return n;
}

/// Summed in f64 and rounded once, as the TypeScript pipeline does, so both agree bit for bit.
fn meanPool(comptime factor: usize, s: []const f32, dst: []f32) usize {
    const n = s.len / factor;
    for (dst[0..n], 0..) |*d, i| {
        var sum: f64 = s[i * factor];
        inline for (1..factor) |k| sum += s[i * factor + k];
        d.* = @floatCast(sum / factor);
    }
    return n;
}

/// JavaScript's Math.max: NaN wins, and +0 beats -0.
fn maxOf(a: f32, b: f32) f32 {
    if (std.math.isNan(a)) return a;
    if (std.math.isNan(b)) return b;
    if (a > b) return a;
    if (b > a) return b;
    return if (std.math.signbit(a)) b else a;
}

fn carve(comptime T: type, arena: []align(region_align) u8, at: *usize, n: usize) []T {
    const start = std.mem.alignForward(usize, at.*, region_align);
    at.* = start + n * @sizeOf(T);
    return @as([*]T, @ptrCast(@alignCast(arena.ptr + start)))[0..n];
}

/// The arena for a validated plan, with room to align every region (all sizes are bounded
/// by the limits that parse checked, far below overflow).
fn arenaBytes(plan: *const Plan) usize {
    const regions = [_]usize{
        plan.node_count * @sizeOf(Node),
        plan.edge_count * @sizeOf(Edge),
        plan.out_floats * 4,
        plan.gather_floats * 4,
        plan.node_count,
        plan.node_count * @sizeOf(f64),
    };
    var total: usize = 0;
    for (regions) |r| total += std.mem.alignForward(usize, r, region_align);
    return @max(total, region_align);
}

fn outOfMemory(diag: *Diag, bytes: usize) error{OutOfMemory} {
    return diag.fail(error.OutOfMemory, "out of memory allocating {d} bytes for the graph", .{
        bytes,
    });
}

/// Pass 1: checks every word of the description against the models; nothing is allocated.
fn parse(words: []align(1) const u32, models: []const *Model, diag: *Diag) Error!Plan {
    var plan = try parseHeader(words, models.len, diag);
    var used_by: [node_count_max]u32 = @splat(graph_input);
    var w: usize = header_words;
    for (0..plan.node_count) |i| {
        const node: u32 = @intCast(i);
        if (words.len - w < node_words) {
            return diag.fail(error.BadArgument, "graph node {d}: the description ends at " ++
                "word {d}, expected its {d}-word record", .{ node, words.len, node_words });
        }
        const index = words[w];
        if (index >= models.len) {
            return diag.fail(error.BadArgument, "graph node {d}: model index {d}, expected " ++
                "0..{d}", .{ node, index, models.len - 1 });
        }
        if (used_by[index] != graph_input) {
            return diag.fail(error.BadArgument, "graph node {d}: model {d} is already run by " ++
                "node {d}; a model keeps state, so each node needs its own", .{
                node, index, used_by[index],
            });
        }
        used_by[index] = node;
        plan.node_model[i] = index;
        w = try parseEdges(words, w, node, &plan, models, diag);
        const m = models[index];
        plan.out_floats += m.output_size;
    }
    if (w != words.len) {
        return diag.fail(error.BadArgument, "graph description has {d} words after the last " ++
            "node, expected none (nodes end at word {d} of {d})", .{ words.len - w, w, words.len });
    }
    return plan;
}

fn parseHeader(words: []align(1) const u32, model_count: usize, diag: *Diag) Error!Plan {
    if (words.len < header_words) {
        return diag.fail(error.BadArgument, "graph description has {d} words, expected at " ++
            "least {d} (the header)", .{ words.len, header_words });
    }
    if (words[0] != magic) {
        return diag.fail(error.BadArgument, "graph description word 0 (magic) is 0x{x}, " ++
            "expected 0x{x}", .{ words[0], magic });
    }
    if (words[1] != version) {
        return diag.fail(error.BadArgument, "graph description word 1 (version) is {d}, " ++
            "expected {d}", .{ words[1], version });
    }
    const node_count = words[2];
    if (node_count == 0 or node_count > node_count_max) {
        const err = if (node_count == 0) error.BadArgument else error.Limit;
        return diag.fail(err, "graph description word 2 (node_count) is {d}, expected " ++
            "1..{d}", .{ node_count, node_count_max });
    }
    if (node_count != model_count) {
        return diag.fail(error.BadArgument, "graph has {d} nodes and {d} model handles, " ++
            "expected one model per node", .{ node_count, model_count });
    }
    const input_size = words[3];
    if (input_size == 0 or input_size > width_max) {
        const err = if (input_size == 0) error.BadArgument else error.Limit;
        return diag.fail(err, "graph description word 3 (input_size) is {d}, expected " ++
            "1..{d}", .{ input_size, width_max });
    }
    return .{ .node_count = node_count, .input_size = input_size };
}

/// Checks node `node`'s edge count and edges (its record starts at word w); returns the word
/// after them.
fn parseEdges(
    words: []align(1) const u32,
    w: usize,
    node: u32,
    plan: *Plan,
    models: []const *Model,
    diag: *Diag,
) Error!usize {
    const m = models[plan.node_model[node]];
    const edge_count = words[w + 1];
    if (edge_count == 0 or edge_count > edge_count_max) {
        const err = if (edge_count == 0) error.BadArgument else error.Limit;
        return diag.fail(err, "graph node {d}: edge_count is {d}, expected 1..{d}", .{
            node, edge_count, edge_count_max,
        });
    }
    var at = w + node_words;
    if ((words.len - at) / edge_words < edge_count) {
        return diag.fail(error.BadArgument, "graph node {d}: {d} edges need {d} words from " ++
            "word {d}, the description has {d}", .{
            node, edge_count, edge_count * edge_words, at, words.len,
        });
    }
    var width: u64 = 0;
    for (0..edge_count) |e| {
        width += try checkEdge(words[at..][0..edge_words], node, @intCast(e), plan, models, diag);
        at += edge_words;
    }
    plan.edge_count += edge_count;
    if (width != m.input_size) {
        return diag.fail(error.BadArgument, "graph node {d}: its edges give {d} values, its " ++
            "model takes {d}", .{ node, width, m.input_size });
    }
    const gathers = edge_count != 1 or words[w + node_words + 3] != @intFromEnum(Op.copy);
    if (gathers) plan.gather_floats += m.input_size;
    return at;
}

/// Checks one edge record; returns the values it gives its node.
fn checkEdge(
    rec: []align(1) const u32,
    node: u32,
    edge: u32,
    plan: *const Plan,
    models: []const *Model,
    diag: *Diag,
) Error!u64 {
    const src, const offset, const length, const op_word = rec[0..edge_words].*;
    const where = "graph node {d} edge {d}: ";
    if (src != graph_input and src >= node) {
        return diag.fail(error.BadArgument, where ++ "source {d}, expected an earlier node " ++
            "(below {d}) or 0x{x} (the graph input)", .{ node, edge, src, node, graph_input });
    }
    if (op_word > op_max) {
        return diag.fail(error.BadArgument, where ++ "op {d}, expected 0..{d} (copy, " ++
            "maxpool2, maxpool4, meanpool2, meanpool4)", .{ node, edge, op_word, op_max });
    }
    const width: u64 = if (src == graph_input)
        plan.input_size
    else
        models[plan.node_model[src]].output_size;
    if (length == 0 or @as(u64, offset) + length > width) {
        return diag.fail(error.BadArgument, where ++ "slice [{d}, {d}+{d}) is outside its " ++
            "source (width {d})", .{ node, edge, offset, offset, length, width });
    }
    const factor = @as(Op, @enumFromInt(op_word)).factor();
    if (length % factor != 0) {
        return diag.fail(error.BadArgument, where ++ "length {d} is not a multiple of the " ++
            "pool factor {d}", .{ node, edge, length, factor });
    }
    return length / factor;
}

// Tests: the graph against its models run one by one by hand, stepFrom, reset, allocation
// counts, and every kind of bad description (listed and fuzzed) through the C ABI.

const testing = std.testing;
const t = @import("test.zig");
const api = @import("api.zig");

const EdgeSpec = struct { src: u32 = graph_input, offset: u32 = 0, length: u32, op: Op = .copy };
const NodeSpec = struct { model: u32, edges: []const EdgeSpec };

/// The description words of a graph.
fn describe(a: Allocator, input_size: u32, nodes: []const NodeSpec) ![]u32 {
    var words: std.ArrayList(u32) = .empty;
    errdefer words.deinit(a);
    try words.appendSlice(a, &.{ magic, version, @intCast(nodes.len), input_size });
    for (nodes) |n| {
        try words.appendSlice(a, &.{ n.model, @intCast(n.edges.len) });
        for (n.edges) |e| {
            try words.appendSlice(a, &.{ e.src, e.offset, e.length, @intFromEnum(e.op) });
        }
    }
    return words.toOwnedSlice(a);
}

/// Five small models shaped like the emotion pipeline's, with state in three of them.
const five = [_][]const t.Spec{
    &.{
        .{ .kind = .lstm, .in = 12, .out = 8 },
        .{ .kind = .dense, .act = .tanh, .in = 8, .out = 8, .p = t.params(1, 0, 0) },
    },
    &.{
        .{ .kind = .dense, .in = 8, .out = 16, .p = t.params(1, 0, 0) },
        .{ .kind = .attention, .in = 16, .out = 16, .p = t.params(2, 3, 0) },
        .{ .kind = .dense, .act = .sigmoid, .in = 16, .out = 16, .p = t.params(1, 0, 0) },
    },
    &.{.{ .kind = .dense, .act = .tanh, .in = 8, .out = 6, .p = t.params(1, 0, 0) }},
    &.{.{ .kind = .dense, .act = .softmax, .in = 16, .out = 5, .p = t.params(1, 0, 0) }},
    &.{.{ .kind = .gru, .in = 6, .out = 4, .p = t.params(1, 0, 0) }},
};

/// emotion <- input; melody <- emotion; groove <- emotion; harmony <- [emotion, melody
/// max-pooled by 2]; dynamics <- [emotion mean-pooled by 4, groove 0..4]. Nodes name the
/// models out of order (node i runs model order[i]) so that indices are exercised.
const order = [_]u32{ 2, 0, 4, 1, 3 };
const five_nodes = [_]NodeSpec{
    .{ .model = order[0], .edges = &.{.{ .length = 12 }} },
    .{ .model = order[1], .edges = &.{.{ .src = 0, .length = 8 }} },
    .{ .model = order[2], .edges = &.{.{ .src = 0, .length = 8 }} },
    .{ .model = order[3], .edges = &.{
        .{ .src = 0, .length = 8 },
        .{ .src = 1, .length = 16, .op = .maxpool2 },
    } },
    .{ .model = order[4], .edges = &.{
        .{ .src = 0, .length = 8, .op = .meanpool4 },
        .{ .src = 2, .offset = 0, .length = 4 },
    } },
};
const out_widths = [_]usize{ 8, 16, 6, 5, 4 };

const Fixture = struct {
    images: [5][]u8,
    /// By model index (the handles array the description refers to), created through the C
    /// ABI so that the API tests can use their handles.
    graph_models: [5]*Model,
    graph_handles: [5]u64,
    /// The same models, loaded again, for the computation by hand (by node).
    hand: [5]*Model,

    fn init(seed: u64) !Fixture {
        var f: Fixture = undefined;
        for (&f.images, five, 0..) |*img, layers, i| {
            img.* = try t.build(testing.allocator, seed + i, 1, layers);
        }
        for (0..5) |node| {
            const m = order[node];
            const img = f.images[node];
            const status = api.cz_model_create(img.ptr, img.len, &f.graph_handles[m], null, 0);
            try testing.expectEqual(@as(u32, 0), status);
            f.graph_models[m] = api.live(@ptrFromInt(f.graph_handles[m])).?;
            f.hand[node] = try load(f.images[node]);
        }
        return f;
    }

    fn deinit(f: *Fixture) void {
        for (f.graph_handles, f.hand, f.images) |g, h, img| {
            api.cz_model_destroy(@ptrFromInt(g));
            h.destroy();
            testing.allocator.free(img);
        }
    }

    fn load(bytes: []const u8) !*Model {
        var diag: Diag = .{};
        return Model.create(testing.allocator, bytes, &diag);
    }

    /// The graph of five_nodes over graph_models, created directly (not through the C ABI).
    fn createGraph(f: *const Fixture) !*Graph {
        const words = try describe(testing.allocator, 12, &five_nodes);
        defer testing.allocator.free(words);
        var diag: Diag = .{};
        return Graph.create(testing.allocator, words, &f.graph_models, &diag);
    }
};

const hand_total = 8 + 16 + 6 + 5 + 4;

/// One step by hand from x, or (x null) from a given emotion vector; out as the graph's.
fn byHand(hand: *const [5]*Model, x: ?[]const f32, given: []const f32, out: *[hand_total]f32) void {
    const emotion = out[0..8];
    const melody = out[8..24];
    const groove = out[24..30];
    if (x) |xs| hand[0].forward(xs, emotion) else @memcpy(emotion, given);
    hand[1].forward(emotion, melody);
    hand[2].forward(emotion, groove);
    var harmony_in: [16]f32 = undefined;
    @memcpy(harmony_in[0..8], emotion);
    for (0..8) |k| harmony_in[8 + k] = @max(melody[2 * k], melody[2 * k + 1]);
    hand[3].forward(&harmony_in, out[30..35]);
    hand[4].forward(&dynamicsInput(emotion, groove), out[35..39]);
}

/// Dynamics' input by hand: the emotion mean-pooled by 4, then groove values 0..4.
fn dynamicsInput(emotion: []const f32, groove: []const f32) [6]f32 {
    var in: [6]f32 = undefined;
    for (0..2) |k| {
        var sum: f64 = 0;
        for (emotion[4 * k ..][0..4]) |v| sum += v;
        in[k] = @floatCast(sum / 4);
    }
    @memcpy(in[2..6], groove[0..4]);
    return in;
}

fn features(rng: std.Random, x: *[12]f32) void {
    t.randomFloats(rng, x, 1.5);
}

test "graph: step equals the models run one by one by hand, bit for bit" {
    var f = try Fixture.init(40);
    defer f.deinit();
    const g = try f.createGraph();
    defer g.destroy();
    try testing.expectEqual(@as(usize, hand_total), g.outs.len);
    var prng = std.Random.DefaultPrng.init(1);
    var x: [12]f32 = undefined;
    var got: [hand_total + 3]f32 = @splat(-7);
    var want: [hand_total]f32 = undefined;
    for (0..60) |_| {
        features(prng.random(), &x);
        g.step(&x, &got);
        byHand(&f.hand, &x, &.{}, &want);
        try testing.expectEqualSlices(f32, &want, got[0..hand_total]);
    }
    try testing.expectEqualSlices(f32, &.{ -7, -7, -7 }, got[hand_total..]);
}

test "graph: stepFrom runs only downstream nodes; reset restores the first step" {
    var f = try Fixture.init(50);
    defer f.deinit();
    const g = try f.createGraph();
    defer g.destroy();
    var prng = std.Random.DefaultPrng.init(2);
    var x: [12]f32 = undefined;
    var got: [hand_total]f32 = undefined;
    var want: [hand_total]f32 = undefined;
    var emotion: [8]f32 = undefined;
    for (0..10) |_| {
        t.randomFloats(prng.random(), &emotion, 1);
        g.stepFrom(0, &emotion, &.{}, &got);
        byHand(&f.hand, null, &emotion, &want);
        try testing.expectEqualSlices(f32, &want, &got);
    }
    // The recognizer (node 0) did not advance: its output now equals a first step's.
    features(prng.random(), &x);
    g.step(&x, &got);
    byHand(&f.hand, &x, &.{}, &want);
    try testing.expectEqualSlices(f32, want[8..], got[8..]);
    var fresh: [8]f32 = undefined;
    const again = try Fixture.load(f.images[0]);
    defer again.destroy();
    again.forward(&x, &fresh);
    try testing.expectEqualSlices(f32, &fresh, got[0..8]);
    // stepFrom(groove) runs dynamics only: it reads emotion's last output and the new groove.
    var groove: [6]f32 = .{ 0.5, -0.25, 1, 0, 0.75, -1 };
    const before = got;
    g.stepFrom(2, &groove, &.{}, &got);
    try testing.expectEqualSlices(f32, before[0..24], got[0..24]);
    try testing.expectEqualSlices(f32, &groove, got[24..30]);
    try testing.expectEqualSlices(f32, before[30..35], got[30..35]);
    f.hand[4].forward(&dynamicsInput(got[0..8], &groove), want[35..39]);
    try testing.expectEqualSlices(f32, want[35..39], got[35..39]);

    g.reset();
    try testing.expect(std.mem.allEqual(f32, g.outs, 0));
    for (f.hand) |m| m.reset();
    features(prng.random(), &x);
    g.step(&x, &got);
    byHand(&f.hand, &x, &.{}, &want);
    try testing.expectEqualSlices(f32, &want, &got);
}

test "graph: node_ns times each node run, within the step's own duration; 0 for nodes not run" {
    var f = try Fixture.init(60);
    defer f.deinit();
    const g = try f.createGraph();
    defer g.destroy();
    try testing.expect(std.mem.allEqual(f64, g.node_ns, 0));
    var prng = std.Random.DefaultPrng.init(3);
    var x: [12]f32 = undefined;
    var got: [hand_total]f32 = undefined;
    for (0..20) |_| {
        features(prng.random(), &x);
        const before = nowNs();
        g.step(&x, &got);
        const elapsed: f64 = @floatFromInt(nowNs() - before);
        var sum: f64 = 0;
        for (g.node_ns) |ns| {
            try testing.expect(ns > 0);
            sum += ns;
        }
        try testing.expect(sum <= elapsed);
    }
    // stepFrom(groove) runs dynamics (node 4) only.
    var groove: [6]f32 = .{ 0.5, -0.25, 1, 0, 0.75, -1 };
    g.stepFrom(2, &groove, &.{}, &got);
    try testing.expectEqualSlices(f64, &.{ 0, 0, 0, 0 }, g.node_ns[0..4]);
    try testing.expect(g.node_ns[4] > 0);
}

test "graph: 1000 steps, stepFroms and resets allocate nothing" {
    var f = try Fixture.init(60);
    defer f.deinit();
    const g = try f.createGraph();
    defer g.destroy();
    const before = g.info();
    try testing.expectEqual(@as(u64, 1), before[5]);
    try testing.expectEqual(@as(u64, 0), before[6]);
    var counts: [5][2]u64 = undefined;
    for (&counts, f.graph_models) |*c, m| c.* = .{ m.info()[9], m.info()[10] };
    var prng = std.Random.DefaultPrng.init(3);
    var x: [12]f32 = undefined;
    var y: [hand_total]f32 = undefined;
    for (0..1000) |i| {
        features(prng.random(), &x);
        g.step(&x, &y);
        if (i % 10 == 0) g.stepFrom(0, y[0..8], &.{}, &y);
        if (i % 100 == 0) g.reset();
    }
    try testing.expectEqualSlices(u64, &before, &g.info());
    for (counts, f.graph_models) |c, m| {
        try testing.expectEqualSlices(u64, &c, &.{ m.info()[9], m.info()[10] });
    }
}

test "graph: a node with one copy edge reads its source slice in place, input included" {
    var f = try Fixture.init(70);
    defer f.deinit();
    // Node 0 reads input values 3..15 of a 20-wide input; node 1 emotion values 0..8.
    const nodes = [_]NodeSpec{
        .{ .model = 0, .edges = &.{.{ .offset = 3, .length = 12 }} },
        .{ .model = 1, .edges = &.{.{ .src = 0, .length = 8 }} },
    };
    const words = try describe(testing.allocator, 20, &nodes);
    defer testing.allocator.free(words);
    var diag: Diag = .{};
    const models = [_]*Model{ f.graph_models[order[0]], f.graph_models[order[2]] };
    const g = try Graph.create(testing.allocator, words, &models, &diag);
    defer g.destroy();
    try testing.expectEqual(@as(usize, 0), g.nodes[0].input.len + g.nodes[1].input.len);
    var x: [20]f32 = undefined;
    for (&x, 0..) |*v, i| v.* = @as(f32, @floatFromInt(i)) * 0.1 - 1;
    var y: [14]f32 = undefined;
    g.step(&x, &y);
    var want: [14]f32 = undefined;
    f.hand[0].forward(x[3..15], want[0..8]);
    f.hand[2].forward(want[0..8], want[8..14]);
    try testing.expectEqualSlices(f32, &want, &y);
}

test "graph: pooling follows JavaScript's Math.max and rounds the mean once" {
    const nan = std.math.nan(f32);
    var dst: [4]f32 = undefined;
    const pairs = [_]f32{ 1, nan, -0.0, 0.0, 0.0, -0.0, -3, -2 };
    try testing.expectEqual(@as(usize, 4), maxPool(2, &pairs, &dst));
    try testing.expect(std.math.isNan(dst[0]));
    try testing.expect(!std.math.signbit(dst[1]) and !std.math.signbit(dst[2]));
    try testing.expectEqual(@as(f32, -2), dst[3]);
    // 1 + 2^-24 + 2^-24 is exact in f64; summed in f32 each 2^-24 would round away.
    const tiny = std.math.pow(f32, 2, -24);
    _ = meanPool(4, &.{ 1, tiny, tiny, 0 }, &dst);
    try testing.expectEqual(@as(f32, @floatCast((1 + 2 * @as(f64, tiny)) / 4)), dst[0]);
    _ = meanPool(2, &.{ -0.0, -0.0 }, &dst);
    try testing.expect(std.math.signbit(dst[0]));
}

/// The five fixture models behind the C ABI: handles by model index, as u64.
fn handlesOf(f: *const Fixture) [5]u64 {
    return f.graph_handles;
}

const Created = struct { status: u32, graph: u64, message: [256]u8 };

fn createVia(words: []const u32, handles: []const u64) Created {
    var c: Created = .{ .status = 0, .graph = 99, .message = undefined };
    c.status = api.cz_graph_create(
        words.ptr,
        words.len,
        handles.ptr,
        handles.len,
        &c.graph,
        &c.message,
        c.message.len,
    );
    return c;
}

fn expectRefused(c: *const Created, status: u32, needle: []const u8) !void {
    const msg = std.mem.sliceTo(&c.message, 0);
    if (c.status != status or std.mem.indexOf(u8, msg, needle) == null) {
        std.debug.print("status {d}, message \"{s}\"; expected {d}, \"{s}\"\n", .{
            c.status, msg, status, needle,
        });
        return error.TestUnexpectedMessage;
    }
    try testing.expectEqual(@as(u64, 0), c.graph);
}

test "graph api: every bad description word is refused with a message naming it" {
    var f = try Fixture.init(80);
    defer f.deinit();
    const handles = handlesOf(&f);
    const base = try describe(testing.allocator, 12, &five_nodes);
    defer testing.allocator.free(base);
    try testing.expectEqual(@as(usize, 42), base.len);
    const Case = struct { at: usize, value: u32, status: u32, needle: []const u8 };
    const cases = [_]Case{
        .{ .at = 0, .value = 0, .status = 1, .needle = "word 0 (magic) is 0x0" },
        .{ .at = 1, .value = 2, .status = 1, .needle = "word 1 (version) is 2, expected 1" },
        .{ .at = 2, .value = 0, .status = 1, .needle = "(node_count) is 0, expected 1..256" },
        .{ .at = 2, .value = 300, .status = 5, .needle = "(node_count) is 300" },
        .{ .at = 2, .value = 4, .status = 1, .needle = "4 nodes and 5 model handles" },
        .{ .at = 3, .value = 0, .status = 1, .needle = "(input_size) is 0" },
        .{ .at = 3, .value = 70000, .status = 5, .needle = "(input_size) is 70000" },
        .{ .at = 3, .value = 11, .status = 1, .needle = "node 0 edge 0: slice [0, 0+12) is " ++
            "outside its source (width 11)" },
        .{ .at = 4, .value = 5, .status = 1, .needle = "node 0: model index 5, expected 0..4" },
        .{ .at = 10, .value = order[0], .status = 1, .needle = "node 1: model 2 is already " ++
            "run by node 0" },
        .{ .at = 5, .value = 0, .status = 1, .needle = "node 0: edge_count is 0" },
        .{ .at = 5, .value = 300, .status = 5, .needle = "node 0: edge_count is 300" },
        .{ .at = 12, .value = 1, .status = 1, .needle = "node 1 edge 0: source 1, expected " ++
            "an earlier node (below 1)" },
        .{ .at = 15, .value = 5, .status = 1, .needle = "node 1 edge 0: op 5, expected 0..4" },
        .{ .at = 13, .value = 1, .status = 1, .needle = "slice [1, 1+8) is outside its " ++
            "source (width 8)" },
        .{ .at = 14, .value = 7, .status = 1, .needle = "node 1: its edges give 7 values, " ++
            "its model takes 8" },
        .{ .at = 30, .value = 15, .status = 1, .needle = "node 3 edge 1: length 15 is not a " ++
            "multiple of the pool factor 2" },
        .{ .at = 31, .value = 0, .status = 1, .needle = "node 3: its edges give 24 values" },
    };
    const words = try testing.allocator.dupe(u32, base);
    defer testing.allocator.free(words);
    for (cases) |c| {
        @memcpy(words, base);
        words[c.at] = c.value;
        try expectRefused(&createVia(words, &handles), c.status, c.needle);
    }
    try expectRefused(&createVia(base[0..41], &handles), 1, "node 4: 2 edges need 8 words " ++
        "from word 34, the description has 41");
    try expectRefused(&createVia(base[0..33], &handles), 1, "node 4: the description ends " ++
        "at word 33");
    try expectRefused(&createVia(base[0..3], &handles), 1, "has 3 words, expected at least 4");
    var longer: [43]u32 = undefined;
    @memcpy(longer[0..42], base);
    longer[42] = 0;
    try expectRefused(&createVia(&longer, &handles), 1, "1 words after the last node");
}

test "graph api: handles, buffers and calls are checked" {
    var f = try Fixture.init(90);
    defer f.deinit();
    var handles = handlesOf(&f);
    const words = try describe(testing.allocator, 12, &five_nodes);
    defer testing.allocator.free(words);
    try expectRefused(&createVia(words, handles[0..0]), 1, "handle_count is 0");
    var many: [257]u64 = @splat(0);
    try expectRefused(&createVia(words, &many), 5, "handle_count is 257");
    var fake: [8]u64 = @splat(0);
    handles[3] = @intFromPtr(&fake);
    try expectRefused(&createVia(words, &handles), 4, "handle 3 (0x");
    handles[3] = 0;
    try expectRefused(&createVia(words, &handles), 4, "handle 3 (0x0) is not a live model");
    handles = handlesOf(&f);
    handles[4] = handles[1];
    try expectRefused(&createVia(words, &handles), 1, "handles 1 and 4 are the same model");
    handles = handlesOf(&f);
    var out: u64 = 5;
    var msg: [128]u8 = undefined;
    const n = words.len;
    try testing.expectEqual(@as(u32, 1), api.cz_graph_create(null, 0, &handles, 5, &out, &msg, 9));
    try testing.expectEqual(@as(u64, 0), out);
    try testing.expectEqualStrings("cz_graph", std.mem.sliceTo(&msg, 0));
    try testing.expectEqual(@as(u32, 1), api.cz_graph_create(words.ptr, n, null, 5, &out, null, 0));
    const no_out = api.cz_graph_create(words.ptr, n, &handles, 5, null, null, 0);
    try testing.expectEqual(@as(u32, 1), no_out);

    const c = createVia(words, &handles);
    try testing.expectEqual(@as(u32, 0), c.status);
    try testing.expectEqualStrings("", std.mem.sliceTo(&c.message, 0));
    const g: ?*anyopaque = @ptrFromInt(c.graph);
    defer api.cz_graph_destroy(g);
    var info: [9]u64 = @splat(7);
    try testing.expectEqual(@as(u32, 0), api.cz_graph_info(g, &info, info.len));
    try testing.expectEqualSlices(u64, &.{ 1, 5, 12, hand_total }, info[0..4]);
    try testing.expectEqualSlices(u64, &.{ 1, 0, 7, 7 }, info[5..9]);
    try testing.expectEqual(@as(u32, 1), api.cz_graph_info(g, &info, 0));

    var x: [13]f32 = @splat(0.5);
    var y: [hand_total]f32 = undefined;
    try testing.expectEqual(@as(u32, 0), api.cz_graph_step(g, &x, 12, &y, y.len));
    try testing.expectEqual(@as(u32, 1), api.cz_graph_step(g, &x, 13, &y, y.len));
    try expectLastError(g, "cz_graph_step: in_len is 13, expected 12");
    try testing.expectEqual(@as(u32, 1), api.cz_graph_step(g, &x, 12, &y, y.len - 1));
    try expectLastError(g, "cz_graph_step: out_len is 38, expected at least 39 (every node's");
    try testing.expectEqual(@as(u32, 1), api.cz_graph_step(g, null, 12, &y, y.len));
    try expectLastError(g, "cz_graph_step: in is null");
    const odd: *const anyopaque = @ptrFromInt(@intFromPtr(&x) + 2);
    try testing.expectEqual(@as(u32, 1), api.cz_graph_step(g, odd, 12, &y, y.len));
    try expectLastError(g, "cz_graph_step: in is not 4-byte aligned");
    try testing.expectEqual(@as(u32, 0), api.cz_graph_step_from(g, 0, &x, 8, &y, y.len));
    try testing.expectEqual(@as(u32, 1), api.cz_graph_step_from(g, 5, &x, 8, &y, y.len));
    try expectLastError(g, "cz_graph_step_from: node 5, expected 0..4");
    try testing.expectEqual(@as(u32, 1), api.cz_graph_step_from(g, 1, &x, 8, &y, y.len));
    try expectLastError(g, "cz_graph_step_from: in_len is 8, expected 16");
    try testing.expectEqual(@as(u32, 0), api.cz_graph_reset(g));
    try testing.expect(std.mem.allEqual(f32, api.liveGraph(g).?.outs, 0));

    try testing.expectEqual(@as(u32, 4), api.cz_graph_step(null, &x, 12, &y, y.len));
    try testing.expectEqual(@as(u32, 4), api.cz_graph_reset(&fake));
    try testing.expectEqual(@as(u32, 4), api.cz_graph_step_from(&fake, 0, &x, 8, &y, y.len));
    try expectLastError(&fake, "invalid graph");
    // A model handle is not a graph.
    try testing.expectEqual(@as(u32, 4), api.cz_graph_reset(@ptrFromInt(f.graph_handles[0])));
    // Nor is a graph's address a graph handle.
    try testing.expectEqual(@as(u32, 4), api.cz_graph_reset(api.liveGraph(g).?));
    api.cz_graph_destroy(null);
    api.cz_graph_destroy(&fake);
}

fn expectLastError(g: ?*anyopaque, needle: []const u8) !void {
    var msg: [256]u8 = undefined;
    const n = api.cz_graph_last_error(g, &msg, msg.len);
    if (std.mem.indexOf(u8, msg[0..n], needle) == null) {
        std.debug.print("last error \"{s}\", expected \"{s}\"\n", .{ msg[0..n], needle });
        return error.TestUnexpectedMessage;
    }
}

test "graph api: a member model destroyed while the graph lives is status 4, never run" {
    var f = try Fixture.init(95);
    defer f.deinit();
    const handles = handlesOf(&f);
    const words = try describe(testing.allocator, 12, &five_nodes);
    defer testing.allocator.free(words);
    const c = createVia(words, &handles);
    try testing.expectEqual(@as(u32, 0), c.status);
    const g: ?*anyopaque = @ptrFromInt(c.graph);
    var x: [12]f32 = @splat(0.5);
    var y: [hand_total]f32 = undefined;
    try testing.expectEqual(@as(u32, 0), api.cz_graph_step(g, &x, 12, &y, y.len));
    // A real destroy: the model's memory goes back to the system; then another model is
    // created, which may land at the same address.
    api.cz_model_destroy(@ptrFromInt(handles[order[3]]));
    var again: u64 = 0;
    const img = f.images[3];
    try testing.expectEqual(@as(u32, 0), api.cz_model_create(img.ptr, img.len, &again, null, 0));
    defer api.cz_model_destroy(@ptrFromInt(again));
    try testing.expect(again != handles[order[3]]);
    for (0..2) |_| {
        try testing.expectEqual(@as(u32, 4), api.cz_graph_step(g, &x, 12, &y, y.len));
        try expectLastError(g, "cz_graph_step: node 3's model was destroyed while the graph");
        try testing.expectEqual(@as(u32, 4), api.cz_graph_step_from(g, 0, &x, 8, &y, y.len));
        try expectLastError(g, "cz_graph_step_from: node 3's model");
        try testing.expectEqual(@as(u32, 4), api.cz_graph_reset(g));
        try expectLastError(g, "cz_graph_reset: node 3's model");
    }
    var info: [7]u64 = undefined;
    try testing.expectEqual(@as(u32, 0), api.cz_graph_info(g, &info, info.len));
    api.cz_graph_destroy(g);
    // The destroyed graph's handle is stale too, and a second destroy does nothing.
    try testing.expectEqual(@as(u32, 4), api.cz_graph_info(g, &info, info.len));
    try testing.expectEqual(@as(u32, 4), api.cz_graph_step(g, &x, 12, &y, y.len));
    try expectLastError(g, "invalid graph");
    api.cz_graph_destroy(g);
}

test "graph: a description changed by another thread during create is read once" {
    var f = try Fixture.init(97);
    defer f.deinit();
    const words = try describe(testing.allocator, 12, &five_nodes);
    defer testing.allocator.free(words);
    const original = try testing.allocator.dupe(u32, words);
    defer testing.allocator.free(original);
    // A length past any valid description is refused before a word is read or copied.
    var diag: Diag = .{};
    const too_long = words.ptr[0 .. desc_words_max + 1];
    const refused = Graph.create(testing.allocator, too_long, &f.graph_models, &diag);
    try testing.expectError(error.BadArgument, refused);
    try testing.expectEqualStrings("graph description has 262661 words, expected at most " ++
        "262660 (256 nodes of 256 edges)", diag.message());
    // Word 5 is node 0's edge_count, word 8 its edge's length, word 9 its op: the second
    // pass trusted what the first had checked.
    for ([_][2]u32{ .{ 5, 200 }, .{ 5, 0 }, .{ 9, 77 }, .{ 8, 1 << 30 } }) |c| {
        @memcpy(words, original);
        var racing = t.RacingAllocator{
            .backing = testing.allocator,
            .target = std.mem.sliceAsBytes(words),
            .at = c[0] * 4,
            .value = c[1],
        };
        diag = .{};
        if (Graph.create(racing.allocator(), words, &f.graph_models, &diag)) |g| {
            var x: [12]f32 = @splat(0.5);
            var y: [hand_total]f32 = undefined;
            g.step(&x, &y);
            g.destroy();
        } else |_| {
            try testing.expect(diag.len > 0);
        }
    }
}

test "graph api: stepFrom is refused when a downstream node reads the graph input" {
    var f = try Fixture.init(100);
    defer f.deinit();
    const handles = handlesOf(&f);
    const words = try describe(testing.allocator, 12, &five_nodes);
    defer testing.allocator.free(words);
    // Dynamics' first edge now mean-pools input values 0..8 instead of the emotion.
    words[34] = graph_input;
    const c = createVia(words, &handles);
    try testing.expectEqual(@as(u32, 0), c.status);
    const g: ?*anyopaque = @ptrFromInt(c.graph);
    defer api.cz_graph_destroy(g);
    var x: [12]f32 = @splat(0.25);
    var y: [hand_total]f32 = undefined;
    try testing.expectEqual(@as(u32, 1), api.cz_graph_step_from(g, 0, &x, 8, &y, y.len));
    try expectLastError(g, "a node downstream of node 0 reads the graph input");
    // cz_graph_step_from_input supplies it: every node downstream of the emotion runs, the
    // dynamics on the given input's values, exactly as by hand.
    var prng = std.Random.DefaultPrng.init(9);
    var emotion: [8]f32 = undefined;
    t.randomFloats(prng.random(), &emotion, 1);
    var input: [12]f32 = undefined;
    features(prng.random(), &input);
    try testing.expectEqual(@as(u32, 1), api.cz_graph_step_from_input(g, 0, &emotion, 8, &input, 11, &y, y.len));
    try expectLastError(g, "cz_graph_step_from_input: x_len is 11, expected 12 (the graph input)");
    try testing.expectEqual(@as(u32, 1), api.cz_graph_step_from_input(g, 0, &emotion, 8, null, 12, &y, y.len));
    try expectLastError(g, "cz_graph_step_from_input: x is null");
    try testing.expectEqual(@as(u32, 0), api.cz_graph_step_from_input(g, 0, &emotion, 8, &input, 12, &y, y.len));
    var want: [hand_total]f32 = undefined;
    @memcpy(want[0..8], &emotion);
    f.hand[1].forward(&emotion, want[8..24]);
    f.hand[2].forward(&emotion, want[24..30]);
    var harmony_in: [16]f32 = undefined;
    @memcpy(harmony_in[0..8], &emotion);
    for (0..8) |k| harmony_in[8 + k] = @max(want[8 + 2 * k], want[8 + 2 * k + 1]);
    f.hand[3].forward(&harmony_in, want[30..35]);
    f.hand[4].forward(&dynamicsInput(input[0..8], want[24..30]), want[35..39]);
    try testing.expectEqualSlices(f32, &want, &y);
    // Dynamics itself may be set: nothing runs after it.
    try testing.expectEqual(@as(u32, 0), api.cz_graph_step_from(g, 4, &x, 4, &y, y.len));
    try testing.expectEqualSlices(f32, x[0..4], y[35..39]);
    try testing.expectEqual(@as(u32, 0), api.cz_graph_step(g, &x, 12, &y, y.len));
}

test "graph api: 5000 fuzzed descriptions are refused or run, never trap" {
    var f = try Fixture.init(110);
    defer f.deinit();
    const handles = handlesOf(&f);
    const base = try describe(testing.allocator, 12, &five_nodes);
    defer testing.allocator.free(base);
    var words: [64]u32 = undefined;
    var prng = std.Random.DefaultPrng.init(0xF022);
    const rng = prng.random();
    var accepted: usize = 0;
    for (0..5000) |_| {
        const len = mutate(rng, base, &words);
        const c = createVia(words[0..len], &handles);
        if (c.status != 0) {
            try testing.expect(c.graph == 0 and c.message[0] != 0);
            continue;
        }
        accepted += 1;
        try runFuzzed(rng, @ptrFromInt(c.graph));
    }
    // Some mutations keep the graph valid (e.g. another slice or op that fits).
    try testing.expect(accepted > 0 and accepted < 5000);
}

/// Copies base into words with 1-3 words changed and sometimes the length changed.
fn mutate(rng: std.Random, base: []const u32, words: *[64]u32) usize {
    @memcpy(words[0..base.len], base);
    for (base.len..words.len) |i| words[i] = rng.int(u32);
    for (0..rng.intRangeAtMost(usize, 1, 3)) |_| {
        const at = rng.uintLessThan(usize, base.len);
        words[at] = switch (rng.uintLessThan(u32, 4)) {
            0 => rng.int(u32),
            1 => rng.uintLessThan(u32, 20),
            2 => graph_input,
            else => words[at] +% 1,
        };
    }
    return switch (rng.uintLessThan(u32, 8)) {
        0 => rng.uintAtMost(usize, words.len),
        else => base.len,
    };
}

fn runFuzzed(rng: std.Random, g: ?*anyopaque) !void {
    defer api.cz_graph_destroy(g);
    var info: [info_fields]u64 = undefined;
    try testing.expectEqual(@as(u32, 0), api.cz_graph_info(g, &info, info.len));
    var x: [4096]f32 = undefined;
    t.randomFloats(rng, &x, 2);
    var y: [4096]f32 = undefined;
    const in_len: usize = @intCast(info[2]);
    // A mutated input_size may be wider than these buffers; the graph is still destroyed.
    if (in_len > x.len) return;
    try testing.expectEqual(@as(u32, 0), api.cz_graph_step(g, &x, in_len, &y, y.len));
    const graph = api.liveGraph(g).?;
    for (graph.nodes, 0..) |node, i| {
        const status = api.cz_graph_step_from(g, @intCast(i), &x, node.out_len, &y, y.len);
        try testing.expectEqual(@as(u32, if (node.downstream_reads_input) 1 else 0), status);
    }
    try testing.expectEqual(@as(u32, 0), api.cz_graph_reset(g));
}

fn createGraphWith(words: []const u32, a: Allocator, diag: *Diag) anyerror!*Graph {
    return Graph.create(a, words, &fixture_models, diag);
}

var fixture_models: [5]*Model = undefined;

test "graph: an allocation failure at every point of create is error.OutOfMemory, no leak" {
    var f = try Fixture.init(90);
    defer f.deinit();
    fixture_models = f.graph_models;
    const words = try describe(testing.allocator, 12, &five_nodes);
    defer testing.allocator.free(words);
    const points = try t.failEveryAllocation(Graph, @as([]const u32, words), createGraphWith);
    try testing.expect(points >= 2);
}
