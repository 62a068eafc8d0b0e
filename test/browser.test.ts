/**
 * The browser demo (web/), in headless Chromium: `bun web/serve.ts` serves it with the
 * cross-origin isolation headers, Chromium loads it (driven over the DevTools protocol with a
 * WebSocket, no extra package), the test clicks an emotion the way a user does (a mouse event at
 * the button), waits until two bars have played, and then checks what the page's AudioWorklet
 * counted in the shared memory: callbacks ran, notes were started and sounded (a non-zero
 * peak), and no render quantum ran past the music the Worker had decoded (zero underruns).
 * Then it changes the emotion while playing and checks that the new piece starts at once (the
 * decoded lookahead of the old one is cut) and the same counts over a bar of it,
 * and takes a screenshot, checks that the piano roll shows notes in the
 * melody's and the chords' colours, and writes it to out/browser-demo.png (or to
 * CADENZA_SCREENSHOT: `CADENZA_SCREENSHOT=docs/img/browser-demo.png bun test
 * test/browser.test.ts` renews the README's picture).
 *
 * Skipped, saying so, when no Chromium is installed (`apt-get install chromium`; the package's
 * setup installs it when it runs as root) or no WebAssembly library is built.
 */

import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { decodePng } from "./png-read.ts";

const root = join(import.meta.dir, "..");
const CANDIDATES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];
const chromium = process.env.CADENZA_CHROMIUM ?? CANDIDATES.map((name) => Bun.which(name))
  .find((path) => path !== null) ??
  null;
const wasmBuilt = ["prebuilt", "zig-out"].some((dir) =>
  existsSync(join(root, dir, "wasm", "cadenza_fast.wasm"))
);
const skipReason = chromium === null
  ? `no Chromium found (looked for ${CANDIDATES.join(", ")} on PATH and CADENZA_CHROMIUM): ` +
    "install Debian's chromium (apt-get install chromium) to run the browser test"
  : !wasmBuilt
  ? "no WebAssembly library: run `npm run build:wasm` to run the browser test"
  : null;
if (skipReason !== null) console.warn(`test/browser.test.ts skipped: ${skipReason}`);

/** The processes this file starts, stopped whatever happens. */
const started: { kill(signal?: number): void; exited: Promise<number> }[] = [];
const tempDirs: string[] = [];
afterAll(async () => {
  for (const proc of started) proc.kill(9);
  await Promise.all(started.map((proc) => proc.exited));
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** Reads a child's stream until `pattern` matches; the match's first group. */
async function waitForLine(
  stream: ReadableStream<Uint8Array>,
  pattern: RegExp,
  timeoutMs: number,
  what: string,
): Promise<string> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + timeoutMs;
  try {
    while (Date.now() < deadline) {
      const chunk = await Promise.race([
        reader.read(),
        Bun.sleep(deadline - Date.now()).then(() => null),
      ]);
      if (chunk === null || chunk.done) break;
      text += decoder.decode(chunk.value, { stream: true });
      const match = text.match(pattern);
      if (match) return match[1];
    }
  } finally {
    reader.releaseLock();
  }
  throw new Error(`${what} did not print ${pattern} within ${timeoutMs} ms; it printed:\n${text}`);
}

/** A DevTools-protocol connection to one page. */
class Devtools {
  #ws: WebSocket;
  #next = 1;
  #pending = new Map<number, { resolve(v: any): void; reject(e: Error): void }>();
  readonly console: string[] = [];

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (event) => {
      const message = JSON.parse(String(event.data));
      if (message.id !== undefined) {
        const waiter = this.#pending.get(message.id);
        this.#pending.delete(message.id);
        if (message.error) waiter?.reject(new Error(JSON.stringify(message.error)));
        else waiter?.resolve(message.result);
      } else if (message.method === "Runtime.consoleAPICalled") {
        const args = message.params.args.map((a: any) => a.value ?? a.description ?? "");
        this.console.push(`${message.params.type}: ${args.join(" ")}`);
      } else if (message.method === "Runtime.exceptionThrown") {
        this.console.push(`exception: ${JSON.stringify(message.params.exceptionDetails)}`);
      }
    };
  }

  static open(url: string): Promise<Devtools> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.onopen = () => resolve(new Devtools(ws));
      ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
    });
  }

  send(method: string, params: Record<string, unknown> = {}): Promise<any> {
    const id = this.#next++;
    this.#ws.send(JSON.stringify({ id, method, params }));
    return new Promise((resolve, reject) => this.#pending.set(id, { resolve, reject }));
  }

  /** Evaluates an expression in the page (awaiting a promise), returning its JSON value. */
  async evaluate(expression: string): Promise<any> {
    const result = await this.send("Runtime.evaluate", {
      expression,
      awaitPromise: true,
      returnByValue: true,
    });
    if (result.exceptionDetails) {
      throw new Error(`${expression}: ${JSON.stringify(result.exceptionDetails)}`);
    }
    return result.result.value;
  }

  close(): void {
    this.#ws.close();
  }
}

async function poll<T>(
  what: string,
  timeoutMs: number,
  read: () => Promise<T>,
  done: (value: T) => boolean,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await read();
  while (!done(value)) {
    if (Date.now() > deadline) {
      throw new Error(`${what}: not reached within ${timeoutMs} ms; last ${JSON.stringify(value)}`);
    }
    await Bun.sleep(100);
    value = await read();
  }
  return value;
}

test.skipIf(skipReason !== null)(
  "the demo page plays generated music in headless Chromium: worklet callbacks, no underruns",
  async () => {
    const server = Bun.spawn([process.execPath, join(root, "web", "serve.ts"), "--port", "0"], {
      cwd: root,
      stdout: "pipe",
      stderr: "inherit",
    });
    started.push(server);
    const url = await waitForLine(server.stdout, /(http:\/\/\S+\/)/, 60_000, "web/serve.ts");

    const profile = mkdtempSync(join(tmpdir(), "cadenza-chromium-"));
    tempDirs.push(profile);
    const browser = Bun.spawn([
      chromium!,
      "--headless=new",
      "--autoplay-policy=no-user-gesture-required",
      "--remote-debugging-port=0",
      `--user-data-dir=${profile}`,
      // Root (CI containers) needs it; the page runs no untrusted content.
      ...(process.getuid?.() === 0 ? ["--no-sandbox"] : []),
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-gpu",
      "--window-size=1280,760",
      "about:blank",
    ], { stdout: "ignore", stderr: "pipe" });
    started.push(browser);
    const endpoint = await waitForLine(
      browser.stderr,
      /DevTools listening on (ws:\/\/\S+)/,
      60_000,
      "chromium",
    );
    const http = endpoint.replace(/^ws:\/\//, "http://").replace(/\/devtools\/.*$/, "");
    const target = await (await fetch(`${http}/json/new?about:blank`, { method: "PUT" })).json();
    const page = await Devtools.open(target.webSocketDebuggerUrl);
    try {
      await page.send("Runtime.enable");
      await page.send("Page.enable");
      await page.send("Emulation.setDeviceMetricsOverride", {
        width: 1280,
        height: 760,
        deviceScaleFactor: 1,
        mobile: false,
      });
      await page.send("Page.navigate", { url });
      const ready = await poll(
        "the models loaded on the wasm backend",
        60_000,
        () =>
          page.evaluate(
            "globalThis.cadenzaDemo ? { ready: cadenzaDemo.ready, error: cadenzaDemo.error, " +
              "isolated: globalThis.crossOriginIsolated } : null",
          ),
        (v) => v !== null && (v.ready || v.error !== null),
      );
      expect(ready, page.console.join("\n")).toEqual({ ready: true, error: null, isolated: true });

      // Pick an emotion as a user does: a mouse click at the button's centre.
      const click = async (emotion: string) => {
        const box = await page.evaluate(
          `(() => { const r = document.querySelector('[data-emotion="${emotion}"]')` +
            ".getBoundingClientRect(); return { x: r.x + r.width / 2, y: r.y + r.height / 2 }; })()",
        );
        for (const type of ["mousePressed", "mouseReleased"]) {
          await page.send("Input.dispatchMouseEvent", {
            type,
            x: box.x,
            y: box.y,
            button: "left",
            clickCount: 1,
          });
        }
      };
      const read = () => page.evaluate("({ ...cadenzaDemo.stats(), error: cadenzaDemo.error })");
      await click("joyful");
      // Two whole bars and the start of a third, by the worklet's own clock.
      const stats = await poll(
        "two bars played",
        60_000,
        read,
        (s) => s.error !== null || s.bars >= 3,
      );
      const detail = `${JSON.stringify(stats)}\n${page.console.join("\n")}`;
      expect(stats.error, detail).toBeNull();
      expect(stats.emotion).toBe("joyful");
      expect(stats.library, detail).toContain("cadenza_fast.wasm");
      expect(stats.audioState).toBe("running");
      // At least a bar of frames went through the worklet, one callback per 128-frame quantum.
      expect(stats.callbacks, detail).toBeGreaterThan(0);
      expect(stats.callbacks * 128).toBe(stats.frames);
      expect(stats.underruns, detail).toBe(0);
      expect(stats.late, detail).toBe(0);
      expect(stats.steps, detail).toBeGreaterThan(1);
      expect(stats.notes, detail).toBeGreaterThan(0);
      expect(stats.peak, detail).toBeGreaterThan(0.001);
      expect(stats.peak, detail).toBeLessThan(1);

      // A change of emotion while playing: the new piece starts where the decoded music ends,
      // and a bar of it plays with still no underrun and no late event.
      await click("sad");
      const changed = await poll(
        "a bar of the new emotion played",
        60_000,
        read,
        (s) => {
          const sad = s.pieces.find((p: { emotion: string }) => p.emotion === "sad");
          return s.error !== null || (sad !== undefined && s.frames >= sad.frame + sad.barFrames);
        },
      );
      const changedDetail = `${JSON.stringify(changed)}\n${page.console.join("\n")}`;
      expect(changed.error, changedDetail).toBeNull();
      expect(changed.pieces.map((p: { emotion: string }) => p.emotion)).toEqual(["joyful", "sad"]);
      // It starts a moment after the click (0.1 s ahead of the clock the worker read), not after
      // the 2 s of music already decoded: that is cut.
      const startsAfter = (changed.pieces[1].frame - stats.frames) / stats.sampleRate;
      expect(startsAfter, changedDetail).toBeGreaterThan(0);
      expect(startsAfter, changedDetail).toBeLessThan(1.5);
      expect(changed.underruns, changedDetail).toBe(0);
      expect(changed.late, changedDetail).toBe(0);
      expect(changed.notes).toBeGreaterThan(stats.notes);

      const shot = await page.send("Page.captureScreenshot", { format: "png" });
      const png = Uint8Array.from(atob(shot.data), (c) => c.charCodeAt(0));
      const image = decodePng(png);
      expect(image.width).toBe(1280);
      // The piano roll shows melody (amber #f2a541) and chord (blue #4aa3df) notes: pixels of
      // either hue, drawn at some opacity over the dark background.
      let amber = 0;
      let blue = 0;
      for (let i = 0; i < image.pixels.length; i += 4) {
        const [r, g, b] = [image.pixels[i], image.pixels[i + 1], image.pixels[i + 2]];
        if (r > 90 && r > b + 50 && g > b + 20) amber++;
        if (b > 90 && b > r + 40 && g > r + 20) blue++;
      }
      expect(amber, "melody notes drawn").toBeGreaterThan(50);
      expect(blue, "chord notes drawn").toBeGreaterThan(50);
      const out = process.env.CADENZA_SCREENSHOT ?? join(root, "out", "browser-demo.png");
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(out, png);
    } finally {
      // Chromium closes itself (and its child processes), pass or fail; afterAll kills it if
      // it has not within 10 s.
      await Promise.race([page.send("Browser.close").catch(() => {}), Bun.sleep(10_000)]);
      page.close();
    }
    await Promise.race([browser.exited, Bun.sleep(10_000)]);
  },
  180_000,
);
