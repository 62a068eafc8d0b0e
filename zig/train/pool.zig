//! One helper thread for the trainer's matrix products. The caller splits a product into two
//! halves on tile boundaries, hands one to the helper and computes the other, so every element
//! is computed by the same instructions in the same order as on one thread: the results are
//! the same bits with or without the helper (tested in common.zig and tests.zig).
//!
//! The library links no libc, and its host (Bun, Deno) does, so the helper is a bare Linux
//! thread: clone(2) with its own mapped stack and no TLS of its own (it shares the creating
//! thread's thread pointer and touches no thread-local storage), every signal blocked (it
//! never runs a host signal handler), and it runs only this file's loop. It is started by
//! cz_trainer_create and stopped by destroy; between jobs it spins briefly, then sleeps on a
//! futex. Elsewhere than Linux, or if clone fails, the trainer runs on one thread.
const std = @import("std");
const builtin = @import("builtin");
const fpenv = @import("../fpenv.zig");

const linux = std.os.linux;
const Futex = std.Thread.Futex;
const Value = std.atomic.Value;

pub const Job = struct {
    run: *const fn (args: *const anyopaque) void,
    args: *const anyopaque,
};

const stack_bytes = 256 * 1024;

pub const Pool = struct {
    /// Bumped by the caller for each job (and to stop).
    posted: Value(u32) = .init(0),
    /// Set by the helper to `posted` when that job is done.
    done: Value(u32) = .init(0),
    job: Job = undefined,
    /// The caller's floating-point state (flush-to-zero), which the helper adopts per job.
    env: fpenv.Saved = undefined,
    stop: bool = false,
    /// The helper's thread id; the kernel clears it when the helper exits.
    tid: i32 = 0,
    stack: ?[]align(std.heap.page_size_min) u8 = null,

    /// Starts the helper; on failure the pool stays single-threaded.
    pub fn start(p: *Pool) void {
        if (builtin.os.tag != .linux) return;
        const mem = std.posix.mmap(null, stack_bytes, std.posix.PROT.READ | std.posix.PROT.WRITE, .{
            .TYPE = .PRIVATE,
            .ANONYMOUS = true,
        }, -1, 0) catch return;
        var all = linux.sigfillset();
        var old: linux.sigset_t = undefined;
        _ = linux.sigprocmask(linux.SIG.SETMASK, &all, &old);
        const flags = linux.CLONE.VM | linux.CLONE.FS | linux.CLONE.FILES | linux.CLONE.SIGHAND |
            linux.CLONE.THREAD | linux.CLONE.SYSVSEM | linux.CLONE.PARENT_SETTID |
            linux.CLONE.CHILD_CLEARTID;
        const top = @intFromPtr(mem.ptr) + stack_bytes;
        const rc = linux.clone(entry, top, flags, @intFromPtr(p), &p.tid, 0, &p.tid);
        _ = linux.sigprocmask(linux.SIG.SETMASK, &old, null);
        if (linux.E.init(rc) != .SUCCESS) {
            std.posix.munmap(mem);
            return;
        }
        p.stack = mem;
    }

    pub fn finish(p: *Pool) void {
        // Only start (Linux) makes a helper: elsewhere there is nothing to stop, and the
        // Linux calls below must not be compiled (they would need libc on Windows).
        if (builtin.os.tag != .linux) return;
        const mem = p.stack orelse return;
        p.stop = true;
        _ = p.posted.fetchAdd(1, .release);
        Futex.wake(&p.posted, 1);
        // The kernel zeroes tid when the helper has exited and no longer uses its stack.
        while (@atomicLoad(i32, &p.tid, .acquire) != 0) _ = linux.sched_yield();
        std.posix.munmap(mem);
        p.stack = null;
    }

    pub fn available(p: *const Pool) bool {
        return p.stack != null;
    }

    /// Runs `helper` on the helper thread and `own` here; returns when both are done.
    pub fn both(p: *Pool, helper: Job, own: Job) void {
        p.job = helper;
        p.env = fpenv.current();
        const n = p.posted.fetchAdd(1, .release) +% 1;
        Futex.wake(&p.posted, 1);
        own.run(own.args);
        var spins: u32 = 0;
        while (true) {
            const d = p.done.load(.acquire);
            if (d == n) break;
            if (spins < 1 << 16) {
                spins += 1;
                std.atomic.spinLoopHint();
            } else {
                Futex.wait(&p.done, d);
            }
        }
    }

    fn entry(arg: usize) callconv(.c) u8 {
        const p: *Pool = @ptrFromInt(arg);
        p.loop();
        return 0;
    }

    fn loop(p: *Pool) void {
        var seen: u32 = 0;
        while (true) {
            var spins: u32 = 0;
            while (p.posted.load(.acquire) == seen) {
                if (spins < 1 << 14) {
                    spins += 1;
                    std.atomic.spinLoopHint();
                } else {
                    Futex.wait(&p.posted, seen);
                }
            }
            seen = p.posted.load(.acquire);
            if (p.stop) return;
            fpenv.leave(p.env);
            p.job.run(p.job.args);
            p.done.store(seen, .release);
            Futex.wake(&p.done, 1);
        }
    }
};
