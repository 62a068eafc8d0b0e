//! Memory for the WebAssembly adapter (src/native/wasm.ts), in the wasm build only. A wasm
//! module cannot read the host's arrays: the adapter copies each call's arrays into a scratch
//! region of the module's memory that it takes from here, and reads the outputs back. These two
//! are the adapter's own, not part of the C ABI: only it calls them, with what alloc returned.
const std = @import("std");

const allocator = std.heap.wasm_allocator;
const alignment: std.mem.Alignment = .@"16";

/// `len` bytes, 16-byte aligned, or null when memory cannot grow that far.
pub export fn cz_wasm_alloc(len: usize) ?[*]u8 {
    const bytes = allocator.alignedAlloc(u8, alignment, @max(len, 1)) catch return null;
    return bytes.ptr;
}

/// Frees what cz_wasm_alloc(len) returned.
pub export fn cz_wasm_free(ptr: ?[*]u8, len: usize) void {
    const p = ptr orelse return;
    const bytes: []align(16) u8 = @alignCast(p[0..@max(len, 1)]);
    allocator.free(bytes);
}
