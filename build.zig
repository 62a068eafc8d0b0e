//! `zig build` installs zig-out/lib/libcadenza_safe.so (ReleaseSafe) and libcadenza_fast.so
//! (ReleaseFast), both for the CPU of the machine that builds them unless -Dtarget says
//! otherwise. `zig build test` runs the Zig unit tests (-Doptimize picks their mode).
//! No libc: the library needs only memory from the page allocator (mmap).
//! It also installs zig-out/wasm/cadenza_safe.wasm and cadenza_fast.wasm: the same library
//! for wasm32 with simd128 (the WebAssembly backend, src/native/wasm.ts), with no libc and
//! no threads, its memory from the wasm allocator (memory.grow); `zig build wasm` builds
//! only those.
const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = wideVectors(b, b.standardTargetOptionsQueryOnly(.{}));
    const test_optimize = b.standardOptimizeOption(.{});

    const variants = [_]struct { []const u8, std.builtin.OptimizeMode }{
        .{ "cadenza_safe", .ReleaseSafe },
        .{ "cadenza_fast", .ReleaseFast },
    };
    for (variants) |v| {
        const name, const optimize = v;
        b.installArtifact(nativeLibrary(b, name, target, optimize, false));
    }

    // A wasm library is an executable without an entry point whose exports stay (-rdynamic):
    // wasm32-freestanding has no dynamic linking, so addLibrary(.dynamic) is refused there.
    const wasm_step = b.step("wasm", "Build only the WebAssembly library (zig-out/wasm/)");
    const wasm_target = b.resolveTargetQuery(.{
        .cpu_arch = .wasm32,
        .os_tag = .freestanding,
        .cpu_model = .{ .explicit = &std.Target.wasm.cpu.generic },
        .cpu_features_add = std.Target.wasm.featureSet(&.{.simd128}),
    });
    for (variants) |v| {
        const name, const optimize = v;
        const wasm = b.addExecutable(.{
            .name = name,
            .root_module = b.createModule(.{
                .root_source_file = b.path("zig/api.zig"),
                .target = wasm_target,
                .optimize = optimize,
                .link_libc = false,
                .single_threaded = true,
                .strip = true,
            }),
        });
        wasm.entry = .disabled;
        wasm.rdynamic = true;
        const install = b.addInstallArtifact(wasm, .{ .dest_dir = .{ .override = .{ .custom = "wasm" } } });
        wasm_step.dependOn(&install.step);
        b.getInstallStep().dependOn(&install.step);
    }

    // `zig build prebuilt`: the libraries an npm package carries (scripts/pack.mjs), cross-
    // compiled into zig-out/prebuilt/<platform>-<arch>/ for every platform the package
    // supports. linux-x64 comes twice: a baseline for AVX2+FMA CPUs (x86_64_v3) and an
    // AVX-512 build (x86_64_v4, 512-bit vectors kept), chosen at load by src/native/library.ts.
    const prebuilt_step = b.step("prebuilt", "Cross-compile the libraries for every platform");
    const platforms = [_]struct { []const u8, []const u8, []const u8 }{
        .{ "linux-x64", "x86_64-linux", "x86_64_v3" },
        .{ "linux-x64-avx512", "x86_64-linux", "x86_64_v4-prefer_256_bit" },
        .{ "linux-arm64", "aarch64-linux", "baseline" },
        .{ "darwin-x64", "x86_64-macos", "x86_64_v3" },
        .{ "darwin-arm64", "aarch64-macos", "apple_m1" },
        .{ "windows-x64", "x86_64-windows", "x86_64_v3" },
    };
    for (platforms) |p| {
        const dir, const triple, const cpu = p;
        const query = std.Target.Query.parse(.{ .arch_os_abi = triple, .cpu_features = cpu }) catch
            @panic("bad prebuilt target");
        for (variants) |v| {
            const name, const optimize = v;
            const lib = nativeLibrary(b, name, b.resolveTargetQuery(query), optimize, true);
            const dest: std.Build.InstallDir = .{ .custom = b.fmt("prebuilt/{s}", .{dir}) };
            const install = b.addInstallArtifact(lib, .{
                .dest_dir = .{ .override = dest },
                .implib_dir = .disabled,
                .pdb_dir = .disabled,
            });
            prebuilt_step.dependOn(&install.step);
        }
    }

    // `zig build fuzz`: zig-out/bin/cadenza-fuzz, the coverage-guided fuzzer of the C ABI's
    // readers (fuzz/driver.zig, scripts/fuzz.sh). The library is an object built with Zig's
    // fuzz instrumentation (SanitizerCoverage 8-bit counters and comparison tracing) in
    // ReleaseSafe, so that a bounds or overflow bug traps; the driver, not instrumented,
    // supplies the coverage callbacks and links it.
    const fuzz_step = b.step("fuzz", "Build the coverage-guided fuzzer (zig-out/bin/cadenza-fuzz)");
    const fuzz_lib = b.addObject(.{
        .name = "cadenza_fuzz",
        .root_module = b.createModule(.{
            .root_source_file = b.path("zig/api.zig"),
            .target = target,
            .optimize = .ReleaseSafe,
            .link_libc = false,
            .fuzz = true,
        }),
    });
    const fuzz_exe = b.addExecutable(.{
        .name = "cadenza-fuzz",
        .root_module = b.createModule(.{
            .root_source_file = b.path("fuzz/driver.zig"),
            .target = target,
            .optimize = .ReleaseSafe,
        }),
    });
    fuzz_exe.root_module.addObject(fuzz_lib);
    fuzz_step.dependOn(&b.addInstallArtifact(fuzz_exe, .{}).step);

    const tests = b.addTest(.{
        .root_module = b.createModule(.{
            .root_source_file = b.path("zig/api.zig"),
            .target = target,
            .optimize = test_optimize,
        }),
    });
    const test_step = b.step("test", "Run the Zig unit tests");
    test_step.dependOn(&b.addRunArtifact(tests).step);
}

/// LLVM marks many AVX-512 CPUs "prefer 256-bit", which would halve every kernel's vectors
/// (std.simd.suggestVectorLength follows it). Zen 4/5 and server cores run 512-bit FMAs at
/// full rate, and some VMs report a client Intel model for them, so a native build with
/// AVX-512 drops the preference. An explicit -Dcpu is left as given.
/// The C-ABI shared library (zig/api.zig) for one target and optimisation mode.
fn nativeLibrary(
    b: *std.Build,
    name: []const u8,
    target: std.Build.ResolvedTarget,
    optimize: std.builtin.OptimizeMode,
    strip: bool,
) *std.Build.Step.Compile {
    return b.addLibrary(.{
        .linkage = .dynamic,
        .name = name,
        .root_module = b.createModule(.{
            .root_source_file = b.path("zig/api.zig"),
            .target = target,
            .optimize = optimize,
            .link_libc = false,
            .strip = if (strip) true else null,
        }),
    });
}

fn wideVectors(b: *std.Build, query: std.Target.Query) std.Build.ResolvedTarget {
    const resolved = b.resolveTargetQuery(query);
    const cpu = resolved.result.cpu;
    const native_cpu = query.cpu_model == .native or query.cpu_model == .determined_by_arch_os;
    if (!query.isNative() or !native_cpu or cpu.arch != .x86_64) return resolved;
    if (!cpu.has(.x86, .avx512f) or !cpu.has(.x86, .prefer_256_bit)) return resolved;
    var wide = query;
    wide.cpu_features_sub.addFeature(@intFromEnum(std.Target.x86.Feature.prefer_256_bit));
    return b.resolveTargetQuery(wide);
}
