//! The description of one layer as the model image carries it (see docs/DESIGN.md, "Model image").
//! Shared by the image parser, the model and every layer kernel.
const std = @import("std");
const simd = @import("../simd.zig");

pub const Kind = enum(u32) {
    dense = 1,
    lstm = 2,
    gru = 3,
    conv1d = 4,
    batchnorm = 5,
    layernorm = 6,
    prelu = 7,
    activation = 8,
    attention = 9,
    transformer = 10,
    skip = 11,
};

pub const Act = enum(u32) {
    linear = 0,
    tanh = 1,
    sigmoid = 2,
    relu = 3,
    elu = 4,
    gelu = 5,
    softmax = 6,
    /// log(softmax(x)) over the layer output, as ONNX LogSoftmax and torch's log_softmax.
    logsoftmax = 7,
};

/// How a layer's weight matrices are held in the arena (image layer word 15). Biases, norms and
/// state are f32 whatever this says.
pub const WeightType = enum(u32) {
    f32 = 0,
    /// bfloat16, rounded to nearest even when packed, widened to f32 in registers.
    bf16 = 1,
    /// int8 with one f32 scale per matrix row; inputs quantised per call, integer dot
    /// products (docs/DESIGN.md, "Precision").
    int8 = 2,

    /// Bytes one matrix element takes (int8 adds 4 per row for its scale).
    pub fn bytes(t: WeightType) u32 {
        return switch (t) {
            .f32 => 4,
            .bf16 => 2,
            .int8 => 1,
        };
    }
};

/// The weight matrices of a layer as held: rows (each with its own int8 scale) and the widest
/// matrix's columns. The parser counts the scales' bytes and bounds int8 columns with it.
pub const MatrixGeometry = struct { rows: u64, cols_max: u64 };

/// At most this many tensors in one layer record (the transformer block has 16).
pub const tensors_max = 16;

/// Every layer width is 1..width_max (docs/DESIGN.md, "Limits").
pub const width_max: u32 = 65536;

/// image_bytes is a u32, so no tensor in an image can hold more than 2^30 floats. A kind's
/// `check` compares its u64 tensor sizes with this, so `tensorLens` never overflows a u32.
pub const tensor_elems_max: u64 = 1 << 30;

/// True when the product of `factors` (as u64) is at most tensor_elems_max.
pub fn elemsFit(factors: []const u32) bool {
    var n: u64 = 1;
    for (factors) |f| {
        n = std.math.mul(u64, n, f) catch return false;
    }
    return n <= tensor_elems_max;
}

/// The check of the kinds that have no fused activation.
pub fn noFusedActivation(d: *const LayerDesc) ?[]const u8 {
    if (d.act != .linear) return "act must be 0 (linear): this kind has no fused activation";
    return null;
}

/// The check of a gated recurrent kind (lstm: 4 gates, gru: 3), which has no fused activation.
/// It bounds the packed size (padding included) so that no size computed from it overflows,
/// even with a 32-bit usize; the model's plan then applies the 1 GiB arena limit.
pub fn checkGated(d: *const LayerDesc, comptime gates: comptime_int) ?[]const u8 {
    if (noFusedActivation(d)) |m| return m;
    const h: u64 = d.out;
    if (gates * (h + simd.lanes) * (d.in + h + 2) > tensor_elems_max) {
        return std.fmt.comptimePrint("{d} * out * (in + out) must be at most 2^30 weights", .{
            gates,
        });
    }
    return null;
}

pub const LayerDesc = struct {
    kind: Kind,
    act: Act,
    in: u32,
    out: u32,
    /// Kind-specific integers (docs/DESIGN.md lists them per kind).
    p: [8]u32,
    /// Kind-specific floats (epsilon, ...).
    f: [2]f32,
    weight_type: WeightType = .f32,
    /// The image carried the matrices already quantised (weight_type word 4): int8 values and
    /// one f32 scale per row, instead of f32 values quantised at create.
    int8_stored: bool = false,
    /// Image word 15 = 3: a dense layer's W held as compressed sparse rows (zig/layers/
    /// sparse.zig), p1 its nonzero count; weight_type is then f32.
    sparse: bool = false,
};

/// Element counts (f32) a layer needs in the model's arena.
pub const Sizes = struct {
    /// Repacked weights and biases, read-only after create.
    weights: usize,
    /// Persistent state (recurrent state, conv history, KV cache); zeroed by reset.
    state: usize,
    /// Working memory for one forward call of up to max_batch rows; contents not kept.
    scratch: usize,
};
