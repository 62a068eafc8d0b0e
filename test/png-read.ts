/**
 * A small PNG reader for the tests, from the PNG specification and independent of the renderer:
 * the signature, chunks with their CRC-32, IHDR, and the IDAT stream inflated (node:zlib) and
 * un-filtered into RGBA pixels. Only what resvg writes is handled (8-bit RGBA, no interlace).
 */

import { inflateSync } from "node:zlib";

export interface PngImage {
  width: number;
  height: number;
  /** RGBA, row by row. */
  pixels: Uint8Array;
}

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Width and height from IHDR, after checking the signature and the IHDR CRC. */
export function pngSize(bytes: Uint8Array): { width: number; height: number } {
  if (bytes.length < 33 || SIGNATURE.some((b, i) => bytes[i] !== b)) throw new Error("not a PNG");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = String.fromCharCode(...bytes.subarray(12, 16));
  if (view.getUint32(8) !== 13 || type !== "IHDR") throw new Error(`first chunk is ${type}`);
  if (crc32(bytes.subarray(12, 29)) !== view.getUint32(29)) throw new Error("IHDR CRC mismatch");
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/**
 * Decodes the whole image (8-bit RGBA or RGB, not interlaced) to RGBA; every chunk's CRC is
 * checked.
 */
export function decodePng(bytes: Uint8Array): PngImage {
  const { width, height } = pngSize(bytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes[24] !== 8 || (bytes[25] !== 6 && bytes[25] !== 2) || bytes[28] !== 0) {
    throw new Error(
      `unhandled PNG: depth ${bytes[24]}, colour type ${bytes[25]}, interlace ${bytes[28]}`,
    );
  }
  const idat: Uint8Array[] = [];
  let at = 8;
  let ended = false;
  while (at + 12 <= bytes.length && !ended) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const body = bytes.subarray(at + 8, at + 8 + length);
    if (crc32(bytes.subarray(at + 4, at + 8 + length)) !== view.getUint32(at + 8 + length)) {
      throw new Error(`${type} CRC mismatch`);
    }
    if (type === "IDAT") idat.push(body);
    ended = type === "IEND";
    at += 12 + length;
  }
  if (!ended) throw new Error("no IEND chunk");
  const joined = new Uint8Array(idat.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const chunk of idat) {
    joined.set(chunk, o);
    o += chunk.length;
  }
  const raw = new Uint8Array(inflateSync(joined));
  const channels = bytes[25] === 6 ? 4 : 3;
  const stride = width * channels;
  if (raw.length !== height * (stride + 1)) throw new Error(`image data is ${raw.length} bytes`);
  const pixels = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = y * stride;
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? pixels[row + x - channels] : 0;
      const b = y > 0 ? pixels[row - stride + x] : 0;
      const c = x >= channels && y > 0 ? pixels[row - stride + x - channels] : 0;
      const predictor = [0, a, b, (a + b) >> 1, paeth(a, b, c)][filter];
      if (predictor === undefined) throw new Error(`row ${y}: filter ${filter}`);
      pixels[row + x] = (line[x] + predictor) & 0xff;
    }
  }
  if (channels === 4) return { width, height, pixels };
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0, j = 0; i < pixels.length; i += 3, j += 4) {
    rgba[j] = pixels[i];
    rgba[j + 1] = pixels[i + 1];
    rgba[j + 2] = pixels[i + 2];
    rgba[j + 3] = 255;
  }
  return { width, height, pixels: rgba };
}
