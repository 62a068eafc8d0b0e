/**
 * The Deno allocation probe of the audio, live and rt tests: V8 counts heapUsed to the byte
 * between collections, so the growth over a chunk of calls, less what reading heapUsed
 * allocates itself, is what the calls allocated, unless a scavenge ran in it (then it is
 * negative and that chunk counts 0). Summed over 100 chunks it is a lower bound on what they
 * allocated, exact when no collection ran; reported per 1,000 calls. (Not a median: the rt
 * engine accepts submits in bursts, so a typical chunk may not take the accepting path at all.)
 */

const CHUNKS = 100;

function heapUsed(): number {
  return Deno.memoryUsage().heapUsed;
}

/** What one heapUsed() reading allocates itself (the median over empty chunks). */
function probeBytes(): number {
  const growth: number[] = [];
  for (let c = 0; c < 21; c++) {
    const before = heapUsed();
    growth.push(heapUsed() - before);
  }
  return growth.sort((a, b) => a - b)[10];
}

/** Bytes per 1,000 calls of body: chunk growths above the probe's own, summed. */
export function bytesPerThousand(calls: number, body: (calls: number) => void): number {
  const chunk = calls / CHUNKS;
  const probe = probeBytes();
  let grown = 0;
  for (let c = 0; c < CHUNKS; c++) {
    const before = heapUsed();
    body(chunk);
    grown += Math.max(0, heapUsed() - before - probe);
  }
  return Math.round(grown * (1000 / calls));
}
