// Block choices of the kept-versions benches (test/bench and test/store): the same seed picks the same blocks in
// both, so their figures describe the same device states.
import { createHash } from 'node:crypto';

/** `count` of `from`, chosen by seed: the same seed always picks the same blocks. */
export function pick(seed: string, count: number, from: number[]): number[] {
  return from
    .map((i) => ({ i, s: createHash('sha256').update(`${seed}:${i}`).digest().readUInt32BE(0) }))
    .sort((a, b) => a.s - b.s)
    .slice(0, count)
    .map((x) => x.i);
}
