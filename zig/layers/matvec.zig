//! The one matrix kernel that every layer streams its weights through: a matrix-vector product
//! for one step (batch 1) and a matrix-matrix product for a batch of rows, over one packed
//! layout, with f32, bf16 or int8 weights (docs/DESIGN.md, "Layer kernels" and "Precision").
//!
//! Layout. Rows are grouped in panels of `lanes` rows (the last padded with zero rows), panels
//! in blocks of `block_panels` (the last block may hold fewer, np). Within a block the panels
//! are interleaved column by column, so a block is one linear stream: for column c, np vectors
//! of `lanes` rows each. f32 element (r, c) of block k lives at word
//! `k * block_panels * lanes * cols + (c * np + p % block_panels) * lanes + r % lanes`
//! (p = r / lanes). bf16 stores two consecutive columns in one 32-bit word, the even column in
//! the low half: the same formula with c / 2 and ceil(cols / 2) in place of c and cols. A
//! layer's weights start on a cache line and every matrix takes a multiple of `lanes` words,
//! so every vector load is 64-byte aligned with 16 lanes and never splits a line.
//!
//! int8 (its quantisation and kernels in matvec_int8.zig) stores four consecutive columns of
//! one row in a 32-bit word (column c in byte c % 4),
//! the same formula with c / 4 and ceil(cols / 4), the VNNI layout: one 64-byte vector is 4
//! columns of 16 rows. Each block is followed by one `Footer` per panel (the rows' scales and
//! `128 * rowsum` corrections), so a block still streams as one line of memory.
//!
//! Batch 1 reads each weight once: one accumulator per panel (more for blocks of few panels,
//! whose chains would otherwise wait on the FMA latency), x[c] broadcast from memory. bf16
//! widens in registers: the low half of a word shifted left by 16 bits and the high half
//! masked are the two f32 weights exactly, so results differ from f32 only by the rounding of
//! the weights. The batch kernel keeps an R x P tile of accumulators in registers, R rows of
//! x by P panels, and reuses each weight vector R times.
const std = @import("std");
const builtin = @import("builtin");
const simd = @import("../simd.zig");
const desc = @import("desc.zig");

pub const lanes = simd.lanes;
pub const V = simd.V;
pub const WeightType = desc.WeightType;
const Bits = @Vector(lanes, u32);

/// Panels per block: 8 accumulators and their loads fit in 32 vector registers; 4 in 16.
pub const block_panels = if (simd.many_registers) 8 else 4;

/// Columns per iteration of the batch-1 loops.
const unroll_cols = 16;

/// FMA chains a batch-1 block keeps at least (4-cycle latency, one load per FMA).
pub const min_chains = 4;

/// Batch tile: 6 rows x 4 panels is 24 accumulators + 4 weights + 1 broadcast of 32
/// registers; with 16 registers, 6 x 2.
const tile_rows = 6;
const tile_panels = if (simd.many_registers) 4 else 2;

/// `n` rounded up to whole vectors.
pub fn padded(n: usize) usize {
    return simd.roundUp(n);
}

/// bf16 bits of `v`, rounded to nearest even. Finite inputs whose magnitude reaches
/// `bf16_overflow_bits` round to infinity (the image parser refuses them).
pub fn toBf16(v: f32) u16 {
    const bits: u32 = @bitCast(v);
    if (bits & 0x7FFF_FFFF > 0x7F80_0000) return @truncate((bits >> 16) | 0x40); // NaN stays NaN
    const rounded = bits +% (0x7FFF + ((bits >> 16) & 1));
    return @truncate(rounded >> 16);
}

/// The f32 value of bf16 bits.
pub fn fromBf16(b: u16) f32 {
    return @bitCast(@as(u32, b) << 16);
}

/// `v` rounded to bf16 and back.
pub fn roundBf16(v: f32) f32 {
    return fromBf16(toBf16(v));
}

/// The smallest f32 magnitude (as bits) that rounds to infinity in bf16: halfway between the
/// largest finite bf16 (0x7F7F) and 2^128.
pub const bf16_overflow_bits: u32 = 0x7F7F_8000;

/// The geometry of one packed matrix.
pub const Shape = struct {
    rows: usize,
    cols: usize,
    weight_type: WeightType = .f32,

    /// Stored columns: bf16 keeps a pair of columns in one word, int8 a quad.
    pub fn storedCols(s: Shape) usize {
        return switch (s.weight_type) {
            .f32 => s.cols,
            .bf16 => (s.cols + 1) / 2,
            .int8 => (s.cols + 3) / 4,
        };
    }

    /// Words of one panel's footer (int8 only).
    pub fn footerWords(s: Shape) usize {
        return if (s.weight_type == .int8) footer_words else 0;
    }

    /// 32-bit words (f32 slots of the arena) the packed matrix takes; a multiple of `lanes`.
    pub fn words(s: Shape) usize {
        return padded(s.rows) * s.storedCols() + padded(s.rows) / lanes * s.footerWords();
    }

    /// Words of scratch `matvec` needs for the quantised input: int8 only, a whole vector.
    pub fn inputWords(s: Shape) usize {
        return if (s.weight_type == .int8) padded(s.storedCols()) else 0;
    }

    pub fn blockWords(s: Shape) usize {
        return block_panels * (lanes * s.storedCols() + s.footerWords());
    }

    /// Panels in block `block`: block_panels, fewer in the last.
    pub fn blockPanels(s: Shape, block: usize) usize {
        const panels = padded(s.rows) / lanes;
        return @min(block_panels, panels - block * block_panels);
    }

    /// The footer of row r's panel (int8).
    pub fn footer(s: Shape, dst: []const f32, r: usize) *Footer {
        std.debug.assert(s.weight_type == .int8 and r < s.rows);
        const p = r / lanes;
        const block = p / block_panels;
        const np = s.blockPanels(block);
        const at = block * s.blockWords() + np * lanes * s.storedCols() +
            (p % block_panels) * footer_words;
        return @ptrCast(@alignCast(@constCast(dst[at..][0..footer_words].ptr)));
    }

    /// The word that holds element (r, c).
    pub fn wordAt(s: Shape, r: usize, c: usize) usize {
        std.debug.assert(r < s.rows and c < s.cols);
        const p = r / lanes;
        const block = p / block_panels;
        const np = s.blockPanels(block);
        const col = switch (s.weight_type) {
            .f32 => c,
            .bf16 => c / 2,
            .int8 => c / 4,
        };
        return block * s.blockWords() + (col * np + p % block_panels) * lanes + r % lanes;
    }

    /// Writes element (r, c) of the matrix into packed `dst`, rounding to the weight type.
    /// int8 quantises with row r's scale, which `rowScale` must have set.
    pub fn put(s: Shape, dst: []f32, r: usize, c: usize, v: f32) void {
        const at = s.wordAt(r, c);
        switch (s.weight_type) {
            .f32 => dst[at] = v,
            .bf16 => {
                const word: *u32 = @ptrCast(&dst[at]);
                const shift: u5 = if (c % 2 == 0) 0 else 16;
                const keep = ~(@as(u32, 0xFFFF) << shift);
                word.* = (word.* & keep) | (@as(u32, toBf16(v)) << shift);
            },
            .int8 => {
                const f = s.footer(dst, r);
                const q = quantiseWeight(v, f.scale[r % lanes]);
                const bytes: *[4]i8 = @ptrCast(&dst[at]);
                f.correction[r % lanes] +%= 128 * (@as(i32, q) - bytes[c % 4]);
                bytes[c % 4] = q;
            },
        }
    }

    /// Element (r, c) as the kernels see it (tests and debugging); int8 as q * scale.
    pub fn get(s: Shape, w: []const f32, r: usize, c: usize) f32 {
        const at = s.wordAt(r, c);
        return switch (s.weight_type) {
            .f32 => w[at],
            .bf16 => {
                const word: u32 = @bitCast(w[at]);
                return fromBf16(@truncate(if (c % 2 == 0) word else word >> 16));
            },
            .int8 => @as(f32, @floatFromInt(s.getQ(w, r, c))) * s.footer(w, r).scale[r % lanes],
        };
    }

    /// The int8 value of element (r, c).
    pub fn getQ(s: Shape, w: []const f32, r: usize, c: usize) i8 {
        const bytes: *const [4]i8 = @ptrCast(&w[s.wordAt(r, c)]);
        return bytes[c % 4];
    }

    /// Row r's int8 scale and correction (tests).
    pub fn rowFooter(s: Shape, w: []const f32, r: usize) struct { f32, i32 } {
        const f = s.footer(w, r);
        return .{ f.scale[r % lanes], f.correction[r % lanes] };
    }
};

const int8 = @import("matvec_int8.zig");
pub const Footer = int8.Footer;
pub const int8_cols_max = int8.int8_cols_max;
pub const input_min = int8.input_min;
pub const Kernel = int8.Kernel;
pub const vnni_available = int8.vnni_available;
pub const default_kernel = int8.default_kernel;
pub const weightScale = int8.weightScale;
pub const quantiseWeight = int8.quantiseWeight;
pub const quantiseInput = int8.quantiseInput;
const footer_words = int8.footer_words;

/// Sets row r's int8 scale from the largest magnitude in `parts` (the row's values, in any
/// order and split in any way) and zeroes its correction; a no-op for f32 and bf16. Call it
/// before writing the row's elements.
pub fn rowScale(s: Shape, dst: []f32, r: usize, parts: []const []const f32) void {
    if (s.weight_type != .int8) return;
    var max_abs: f32 = 0;
    for (parts) |part| for (part) |v| {
        max_abs = @max(max_abs, @abs(v));
    };
    const f = s.footer(dst, r);
    f.scale[r % lanes] = weightScale(max_abs);
    f.correction[r % lanes] = 0;
}

/// Packs row-major `w` [rows][cols] into `dst` [s.words()], zeroing the padding.
pub fn pack(s: Shape, w: []const f32, dst: []f32) void {
    std.debug.assert(w.len == s.rows * s.cols and dst.len == s.words());
    @memset(dst, 0);
    for (0..s.rows) |r| {
        const row = w[r * s.cols ..][0..s.cols];
        rowScale(s, dst, r, &.{row});
        packRow(s, row, r, 0, dst);
    }
}

/// Writes `src` into row `r`, columns `col0..col0 + src.len`, of packed `dst`.
pub fn packRow(s: Shape, src: []const f32, r: usize, col0: usize, dst: []f32) void {
    std.debug.assert(col0 + src.len <= s.cols and dst.len == s.words());
    for (src, col0..) |v, c| s.put(dst, r, c, v);
}

/// Copies `b` [rows] into `dst` [padded(rows)], zeroing the padding.
pub fn packBias(b: []const f32, dst: []f32) void {
    std.debug.assert(dst.len == padded(b.len));
    @memset(dst, 0);
    @memcpy(dst[0..b.len], b);
}

/// Stores one panel's outputs at y[row0..], dropping the lanes past y.len.
pub inline fn storeRow(y: []f32, row0: usize, v: V) void {
    if (row0 + lanes <= y.len) {
        simd.storePtr(y.ptr + row0, v);
    } else if (row0 < y.len) {
        simd.storePartial(y[row0..], v);
    }
}

/// The even-column (low half) and odd-column (high half) f32 weights of a bf16 word vector.
inline fn lowHalf(bits: Bits) V {
    return @bitCast(bits << @splat(16));
}

inline fn highHalf(bits: Bits) V {
    return @bitCast(bits & @as(Bits, @splat(0xFFFF_0000)));
}

inline fn loadBits(p: [*]const f32) Bits {
    return @bitCast(simd.loadPtr(p));
}

// ---- batch 1 -------------------------------------------------------------------------------

/// y[0..rows] = W x + b, W packed by `pack` as `s` (s.cols == x.len), b [padded(rows)]. When y
/// holds padded(rows) floats the padding lanes are written too (as 0 + 0). `xq` is scratch
/// of s.inputWords() words (empty unless int8) for the quantised x.
pub fn matvec(s: Shape, w: []const f32, b: []const f32, x: []const f32, y: []f32, xq: []f32) void {
    std.debug.assert(s.cols == x.len and w.len == s.words());
    std.debug.assert(b.len >= padded(s.rows) and y.len >= s.rows);
    switch (s.weight_type) {
        .int8 => {
            std.debug.assert(xq.len >= s.inputWords());
            const sx = quantiseInput(x, xq[0..s.inputWords()]);
            int8.matvecInt8(s, w.ptr, b.ptr, @ptrCast(xq.ptr), sx, y, default_kernel);
        },
        inline else => |t| matvecAs(t, s, w.ptr, b.ptr, x, y),
    }
}

fn matvecAs(
    comptime t: WeightType,
    s: Shape,
    w: [*]const f32,
    b: [*]const f32,
    x: []const f32,
    y: []f32,
) void {
    const panels = padded(s.rows) / lanes;
    if (t == .f32 and panels > block_panels and panels <= 2 * block_panels) {
        switch (panels - block_panels) {
            inline 1...block_panels => |rest| return twoBlocksF32(rest, s, w, b, x, y),
            else => unreachable,
        }
    }
    const whole = panels / block_panels;
    for (0..whole) |k| {
        vecBlock(t, block_panels, w + k * s.blockWords(), b, k * block_panels * lanes, x, y);
    }
    switch (panels - whole * block_panels) {
        0 => {},
        inline 1...block_panels - 1 => |np| {
            vecBlock(t, np, w + whole * s.blockWords(), b, whole * block_panels * lanes, x, y);
        },
        else => unreachable,
    }
}

fn vecBlock(
    comptime t: WeightType,
    comptime np: usize,
    w: [*]const f32,
    b: [*]const f32,
    row0: usize,
    x: []const f32,
    y: []f32,
) void {
    var acc: [np]V = undefined;
    inline for (0..np) |j| acc[j] = simd.loadPtr(b + row0 + j * lanes);
    switch (t) {
        .f32 => accumulateF32(np, w, x, &acc),
        .bf16 => accumulateBf16(np, w, x, &acc),
        .int8 => comptime unreachable,
    }
    inline for (0..np) |j| storeRow(y, row0 + j * lanes, acc[j]);
}

/// acc[j] += sum_c x[c] * panel_j[c] over one f32 block of np panels starting at `w`.
inline fn accumulateF32(comptime np: usize, w: [*]const f32, x: []const f32, acc: *[np]V) void {
    const sets = (min_chains + np - 1) / np;
    const step = np * lanes;
    var a: [sets][np]V = @splat(@splat(@splat(0)));
    a[0] = acc.*;
    var o = w;
    var c: usize = 0;
    while (c + unroll_cols <= x.len) : (c += unroll_cols) {
        inline for (0..unroll_cols) |u| {
            const xv: V = @splat(x.ptr[c + u]);
            const acc_u = &a[u % sets];
            inline for (0..np) |j| {
                acc_u[j] = simd.madd(xv, simd.loadPtr(o + u * step + j * lanes), acc_u[j]);
            }
        }
        o += unroll_cols * step;
    }
    while (c < x.len) : (c += 1) {
        const xv: V = @splat(x.ptr[c]);
        inline for (0..np) |j| a[0][j] = simd.madd(xv, simd.loadPtr(o + j * lanes), a[0][j]);
        o += step;
    }
    inline for (0..np) |j| {
        var total = a[0][j];
        inline for (1..sets) |k| total += a[k][j];
        acc[j] = total;
    }
}

/// A matrix of two blocks (block_panels + `rest` panels, an LSTM or GRU step of a few dozen
/// units) in one pass over the columns: the second block's FMA chains run between the
/// first's instead of after them, so the pass costs the FMA throughput of all the panels
/// rather than two chain latencies in turn. Each block keeps the accumulator sets and the
/// order of accumulateF32 (column c into set c % sets of its unrolled part, the tail into set
/// 0, the sets summed in order), so every row's sum is the same bits as vecBlock's.
fn twoBlocksF32(
    comptime rest: usize,
    s: Shape,
    w: [*]const f32,
    b: [*]const f32,
    x: []const f32,
    y: []f32,
) void {
    const n1 = block_panels;
    const n2 = rest;
    const sets1 = (min_chains + n1 - 1) / n1;
    const sets2 = (min_chains + n2 - 1) / n2;
    const step1 = n1 * lanes;
    const step2 = n2 * lanes;
    const row2 = n1 * lanes;
    var a1: [sets1][n1]V = @splat(@splat(@splat(0)));
    var a2: [sets2][n2]V = @splat(@splat(@splat(0)));
    inline for (0..n1) |j| a1[0][j] = simd.loadPtr(b + j * lanes);
    inline for (0..n2) |j| a2[0][j] = simd.loadPtr(b + row2 + j * lanes);
    var o1 = w;
    var o2 = w + s.blockWords();
    var c: usize = 0;
    while (c + unroll_cols <= x.len) : (c += unroll_cols) {
        inline for (0..unroll_cols) |u| {
            const xv: V = @splat(x.ptr[c + u]);
            inline for (0..n1) |j| {
                a1[u % sets1][j] = simd.madd(xv, simd.loadPtr(o1 + u * step1 + j * lanes), a1[u % sets1][j]);
            }
            inline for (0..n2) |j| {
                a2[u % sets2][j] = simd.madd(xv, simd.loadPtr(o2 + u * step2 + j * lanes), a2[u % sets2][j]);
            }
        }
        o1 += unroll_cols * step1;
        o2 += unroll_cols * step2;
    }
    while (c < x.len) : (c += 1) {
        const xv: V = @splat(x.ptr[c]);
        inline for (0..n1) |j| a1[0][j] = simd.madd(xv, simd.loadPtr(o1 + j * lanes), a1[0][j]);
        inline for (0..n2) |j| a2[0][j] = simd.madd(xv, simd.loadPtr(o2 + j * lanes), a2[0][j]);
        o1 += step1;
        o2 += step2;
    }
    inline for (0..n1) |j| {
        var total = a1[0][j];
        inline for (1..sets1) |k| total += a1[k][j];
        storeRow(y, j * lanes, total);
    }
    inline for (0..n2) |j| {
        var total = a2[0][j];
        inline for (1..sets2) |k| total += a2[k][j];
        storeRow(y, row2 + j * lanes, total);
    }
}

/// The bf16 form of accumulateF32: one word vector holds a column pair of a panel.
inline fn accumulateBf16(comptime np: usize, w: [*]const f32, x: []const f32, acc: *[np]V) void {
    const sets = (min_chains + 2 * np - 1) / (2 * np);
    const step = np * lanes;
    var even: [sets][np]V = @splat(@splat(@splat(0)));
    var odd: [sets][np]V = @splat(@splat(@splat(0)));
    even[0] = acc.*;
    const pairs = x.len / 2;
    const unroll_pairs = unroll_cols / 2;
    var o = w;
    var p: usize = 0;
    while (p + unroll_pairs <= pairs) : (p += unroll_pairs) {
        inline for (0..unroll_pairs) |u| {
            const x_even: V = @splat(x.ptr[2 * (p + u)]);
            const x_odd: V = @splat(x.ptr[2 * (p + u) + 1]);
            inline for (0..np) |j| {
                const bits = loadBits(o + u * step + j * lanes);
                even[u % sets][j] = simd.madd(x_even, lowHalf(bits), even[u % sets][j]);
                odd[u % sets][j] = simd.madd(x_odd, highHalf(bits), odd[u % sets][j]);
            }
        }
        o += unroll_pairs * step;
    }
    while (p < pairs) : (p += 1) {
        const x_even: V = @splat(x.ptr[2 * p]);
        const x_odd: V = @splat(x.ptr[2 * p + 1]);
        inline for (0..np) |j| {
            const bits = loadBits(o + j * lanes);
            even[0][j] = simd.madd(x_even, lowHalf(bits), even[0][j]);
            odd[0][j] = simd.madd(x_odd, highHalf(bits), odd[0][j]);
        }
        o += step;
    }
    if (x.len % 2 == 1) {
        // The last word's high halves are zero padding; its x would be past the end.
        const x_last: V = @splat(x.ptr[x.len - 1]);
        inline for (0..np) |j| {
            even[0][j] = simd.madd(x_last, lowHalf(loadBits(o + j * lanes)), even[0][j]);
        }
    }
    inline for (0..np) |j| {
        var total = even[0][j] + odd[0][j];
        inline for (1..sets) |k| total += even[k][j] + odd[k][j];
        acc[j] = total;
    }
}

// ---- batch n -------------------------------------------------------------------------------

/// y[r] = W x[r] + b for `batch` rows: x is batch x cols and y batch x rows, both dense.
/// int8 runs the rows through `matvec` one at a time (`xq` as there): each row is its own
/// input vector, quantised with its own scale.
pub fn matmul(
    s: Shape,
    w: []const f32,
    b: []const f32,
    x: []const f32,
    y: []f32,
    batch: usize,
    xq: []f32,
) void {
    std.debug.assert(w.len == s.words() and b.len >= padded(s.rows));
    std.debug.assert(x.len >= batch * s.cols and y.len >= batch * s.rows);
    switch (s.weight_type) {
        .int8 => for (0..batch) |r| {
            const xr = x[r * s.cols ..][0..s.cols];
            matvec(s, w, b, xr, y[r * s.rows ..][0..s.rows], xq);
        },
        inline else => |t| {
            const m = Mat(t){ .s = s, .w = w.ptr, .b = b.ptr };
            var r: usize = 0;
            while (r + tile_rows <= batch) : (r += tile_rows) m.rowBlock(tile_rows, x, y, r);
            switch (batch - r) {
                0 => {},
                inline 1...tile_rows - 1 => |n| m.rowBlock(n, x, y, r),
                else => unreachable,
            }
        },
    }
}

fn Mat(comptime t: WeightType) type {
    return struct {
        s: Shape,
        w: [*]const f32,
        b: [*]const f32,

        const Self = @This();

        /// R rows of x, from row r0, through every block of panels.
        fn rowBlock(m: Self, comptime R: usize, x: []const f32, y: []f32, r0: usize) void {
            const xr = x[r0 * m.s.cols ..][0 .. R * m.s.cols];
            const yr = y[r0 * m.s.rows ..][0 .. R * m.s.rows];
            const panels = padded(m.s.rows) / lanes;
            const whole = panels / block_panels;
            for (0..whole) |k| m.blockTiles(R, block_panels, k, xr, yr);
            switch (panels - whole * block_panels) {
                0 => {},
                inline 1...block_panels - 1 => |np| m.blockTiles(R, np, whole, xr, yr),
                else => unreachable,
            }
        }

        /// Block k (np panels) in tiles of up to tile_panels panels.
        fn blockTiles(
            m: Self,
            comptime R: usize,
            comptime np: usize,
            k: usize,
            x: []const f32,
            y: []f32,
        ) void {
            const w = m.w + k * m.s.blockWords();
            comptime var p0 = 0;
            inline while (p0 < np) : (p0 += tile_panels) {
                const P = @min(tile_panels, np - p0);
                m.tile(R, P, w + p0 * lanes, np * lanes, (k * block_panels + p0) * lanes, x, y);
            }
        }

        /// R x P accumulators over every column; weight vectors of one column are `stride`
        /// words apart from the next column's.
        fn tile(
            m: Self,
            comptime R: usize,
            comptime P: usize,
            w: [*]const f32,
            stride: usize,
            row0: usize,
            x: []const f32,
            y: []f32,
        ) void {
            const cols = m.s.cols;
            var acc: [R][P]V = undefined;
            inline for (0..P) |p| {
                const bias = simd.loadPtr(m.b + row0 + p * lanes);
                inline for (0..R) |r| acc[r][p] = bias;
            }
            var o = w;
            switch (t) {
                .f32 => for (0..cols) |c| {
                    var wv: [P]V = undefined;
                    inline for (0..P) |p| wv[p] = simd.loadPtr(o + p * lanes);
                    fmaTile(R, P, &acc, &wv, x.ptr + c, cols);
                    o += stride;
                },
                .bf16 => {
                    for (0..cols / 2) |pair| {
                        var wv: [P]V = undefined;
                        inline for (0..P) |p| wv[p] = lowHalf(loadBits(o + p * lanes));
                        fmaTile(R, P, &acc, &wv, x.ptr + 2 * pair, cols);
                        inline for (0..P) |p| wv[p] = highHalf(loadBits(o + p * lanes));
                        fmaTile(R, P, &acc, &wv, x.ptr + 2 * pair + 1, cols);
                        o += stride;
                    }
                    if (cols % 2 == 1) {
                        var wv: [P]V = undefined;
                        inline for (0..P) |p| wv[p] = lowHalf(loadBits(o + p * lanes));
                        fmaTile(R, P, &acc, &wv, x.ptr + cols - 1, cols);
                    }
                },
                .int8 => comptime unreachable,
            }
            inline for (0..R) |r| {
                const y_row = y[r * m.s.rows ..][0..m.s.rows];
                inline for (0..P) |p| storeRow(y_row, row0 + p * lanes, acc[r][p]);
            }
        }
    };
}

/// acc[r][p] += wv[p] * x[r * cols] for the tile's rows.
inline fn fmaTile(
    comptime R: usize,
    comptime P: usize,
    acc: *[R][P]V,
    wv: *const [P]V,
    x: [*]const f32,
    cols: usize,
) void {
    inline for (0..R) |r| {
        const xv: V = @splat(x[r * cols]);
        inline for (0..P) |p| acc[r][p] = simd.madd(wv[p], xv, acc[r][p]);
    }
}

// ---- tests ---------------------------------------------------------------------------------

const testing = std.testing;

/// f64 reference: y = W x + b with row-major W read through `weight` (f32 or bf16-rounded).
fn reference(s: Shape, w: []const f32, b: []const f32, x: []const f32, y: []f64) void {
    for (y, 0..) |*out, r| {
        var sum: f64 = b[r];
        for (x, 0..) |xi, c| {
            const wv = w[r * s.cols + c];
            const used: f64 = if (s.weight_type == .bf16) roundBf16(wv) else wv;
            sum += used * xi;
        }
        out.* = sum;
    }
}

pub const test_shapes = [_][2]usize{
    .{ 1, 1 },    .{ 3, 17 },   .{ 17, 3 },    .{ 33, 33 }, .{ 100, 5 },
    .{ 129, 64 }, .{ 128, 31 }, .{ 200, 130 }, .{ 16, 2 },  .{ 257, 7 },
};

fn expectShape(gpa: std.mem.Allocator, r: std.Random, s: Shape) !void {
    var arena = std.heap.ArenaAllocator.init(gpa);
    defer arena.deinit();
    const a = arena.allocator();
    const batch = 13;
    const w = try a.alloc(f32, s.rows * s.cols);
    const b = try a.alloc(f32, s.rows);
    const x = try a.alloc(f32, s.cols * batch);
    for (w) |*v| v.* = r.float(f32) - 0.5;
    for (b) |*v| v.* = r.float(f32) - 0.5;
    for (x) |*v| v.* = r.float(f32) * 2 - 1;
    const wp = try a.alloc(f32, s.words());
    const bp = try a.alloc(f32, padded(s.rows));
    pack(s, w, wp);
    packBias(b, bp);
    for (0..s.rows) |row| for (0..s.cols) |c| {
        const v = w[row * s.cols + c];
        try testing.expectEqual(if (s.weight_type == .bf16) roundBf16(v) else v, s.get(wp, row, c));
    };
    const want = try a.alloc(f64, s.rows * batch);
    for (0..batch) |k| {
        reference(s, w, b, x[k * s.cols ..][0..s.cols], want[k * s.rows ..][0..s.rows]);
    }
    // Sums of `cols` products of magnitude <= 0.5 in f32: a few ulps of the largest partials.
    const y = try a.alloc(f32, padded(s.rows));
    matvec(s, wp, bp, x[0..s.cols], y, &.{});
    for (want[0..s.rows], y[0..s.rows]) |e, got| try testing.expectApproxEqAbs(e, got, 1e-5);
    for (y[s.rows..]) |pad| try testing.expectEqual(0, pad);
    // A y of exactly `rows` floats: the ragged panel is stored partially.
    const exact = try a.alloc(f32, s.rows + 1);
    exact[s.rows] = 42;
    matvec(s, wp, bp, x[0..s.cols], exact[0..s.rows], &.{});
    try testing.expectEqualSlices(f32, y[0..s.rows], exact[0..s.rows]);
    try testing.expectEqual(42, exact[s.rows]);
    const yb = try a.alloc(f32, s.rows * batch + 1);
    for ([_]usize{ 1, 2, 6, 7, 13 }) |n| {
        @memset(yb, std.math.nan(f32));
        matmul(s, wp, bp, x[0 .. n * s.cols], yb[0 .. n * s.rows], n, &.{});
        for (want[0 .. n * s.rows], yb[0 .. n * s.rows]) |e, got| {
            try testing.expectApproxEqAbs(e, got, 1e-5);
        }
        try testing.expect(std.math.isNan(yb[n * s.rows]));
    }
}

test "matvec, matmul: f32 and bf16 match the f64 reference on odd shapes" {
    var rng = std.Random.DefaultPrng.init(7);
    for (test_shapes) |shape| for ([_]WeightType{ .f32, .bf16 }) |t| {
        const s = Shape{ .rows = shape[0], .cols = shape[1], .weight_type = t };
        expectShape(testing.allocator, rng.random(), s) catch |err| {
            std.debug.print("shape {d}x{d} {s}\n", .{ s.rows, s.cols, @tagName(t) });
            return err;
        };
    };
}

test "matvec: a NaN past the end of an odd-length x is never read" {
    const s = Shape{ .rows = 3, .cols = 3, .weight_type = .bf16 };
    var wp: [s.words()]f32 = undefined;
    pack(s, &.{ 1, 2, 3, 4, 5, 6, 7, 8, 9 }, &wp);
    var bp: [padded(3)]f32 = @splat(0);
    const x = [4]f32{ 1, 1, 1, std.math.nan(f32) };
    var y: [3]f32 = undefined;
    matvec(s, &wp, &bp, x[0..3], &y, &.{});
    try testing.expectEqualSlices(f32, &.{ 6, 15, 24 }, &y);
    matmul(s, &wp, &bp, x[0..3], &y, 1, &.{});
    try testing.expectEqualSlices(f32, &.{ 6, 15, 24 }, &y);
}

test "toBf16: rounds to nearest even and keeps the f32 range" {
    try testing.expectEqual(@as(u16, 0x3F80), toBf16(1.0));
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
    try testing.expectEqual(@as(u16, 0x3F80), toBf16(1.0 + 1.0 / 256.0));
    // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties go to 1 + 2^-6.
    try testing.expectEqual(@as(u16, 0x3F82), toBf16(1.0 + 3.0 / 256.0));
    try testing.expectEqual(@as(u16, 0x3F81), toBf16(1.0 + 1.0 / 256.0 + 1.0 / 65536.0));
    try testing.expectEqual(@as(u16, 0xBF80), toBf16(-1.0));
    try testing.expectEqual(@as(u16, 0x8000), toBf16(-0.0));
    const tiny: f32 = @bitCast(@as(u32, 0x0000_8001)); // subnormal, rounds up to 0x0001
    try testing.expectEqual(@as(u16, 0x0001), toBf16(tiny));
    const below: f32 = @bitCast(bf16_overflow_bits - 1);
    try testing.expectEqual(@as(u16, 0x7F7F), toBf16(below));
    try testing.expectEqual(@as(u16, 0x7F80), toBf16(@bitCast(bf16_overflow_bits)));
    try testing.expect(std.math.isNan(roundBf16(std.math.nan(f32))));
}

test {
    _ = @import("matvec_int8.zig");
}
