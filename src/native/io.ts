/**
 * The few host services cadenza needs (files, environment, arguments, exit), over Bun and Deno.
 * Everything runtime-specific outside the FFI adapters goes through here, so the rest of the
 * code type-checks and runs unchanged under both.
 */

// node:fs is built into both runtimes; only its synchronous stat is used, for the library path.
import { statSync } from "node:fs";
import { readFile as nodeReadFile, writeFile as nodeWriteFile } from "node:fs/promises";
import { CadenzaError } from "../errors.ts";

interface BunHost {
  file(path: string): { exists(): Promise<boolean>; arrayBuffer(): Promise<ArrayBuffer> };
  write(path: string, data: Uint8Array): Promise<number>;
  argv: string[];
  env: Record<string, string | undefined>;
}

interface DenoHost {
  readFile(path: string): Promise<Uint8Array>;
  writeFile(path: string, data: Uint8Array): Promise<void>;
  args: string[];
  env: { get(name: string): string | undefined };
  permissions: { querySync(d: { name: "env"; variable: string }): { state: string } };
  exit(code: number): never;
  build: { os: string; arch: string };
}

const host = globalThis as unknown as {
  Bun?: BunHost;
  Deno?: DenoHost;
  process?: {
    exit(code: number): never;
    platform: string;
    arch: string;
    argv: string[];
    env: Record<string, string | undefined>;
  };
};

export type Runtime = "bun" | "deno" | "node";

/**
 * The runtime we run under: Bun and Deno reach the native library through their FFI; any
 * other (Node, where there is no FFI) gets the WebAssembly backend.
 */
export function runtime(): Runtime {
  if (host.Bun !== undefined) return "bun";
  if (host.Deno !== undefined) return "deno";
  return "node";
}

/** "linux", "darwin" or "windows". */
export function platform(): string {
  if (host.Deno !== undefined) return host.Deno.build.os;
  const name = host.process?.platform ?? "linux";
  return name === "win32" ? "windows" : name;
}

/** "x64" or "arm64" (Node's names), or what the runtime reports for other CPUs. */
export function arch(): string {
  const name = host.Deno !== undefined ? host.Deno.build.arch : host.process?.arch ?? "x64";
  if (name === "x86_64") return "x64";
  if (name === "aarch64") return "arm64";
  return name;
}

function ioError(action: string, path: string, cause: unknown): CadenzaError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new CadenzaError("E_IO", `cannot ${action} ${path}: ${reason}`);
}

/** Reads a whole file; errors are CadenzaError E_IO naming the path. */
export async function readFile(path: string): Promise<Uint8Array> {
  try {
    if (host.Deno !== undefined) return await host.Deno.readFile(path);
    if (host.Bun === undefined) {
      if (isDirectory(path)) throw new Error("is a directory");
      return new Uint8Array(await nodeReadFile(path));
    }
    const file = host.Bun!.file(path);
    if (!(await file.exists())) {
      throw new Error(isDirectory(path) ? "is a directory" : "no such file");
    }
    return new Uint8Array(await file.arrayBuffer());
  } catch (err) {
    throw ioError("read", path, err);
  }
}

export async function readText(path: string): Promise<string> {
  return new TextDecoder().decode(await readFile(path));
}

/** Writes (creates or replaces) a file; errors are CadenzaError E_IO naming the path. */
export async function writeFile(path: string, data: Uint8Array): Promise<void> {
  try {
    if (host.Deno !== undefined) await host.Deno.writeFile(path, data);
    else if (host.Bun !== undefined) await host.Bun.write(path, data);
    else await nodeWriteFile(path, data);
  } catch (err) {
    throw ioError("write", path, err);
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** True when `path` names an existing regular file (synchronous, for opening the library). */
export function fileExists(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * An environment variable, or undefined. Under Deno it is read only when env access is already
 * granted, so that a missing --allow-env never turns into a permission prompt.
 */
export function envVar(name: string): string | undefined {
  if (host.Deno !== undefined) {
    const granted = host.Deno.permissions.querySync({ name: "env", variable: name });
    return granted.state === "granted" ? host.Deno.env.get(name) : undefined;
  }
  return host.Bun?.env[name] ?? host.process?.env[name];
}

/** The command-line arguments after the script name. */
export function scriptArgs(): string[] {
  if (host.Deno !== undefined) return host.Deno.args;
  return (host.Bun ?? host.process!).argv.slice(2);
}

export function exit(code: number): never {
  if (host.Deno !== undefined) return host.Deno.exit(code);
  return host.process!.exit(code);
}
