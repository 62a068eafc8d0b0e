//! The model image v1 (docs/DESIGN.md, "Model image v1"): parse and validate every byte of
//! an image at any alignment, then walk its layers again to copy tensors out for packing.
//! Every rejection names the layer, kind and field with what was expected and what was found.
const std = @import("std");
const desc = @import("layers/desc.zig");
const dense = @import("layers/dense.zig");
const conv1d = @import("layers/conv1d.zig");
const norm = @import("layers/norm.zig");
const lstm = @import("layers/lstm.zig");
const gru = @import("layers/gru.zig");
const attention = @import("layers/attention.zig");
const skip = @import("layers/skip.zig");
const mv = @import("layers/matvec.zig");

const LayerDesc = desc.LayerDesc;

/// The kernel namespace of each kind; every one exposes the interface in docs/DESIGN.md.
pub fn Impl(comptime kind: desc.Kind) type {
    return switch (kind) {
        .dense => dense,
        .lstm => lstm,
        .gru => gru,
        .conv1d => conv1d,
        .batchnorm => norm.batchnorm,
        .layernorm => norm.layernorm,
        .prelu => norm.prelu,
        .activation => norm.activation,
        .attention => attention.attention,
        .transformer => attention.transformer,
        .skip => skip,
    };
}

pub const magic: u32 = 0x4D495A43;
pub const version: u32 = 1;
pub const header_words = 8;
pub const record_words = 16;
pub const layer_count_max = 1024;
pub const max_batch_max = 4096;

pub const Error = error{ BadImage, Limit };

/// A message in a fixed buffer; longer messages are cut, never overflowed.
pub const Diag = struct {
    buf: [256]u8 = undefined,
    len: usize = 0,

    pub fn set(d: *Diag, comptime fmt: []const u8, args: anytype) void {
        var w = std.Io.Writer.fixed(&d.buf);
        w.print(fmt, args) catch {};
        d.len = w.end;
    }

    pub fn fail(d: *Diag, err: anytype, comptime fmt: []const u8, args: anytype) @TypeOf(err) {
        d.set(fmt, args);
        return err;
    }

    pub fn message(d: *const Diag) []const u8 {
        return d.buf[0..d.len];
    }
};

pub const Header = struct {
    layer_count: u32,
    input_size: u32,
    output_size: u32,
    max_batch: u32,
};

/// A validated image: the bytes it was parsed from and what the model needs to plan memory.
pub const Image = struct {
    bytes: []const u8,
    header: Header,
    parameter_count: u64,
    /// Bytes the parameters take as the model holds them: each matrix element at its layer's
    /// weight_type, everything else as f32 (padding not counted).
    weight_bytes: u64,
    /// The most tensor floats of any one layer: the size of the packing temporary.
    layer_floats_max: usize,

    pub fn layers(img: *const Image) LayerIter {
        return .{ .bytes = img.bytes, .offset = header_words * 4, .left = img.header.layer_count };
    }
};

/// One validated layer record and where its tensors' data lie in the image.
pub const LayerView = struct {
    desc: LayerDesc,
    tensor_count: u8,
    lens: [desc.tensors_max]u32,
    /// Byte offset of each tensor's first element.
    data_offsets: [desc.tensors_max]usize,
    /// For a matrix stored quantised (desc.int8_stored): its rows and the byte offset of their
    /// f32 scales; 0 rows for every other tensor (its data are f32).
    scale_rows: [desc.tensors_max]u32,
    scale_offsets: [desc.tensors_max]usize,

    pub fn floats(v: *const LayerView) usize {
        var n: usize = 0;
        for (v.lens[0..v.tensor_count]) |len| n += len;
        return n;
    }

    /// Copies the tensors (little-endian, unaligned) into `tmp` and points `out` at them. A
    /// matrix stored quantised becomes q * scale of its row: the packing quantises it again,
    /// which gives back q and, for every scale max / 127 can produce, the same scale
    /// (docs/DESIGN.md, "Model image v1"). Only one layer is ever in `tmp`.
    pub fn copyTensors(
        v: *const LayerView,
        bytes: []const u8,
        tmp: []f32,
        out: *[desc.tensors_max][]const f32,
    ) []const []const f32 {
        var at: usize = 0;
        for (0..v.tensor_count) |t| {
            const dst = tmp[at..][0..v.lens[t]];
            if (v.scale_rows[t] > 0) {
                dequantise(bytes, v.data_offsets[t], v.scale_offsets[t], v.scale_rows[t], dst);
            } else {
                const src = bytes[v.data_offsets[t]..][0 .. dst.len * 4];
                for (dst, 0..) |*f, e| f.* = @bitCast(word(src, e * 4));
            }
            out[t] = dst;
            at += dst.len;
        }
        return out[0..v.tensor_count];
    }
};

/// Walks the layers of an image that parse() accepted; asserts rather than re-checks.
pub const LayerIter = struct {
    bytes: []const u8,
    offset: usize,
    left: u32,

    pub fn next(it: *LayerIter) ?LayerView {
        if (it.left == 0) return null;
        it.left -= 1;
        const rec = Record.read(it.bytes, it.offset);
        var view = LayerView{
            .desc = rec.toDesc(),
            .tensor_count = @intCast(rec.w[14]),
            .lens = undefined,
            .data_offsets = undefined,
            .scale_rows = @splat(0),
            .scale_offsets = @splat(0),
        };
        const stored = if (view.desc.int8_stored) matrixMask(&view.desc) else 0;
        var at = it.offset + record_words * 4;
        for (0..view.tensor_count) |t| {
            view.lens[t] = word(it.bytes, at);
            view.data_offsets[t] = at + 4;
            if ((stored >> @intCast(t)) & 1 == 1) {
                at += 4 + int8Bytes(view.lens[t]);
                view.scale_rows[t] = word(it.bytes, at);
                view.scale_offsets[t] = at + 4;
                at += 4 + @as(usize, view.scale_rows[t]) * 4;
            } else {
                at += 4 + @as(usize, view.lens[t]) * 4;
            }
        }
        it.offset = at;
        return view;
    }
};

fn word(bytes: []const u8, offset: usize) u32 {
    return std.mem.readInt(u32, bytes[offset..][0..4], .little);
}

/// Bytes of `len` int8 values padded to whole words.
fn int8Bytes(len: u32) usize {
    return (@as(usize, len) + 3) / 4 * 4;
}

/// dst[e] = q[e] * scale[e / cols] for a matrix stored quantised (rows divides dst.len).
fn dequantise(bytes: []const u8, q_at: usize, scale_at: usize, rows: u32, dst: []f32) void {
    std.debug.assert(rows > 0 and dst.len % rows == 0);
    const cols = dst.len / rows;
    for (0..rows) |r| {
        const scale: f32 = @bitCast(word(bytes, scale_at + r * 4));
        for (dst[r * cols ..][0..cols], r * cols..) |*f, e| {
            const q: i8 = @bitCast(bytes[q_at + e]);
            f.* = @as(f32, @floatFromInt(q)) * scale;
        }
    }
}

/// Rows of matrix tensor `t` as stored quantised, one scale each: the rows the library
/// quantises separately (LSTM's fused [Wx | Wh] row r gives both tensors' row r one scale).
fn storedRows(d: *const LayerDesc, t: usize) u32 {
    return switch (d.kind) {
        .lstm => 4 * d.out,
        .gru => 3 * d.out,
        .transformer => if (t == 12) d.p[2] else d.out, // tensor 12 is W1 [ffDim][d]
        else => d.out,
    };
}

/// Word 15's value for a dense layer held as compressed sparse rows (zig/layers/sparse.zig).
pub const sparse_word: u32 = 3;
const sparse = @import("layers/sparse.zig");

const Record = struct {
    w: [record_words]u32,

    fn read(bytes: []const u8, offset: usize) Record {
        var rec: Record = undefined;
        for (&rec.w, 0..) |*v, i| v.* = word(bytes, offset + i * 4);
        return rec;
    }

    /// Only after the kind and act words were checked.
    fn toDesc(rec: Record) LayerDesc {
        return .{
            .kind = @enumFromInt(rec.w[0]),
            .act = @enumFromInt(rec.w[1]),
            .in = rec.w[2],
            .out = rec.w[3],
            .p = rec.w[4..12].*,
            .f = .{ @bitCast(rec.w[12]), @bitCast(rec.w[13]) },
            .weight_type = switch (rec.w[15]) {
                sparse_word => .f32,
                weight_type_int8_stored => .int8,
                else => @enumFromInt(rec.w[15]),
            },
            .sparse = rec.w[15] == sparse_word,
            .int8_stored = rec.w[15] == weight_type_int8_stored,
        };
    }
};

/// Word 15's value for int8 matrices carried quantised: int8 values and a scale per row.
pub const weight_type_int8_stored: u32 = 4;

pub fn parse(bytes: []const u8, diag: *Diag) Error!Image {
    const header = try parseHeader(bytes, diag);
    var img = Image{
        .bytes = bytes,
        .header = header,
        .parameter_count = 0,
        .weight_bytes = 0,
        .layer_floats_max = 0,
    };
    var offset: usize = header_words * 4;
    var prev_out = header.input_size;
    var last_kind: desc.Kind = .dense;
    for (0..header.layer_count) |index| {
        const layer = try parseLayer(bytes, offset, index, prev_out, diag);
        if (layer.desc.kind == .skip and layer.desc.out > header.input_size) {
            const at = LayerAt{ .diag = diag, .index = index, .kind = .skip };
            return at.fail(error.BadImage, "out is {d}, expected at most {d} (the header's " ++
                "input_size: skip adds the model input)", .{ layer.desc.out, header.input_size });
        }
        offset = layer.end;
        prev_out = layer.desc.out;
        last_kind = layer.desc.kind;
        img.parameter_count += layer.floats;
        img.weight_bytes += layer.weight_bytes;
        img.layer_floats_max = @max(img.layer_floats_max, layer.floats);
    }
    if (offset != bytes.len) {
        return diag.fail(error.BadImage, "image has {d} bytes after the last layer record, " ++
            "expected none (layers end at byte {d} of {d})", .{
            bytes.len - offset, offset, bytes.len,
        });
    }
    if (prev_out != header.output_size) {
        const at = LayerAt{ .diag = diag, .index = header.layer_count - 1, .kind = last_kind };
        return at.fail(error.BadImage, "out is {d}, expected {d} (the header's output_size)", .{
            prev_out, header.output_size,
        });
    }
    return img;
}

const header_names = [header_words][]const u8{
    "magic",      "version",     "header_words", "layer_count",
    "input_size", "output_size", "max_batch",    "image_bytes",
};

/// Reads only the 32 header bytes (and checks image_bytes against bytes.len).
pub fn parseHeader(bytes: []const u8, diag: *Diag) Error!Header {
    if (bytes.len < header_words * 4) {
        return diag.fail(error.BadImage, "image is {d} bytes, expected at least {d} " ++
            "(the header)", .{
            bytes.len, header_words * 4,
        });
    }
    var h: [header_words]u32 = undefined;
    for (&h, 0..) |*v, i| v.* = word(bytes, i * 4);
    if (h[0] != magic) {
        return diag.fail(error.BadImage, "header word 0 (magic) is 0x{X:0>8}, expected " ++
            "0x{X:0>8} (\"CZIM\"): not a cadenza model image", .{ h[0], magic });
    }
    const expected = [3]u32{ magic, version, header_words };
    for (1..3) |i| {
        if (h[i] != expected[i]) {
            return diag.fail(error.BadImage, "header word {d} ({s}) is {d}, expected {d}", .{
                i, header_names[i], h[i], expected[i],
            });
        }
    }
    if (h[7] != bytes.len) {
        return diag.fail(error.BadImage, "header word 7 (image_bytes) is {d}, expected {d} " ++
            "(the image length passed)", .{ h[7], bytes.len });
    }
    const bounds = [_]struct { usize, u32 }{
        .{ 3, layer_count_max }, .{ 4, desc.width_max },
        .{ 5, desc.width_max },  .{ 6, max_batch_max },
    };
    for (bounds) |b| {
        const i, const max = b;
        if (h[i] == 0 or h[i] > max) {
            const err = if (h[i] == 0) error.BadImage else error.Limit;
            return diag.fail(err, "header word {d} ({s}) is {d}, expected 1..{d}", .{
                i, header_names[i], h[i], max,
            });
        }
    }
    return .{ .layer_count = h[3], .input_size = h[4], .output_size = h[5], .max_batch = h[6] };
}

/// Prefixes messages about one layer with "layer <index> (<kind>): ".
const LayerAt = struct {
    diag: *Diag,
    index: usize,
    kind: desc.Kind,

    fn fail(at: LayerAt, err: Error, comptime fmt: []const u8, args: anytype) Error {
        const prefix = .{ at.index, @tagName(at.kind) };
        return at.diag.fail(err, "layer {d} ({s}): " ++ fmt, prefix ++ args);
    }
};

const ParsedLayer = struct { desc: LayerDesc, floats: usize, weight_bytes: u64, end: usize };

fn parseLayer(
    bytes: []const u8,
    offset: usize,
    index: usize,
    prev_out: u32,
    diag: *Diag,
) Error!ParsedLayer {
    if (bytes.len - offset < record_words * 4) {
        return diag.fail(error.BadImage, "image ends inside layer {d}'s record: it needs {d} " ++
            "bytes at byte {d}, {d} are left", .{
            index, record_words * 4, offset, bytes.len - offset,
        });
    }
    const rec = Record.read(bytes, offset);
    if (rec.w[0] < 1 or rec.w[0] > @typeInfo(desc.Kind).@"enum".fields.len) {
        return diag.fail(error.BadImage, "layer {d}: word 0 (kind) is {d}, expected 1..{d}", .{
            index, rec.w[0], @typeInfo(desc.Kind).@"enum".fields.len,
        });
    }
    const at = LayerAt{ .diag = diag, .index = index, .kind = @enumFromInt(rec.w[0]) };
    if (rec.w[1] >= @typeInfo(desc.Act).@"enum".fields.len) {
        return at.fail(error.BadImage, "word 1 (act) is {d}, expected 0..{d}", .{
            rec.w[1], @typeInfo(desc.Act).@"enum".fields.len - 1,
        });
    }
    try checkWords(at, rec, prev_out);
    const d = rec.toDesc();
    try checkKindLimits(at, &d);
    try checkWeightType(at, &d);
    const check_msg = switch (d.kind) {
        inline else => |k| Impl(k).check(&d),
    };
    if (check_msg) |msg| {
        return at.fail(error.BadImage, "{s} (got in {d}, out {d}, act {d}, p {any}, f {any})", .{
            msg, d.in, d.out, rec.w[1], d.p, d.f,
        });
    }
    try checkInt8Columns(at, &d);
    return parseTensors(at, bytes, offset + record_words * 4, &d, rec.w[14]);
}

/// Widths, chaining, the float words and the weight type word.
fn checkWords(at: LayerAt, rec: Record, prev_out: u32) Error!void {
    for ([2]usize{ 2, 3 }, [2][]const u8{ "in", "out" }) |i, field| {
        if (rec.w[i] == 0 or rec.w[i] > desc.width_max) {
            const err = if (rec.w[i] == 0) error.BadImage else error.Limit;
            return at.fail(err, "word {d} ({s}) is {d}, expected 1..{d}", .{
                i, field, rec.w[i], desc.width_max,
            });
        }
    }
    if (rec.w[2] != prev_out) {
        const source = if (at.index == 0) "the header's input_size" else "the previous layer's out";
        return at.fail(error.BadImage, "in is {d}, expected {d} ({s})", .{
            rec.w[2], prev_out, source,
        });
    }
    for ([2]usize{ 12, 13 }, 0..) |i, k| {
        const v: f32 = @bitCast(rec.w[i]);
        if (!std.math.isFinite(v)) {
            return at.fail(error.BadImage, "word {d} (f{d}) is {d} (bits 0x{X:0>8}), " ++
                "expected a finite value", .{ i, k, v, rec.w[i] });
        }
    }
    if (rec.w[15] > weight_type_int8_stored) {
        return at.fail(error.BadImage, "word 15 (weight_type) is {d}, expected 0 (f32), " ++
            "1 (bf16), 2 (int8), 3 (sparse) or 4 (int8, stored quantised)", .{rec.w[15]});
    }
}

/// Kinds without a weight matrix hold everything as f32.
fn checkWeightType(at: LayerAt, d: *const LayerDesc) Error!void {
    if (d.sparse and d.kind != .dense) {
        return at.fail(error.BadImage, "word 15 (weight_type) is 3 (sparse), expected 0 (f32), " ++
            "1 (bf16) or 2 (int8): sparse weights are for dense layers only", .{});
    }
    if (d.weight_type == .f32) return;
    const has_matrix = switch (d.kind) {
        inline else => |k| @hasDecl(Impl(k), "matrixTensors"),
    };
    if (!has_matrix) {
        return at.fail(error.BadImage, "word 15 (weight_type) is {d} ({s}), expected 0 (f32): " ++
            "this kind has no weight matrix", .{
            @intFromEnum(d.weight_type), @tagName(d.weight_type),
        });
    }
}

/// The layer's matrices as held (rows, widest columns); zeros for kinds without one.
fn matrixGeometry(d: *const LayerDesc) desc.MatrixGeometry {
    return switch (d.kind) {
        inline else => |k| if (@hasDecl(Impl(k), "matrixGeometry"))
            Impl(k).matrixGeometry(d)
        else
            .{ .rows = 0, .cols_max = 0 },
    };
}

/// int8 sums a row's products in i32, exactly only up to mv.int8_cols_max columns.
fn checkInt8Columns(at: LayerAt, d: *const LayerDesc) Error!void {
    if (d.weight_type != .int8) return;
    const cols = matrixGeometry(d).cols_max;
    if (cols > mv.int8_cols_max) {
        return at.fail(error.Limit, "a weight matrix has {d} columns, expected at most {d} at " ++
            "int8 (word 15, weight_type, is 2): the integer sums must fit 32 bits", .{
            cols, mv.int8_cols_max,
        });
    }
}

/// Bit t set when tensor t of the layer is a weight matrix held at the layer's weight_type.
fn matrixMask(d: *const LayerDesc) u16 {
    return switch (d.kind) {
        inline else => |k| if (@hasDecl(Impl(k), "matrixTensors")) Impl(k).matrixTensors(d) else 0,
    };
}

/// The kind-specific integer limits of docs/DESIGN.md; beyond them the status is "limit".
const KindLimit = struct { kind: desc.Kind, p: u8, field: []const u8, max: u32 };
const kind_limits = [_]KindLimit{
    .{ .kind = .conv1d, .p = 0, .field = "kernelSize", .max = 4096 },
    .{ .kind = .conv1d, .p = 1, .field = "dilation", .max = 4096 },
    .{ .kind = .attention, .p = 0, .field = "heads", .max = 256 },
    .{ .kind = .attention, .p = 1, .field = "context", .max = 8192 },
    .{ .kind = .transformer, .p = 0, .field = "heads", .max = 256 },
    .{ .kind = .transformer, .p = 1, .field = "context", .max = 8192 },
    .{ .kind = .transformer, .p = 2, .field = "ffDim", .max = desc.width_max },
};

fn checkKindLimits(at: LayerAt, d: *const LayerDesc) Error!void {
    for (kind_limits) |lim| {
        if (lim.kind == d.kind and d.p[lim.p] > lim.max) {
            return at.fail(error.Limit, "p{d} ({s}) is {d}, expected at most {d}", .{
                lim.p, lim.field, d.p[lim.p], lim.max,
            });
        }
    }
}

fn parseTensors(
    at: LayerAt,
    bytes: []const u8,
    start: usize,
    d: *const LayerDesc,
    count: u32,
) Error!ParsedLayer {
    var lens: [desc.tensors_max]u32 = undefined;
    const expected_count = switch (d.kind) {
        inline else => |k| Impl(k).tensorLens(d, &lens),
    };
    if (count != expected_count) {
        return at.fail(error.BadImage, "word 14 (tensor_count) is {d}, expected {d}", .{
            count, expected_count,
        });
    }
    var offset = start;
    var floats: usize = 0;
    var weight_bytes: u64 = 0;
    const matrices = matrixMask(d);
    for (0..expected_count) |t| {
        const name = tensorName(d, t);
        if (bytes.len - offset < 4) {
            return at.fail(error.BadImage, "the image ends before tensor {d} ({s})'s element " ++
                "count at byte {d}", .{ t, name, offset });
        }
        const len = word(bytes, offset);
        // prelu takes one alpha shared by all channels as well as one per channel.
        const shared_ok = d.kind == .prelu and len == 1;
        if (len != lens[t] and !shared_ok) {
            return at.fail(error.BadImage, "tensor {d} ({s}) has {d} elements, expected {d}", .{
                t, name, len, lens[t],
            });
        }
        offset += 4;
        const is_matrix = (matrices >> @intCast(t)) & 1 == 1;
        if (is_matrix and d.int8_stored) {
            offset = try parseStoredMatrix(at, bytes, offset, d, t, len);
            floats += len;
            weight_bytes += len;
            continue;
        }
        const data_bytes = @as(u64, len) * 4;
        if (bytes.len - offset < data_bytes) {
            return at.fail(error.BadImage, "the image ends inside tensor {d} ({s}): " ++
                "{d} elements need {d} bytes at byte {d}, {d} are left", .{
                t, name, len, data_bytes, offset, bytes.len - offset,
            });
        }
        const bf16 = d.weight_type == .bf16 and is_matrix;
        try checkFinite(at, bytes[offset..][0..@intCast(data_bytes)], t, name, bf16);
        offset += @intCast(data_bytes);
        floats += len;
        weight_bytes += if (is_matrix and d.sparse)
            sparse.heldBytes(d.out, d.p[1])
        else
            @as(u64, len) * (if (is_matrix) d.weight_type.bytes() else 4);
    }
    // Each int8 matrix row holds its f32 scale (the VNNI corrections are not counted, as
    // padding is not: they are derived from the weights).
    if (d.weight_type == .int8) weight_bytes += 4 * matrixGeometry(d).rows;
    return .{ .desc = d.*, .floats = floats, .weight_bytes = weight_bytes, .end = offset };
}

/// A matrix stored quantised (word 15 is 4): `len` int8 values in [-127, 127] padded with
/// zero bytes to whole words, its row count (storedRows), then one finite scale >= 0 per row.
/// Returns the offset after it.
fn parseStoredMatrix(
    at: LayerAt,
    bytes: []const u8,
    start: usize,
    d: *const LayerDesc,
    t: usize,
    len: u32,
) Error!usize {
    const name = tensorName(d, t);
    const q_bytes = int8Bytes(len);
    if (bytes.len - start < q_bytes + 4) {
        return at.fail(error.BadImage, "the image ends inside tensor {d} ({s}): {d} int8 " ++
            "elements and the row count need {d} bytes at byte {d}, {d} are left", .{
            t, name, len, q_bytes + 4, start, bytes.len - start,
        });
    }
    for (bytes[start..][0..q_bytes], 0..) |b, e| {
        const bad = if (e < len) b == 0x80 else b != 0;
        if (bad) {
            return at.fail(error.BadImage, "tensor {d} ({s}) int8 byte {d} is 0x{X:0>2}, expected " ++
                "{s}", .{ t, name, e, b, if (e < len) "a value in -127..127" else "0 (padding)" });
        }
    }
    var offset = start + q_bytes;
    const rows = word(bytes, offset);
    const expected = storedRows(d, t);
    if (rows != expected or len % expected != 0) {
        return at.fail(error.BadImage, "tensor {d} ({s}) has {d} scale rows, expected {d} " ++
            "(one per row of its {d} elements)", .{ t, name, rows, expected, len });
    }
    offset += 4;
    const scale_bytes = @as(usize, rows) * 4;
    if (bytes.len - offset < scale_bytes) {
        return at.fail(error.BadImage, "the image ends inside tensor {d} ({s})'s {d} scales " ++
            "at byte {d}, {d} bytes are left", .{ t, name, rows, offset, bytes.len - offset });
    }
    for (0..rows) |r| {
        const bits = word(bytes, offset + r * 4);
        // Finite and not negative: a sign bit or the all-ones exponent is refused.
        if (bits >= 0x7F80_0000) {
            const v: f32 = @bitCast(bits);
            return at.fail(error.BadImage, "tensor {d} ({s}) row {d}'s scale is {d} (bits " ++
                "0x{X:0>8}), expected a finite value >= 0", .{ t, name, r, v, bits });
        }
    }
    return offset + scale_bytes;
}

/// Every element finite and, for a matrix held as bf16, small enough not to round to infinity.
fn checkFinite(at: LayerAt, data: []const u8, t: usize, name: []const u8, bf16: bool) Error!void {
    // A float is not finite when its magnitude bits reach the all-ones exponent. One
    // branch-free pass decides; the element is looked for only in a rejected image.
    const limit: u32 = if (bf16) mv.bf16_overflow_bits else 0x7F80_0000;
    var beyond: u32 = 0;
    var e: usize = 0;
    while (e < data.len) : (e += 4) {
        beyond |= @intFromBool(word(data, e) & 0x7FFF_FFFF >= limit);
    }
    if (beyond == 0) return;
    e = 0;
    while (word(data, e) & 0x7FFF_FFFF < limit) e += 4;
    const bits = word(data, e);
    const v: f32 = @bitCast(bits);
    if (std.math.isFinite(v)) {
        return at.fail(error.BadImage, "tensor {d} ({s}) element {d} is {e}, beyond the bf16 " ++
            "range: it would round to infinity (word 15, weight_type, is 1)", .{
            t, name, e / 4, v,
        });
    }
    return at.fail(error.BadImage, "tensor {d} ({s}) element {d} is {d} (bits 0x{X:0>8}), " ++
        "expected a finite value", .{ t, name, e / 4, v, bits });
}

/// Tensor names per kind, as docs/DESIGN.md lists them.
pub fn tensorName(d: *const LayerDesc, t: usize) []const u8 {
    const names: []const []const u8 = switch (d.kind) {
        .dense => &.{ "W", "b" },
        .lstm => &.{ "Wx", "Wh", "b" },
        .gru => &.{ "Wx", "Wh", "bx", "bh" },
        .conv1d => &.{ "W", "b" },
        .batchnorm => if (d.p[0] == 1)
            &.{ "gamma", "beta", "mean", "var" }
        else
            &.{ "mean", "var" },
        .layernorm => &.{ "gamma", "beta" },
        .prelu => &.{"alpha"},
        .activation, .skip => &.{},
        .attention => &.{ "Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo" },
        .transformer => &.{
            "ln1_g", "ln1_b", "Wq",    "bq",    "Wk", "bk", "Wv", "bv",
            "Wo",    "bo",    "ln2_g", "ln2_b", "W1", "b1", "W2", "b2",
        },
    };
    return if (t < names.len) names[t] else "?";
}

const testing = std.testing;
const helpers = @import("test.zig");

/// A valid three-layer image: dense 4 -> 8 (tanh), lstm 8 -> 8, dense 8 -> 2 without bias.
fn sample() ![]u8 {
    return helpers.build(testing.allocator, 1, 4, &.{
        .{ .kind = .dense, .act = .tanh, .in = 4, .out = 8, .p = helpers.params(1, 0, 0) },
        .{ .kind = .lstm, .in = 8, .out = 8 },
        .{ .kind = .dense, .in = 8, .out = 2 },
    });
}

/// Byte offsets in sample(): layer records and the first tensor's count word.
const layer0 = 32;
const layer1 = layer0 + 64 + 4 + 32 * 4 + 4 + 8 * 4;
const layer2 = layer1 + 64 + 4 + 32 * 8 * 4 + 4 + 32 * 8 * 4 + 4 + 32 * 4;
const sample_len = layer2 + 64 + 4 + 16 * 4;

fn expectRejected(bytes: []const u8, err: Error, message: []const u8) !void {
    var diag: Diag = .{};
    try testing.expectError(err, parse(bytes, &diag));
    try testing.expectEqualStrings(message, diag.message());
}

/// Changes sample()'s word at byte `at` to `value`, keeping image_bytes right.
const Case = struct { at: usize, value: u32, err: Error, message: []const u8 };

fn expectCases(cases: []const Case) !void {
    for (cases) |c| {
        const bytes = try sample();
        defer testing.allocator.free(bytes);
        std.mem.writeInt(u32, bytes[c.at..][0..4], c.value, .little);
        try expectRejected(bytes, c.err, c.message);
    }
}

test "image: a valid image parses at any alignment" {
    const bytes = try sample();
    defer testing.allocator.free(bytes);
    try testing.expectEqual(@as(usize, sample_len), bytes.len);
    const shifted = try testing.allocator.alloc(u8, bytes.len + 3);
    defer testing.allocator.free(shifted);
    for (0..4) |shift| {
        @memcpy(shifted[shift..][0..bytes.len], bytes);
        var diag: Diag = .{};
        const img = try parse(shifted[shift..][0..bytes.len], &diag);
        try testing.expectEqual(@as(u64, 32 + 8 + 256 + 256 + 32 + 16), img.parameter_count);
        try testing.expectEqual(img.parameter_count * 4, img.weight_bytes);
        try testing.expectEqual(@as(usize, 256 + 256 + 32), img.layer_floats_max);
        var it = img.layers();
        var kinds: [3]desc.Kind = undefined;
        for (&kinds) |*k| k.* = it.next().?.desc.kind;
        try testing.expectEqual([3]desc.Kind{ .dense, .lstm, .dense }, kinds);
        try testing.expectEqual(@as(?LayerView, null), it.next());
    }
}

test "image: header rejections" {
    const bytes = try sample();
    defer testing.allocator.free(bytes);
    try expectRejected(bytes[0..20], error.BadImage, "image is 20 bytes, expected at least 32 " ++
        "(the header)");
    try expectRejected(bytes[0 .. bytes.len - 4], error.BadImage, "header word 7 (image_bytes) " ++
        "is 2648, expected 2644 (the image length passed)");
    try expectCases(&.{
        .{ .at = 0, .value = 0x4D495A44, .err = error.BadImage, .message = "header word 0 " ++
            "(magic) is 0x4D495A44, expected 0x4D495A43 (\"CZIM\"): not a cadenza model image" },
        .{ .at = 4, .value = 2, .err = error.BadImage, .message = "header word 1 (version) " ++
            "is 2, expected 1" },
        .{ .at = 8, .value = 9, .err = error.BadImage, .message = "header word 2 " ++
            "(header_words) is 9, expected 8" },
        .{ .at = 12, .value = 0, .err = error.BadImage, .message = "header word 3 " ++
            "(layer_count) is 0, expected 1..1024" },
        .{ .at = 12, .value = 1025, .err = error.Limit, .message = "header word 3 " ++
            "(layer_count) is 1025, expected 1..1024" },
        .{ .at = 16, .value = 70000, .err = error.Limit, .message = "header word 4 " ++
            "(input_size) is 70000, expected 1..65536" },
        .{ .at = 24, .value = 0, .err = error.BadImage, .message = "header word 6 " ++
            "(max_batch) is 0, expected 1..4096" },
        .{ .at = 24, .value = 4097, .err = error.Limit, .message = "header word 6 " ++
            "(max_batch) is 4097, expected 1..4096" },
        .{ .at = 20, .value = 3, .err = error.BadImage, .message = "layer 2 (dense): out is 2, " ++
            "expected 3 (the header's output_size)" },
        .{ .at = 12, .value = 2, .err = error.BadImage, .message = "image has 132 bytes after " ++
            "the last layer record, expected none (layers end at byte 2516 of 2648)" },
    });
}

test "image: layer record rejections" {
    try expectCases(&.{
        .{ .at = layer1, .value = 12, .err = error.BadImage, .message = "layer 1: word 0 " ++
            "(kind) is 12, expected 1..11" },
        .{ .at = layer1 + 4, .value = 8, .err = error.BadImage, .message = "layer 1 (lstm): " ++
            "word 1 (act) is 8, expected 0..7" },
        .{ .at = layer1 + 8, .value = 9, .err = error.BadImage, .message = "layer 1 (lstm): " ++
            "in is 9, expected 8 (the previous layer's out)" },
        .{ .at = layer0 + 8, .value = 5, .err = error.BadImage, .message = "layer 0 (dense): " ++
            "in is 5, expected 4 (the header's input_size)" },
        .{ .at = layer1 + 12, .value = 0, .err = error.BadImage, .message = "layer 1 (lstm): " ++
            "word 3 (out) is 0, expected 1..65536" },
        .{ .at = layer1 + 12, .value = 65537, .err = error.Limit, .message = "layer 1 (lstm): " ++
            "word 3 (out) is 65537, expected 1..65536" },
        .{ .at = layer1 + 48, .value = 0x7F800000, .err = error.BadImage, .message = "layer 1 " ++
            "(lstm): word 12 (f0) is inf (bits 0x7F800000), expected a finite value" },
        .{ .at = layer1 + 60, .value = 5, .err = error.BadImage, .message = "layer 1 (lstm): " ++
            "word 15 (weight_type) is 5, expected 0 (f32), 1 (bf16), 2 (int8), 3 (sparse) or 4 " ++
            "(int8, stored quantised)" },
        .{ .at = layer1 + 60, .value = 3, .err = error.BadImage, .message = "layer 1 (lstm): " ++
            "word 15 (weight_type) is 3 (sparse), expected 0 (f32), 1 (bf16) or 2 (int8): " ++
            "sparse weights are for dense layers only" },
        .{ .at = layer2 + 16, .value = 2, .err = error.BadImage, .message = "layer 2 (dense): " ++
            "p0 (bias) must be 0 or 1 (got in 8, out 2, act 0, p { 2, 0, 0, 0, 0, 0, 0, 0 }, " ++
            "f { 0, 0 })" },
        .{ .at = layer2 + 56, .value = 2, .err = error.BadImage, .message = "layer 2 (dense): " ++
            "word 14 (tensor_count) is 2, expected 1" },
    });
}

test "image: tensor rejections" {
    try expectCases(&.{
        .{ .at = layer1 + 64 + 4 + 32 * 8 * 4, .value = 100, .err = error.BadImage, .message = "" ++
            "layer 1 (lstm): tensor 1 (Wh) has 100 elements, expected 256" },
        .{ .at = layer0 + 68 + 4 * 7, .value = 0x7FC00000, .err = error.BadImage, .message = "" ++
            "layer 0 (dense): tensor 0 (W) element 7 is nan (bits 0x7FC00000), " ++
            "expected a finite value" },
        .{ .at = layer2 + 68 + 4 * 15, .value = 0xFF800000, .err = error.BadImage, .message = "" ++
            "layer 2 (dense): tensor 0 (W) element 15 is -inf (bits 0xFF800000), " ++
            "expected a finite value" },
    });
    // Cut the image inside the last tensor, then inside the last record; image_bytes follows.
    const bytes = try sample();
    defer testing.allocator.free(bytes);
    std.mem.writeInt(u32, bytes[28..32], sample_len - 8, .little);
    try expectRejected(bytes[0 .. sample_len - 8], error.BadImage, "layer 2 (dense): the image " ++
        "ends inside tensor 0 (W): 16 elements need 64 bytes at byte 2584, 56 are left");
    std.mem.writeInt(u32, bytes[28..32], layer2 + 10, .little);
    try expectRejected(bytes[0 .. layer2 + 10], error.BadImage, "image ends inside layer 2's " ++
        "record: it needs 64 bytes at byte 2516, 10 are left");
}

test "image: kind limits and prelu's shared alpha" {
    const conv = try helpers.build(testing.allocator, 1, 1, &.{
        .{ .kind = .conv1d, .in = 2, .out = 2, .p = helpers.params(2, 1, 1) },
    });
    defer testing.allocator.free(conv);
    std.mem.writeInt(u32, conv[layer0 + 20 ..][0..4], 4097, .little);
    try expectRejected(conv, error.Limit, "layer 0 (conv1d): p1 (dilation) is 4097, " ++
        "expected at most 4096");
    const one = [1]f32{0.25};
    const prelu = try helpers.build(testing.allocator, 1, 1, &.{
        .{ .kind = .prelu, .in = 5, .out = 5, .tensors = &.{&one} },
    });
    defer testing.allocator.free(prelu);
    var diag: Diag = .{};
    _ = try parse(prelu, &diag);
}

test "image: weight_type bf16 halves the matrices' bytes, is refused where there is no matrix" {
    var bytes = try sample();
    defer testing.allocator.free(bytes);
    for ([_]usize{ layer0, layer1, layer2 }) |at| {
        std.mem.writeInt(u32, bytes[at + 60 ..][0..4], 1, .little);
    }
    var diag: Diag = .{};
    const img = try parse(bytes, &diag);
    // Matrices: 32 + 256 + 256 + 16 elements at 2 bytes; biases 8 + 32 at 4.
    try testing.expectEqual(@as(u64, (32 + 256 + 256 + 16) * 2 + (8 + 32) * 4), img.weight_bytes);
    // A weight that bf16 would round to infinity.
    std.mem.writeInt(u32, bytes[layer0 + 68 + 4 * 3 ..][0..4], mv.bf16_overflow_bits, .little);
    try expectRejected(bytes, error.BadImage, "layer 0 (dense): tensor 0 (W) element 3 is " ++
        "3.3961775e38, beyond the bf16 range: it would round to infinity (word 15, " ++
        "weight_type, is 1)");
    testing.allocator.free(bytes);
    bytes = try helpers.build(testing.allocator, 1, 1, &.{
        .{ .kind = .layernorm, .in = 5, .out = 5, .f = .{ 1e-5, 0 }, .weight_type = .bf16 },
    });
    try expectRejected(bytes, error.BadImage, "layer 0 (layernorm): word 15 (weight_type) is " ++
        "1 (bf16), expected 0 (f32): this kind has no weight matrix");
}

test "image: no single-byte change or truncation makes the parser or create misbehave" {
    const bytes = try sample();
    defer testing.allocator.free(bytes);
    const copy = try testing.allocator.dupe(u8, bytes);
    defer testing.allocator.free(copy);
    const model = @import("model.zig");
    var prng = std.Random.DefaultPrng.init(42);
    for (0..bytes.len) |i| {
        for ([_]u8{ 0, 0xFF, bytes[i] ^ 0x01, bytes[i] ^ 0x80, prng.random().int(u8) }) |v| {
            copy[i] = v;
            var diag: Diag = .{};
            if (model.Model.create(testing.allocator, copy, &diag)) |m| m.destroy() else |_| {
                try testing.expect(diag.len > 0);
            }
        }
        copy[i] = bytes[i];
    }
    for (0..bytes.len) |n| {
        var diag: Diag = .{};
        try testing.expectError(error.BadImage, parse(bytes[0..n], &diag));
    }
}
