// How long one volume's transfer may take in all, retries included (its schedule-to-close timeout). The stall limit
// ends an attempt whose droplet went silent; this ends a transfer that keeps trickling, or keeps failing, so a paid
// droplet, snapshot and copy are not held for the 24 h x attempts that the per-attempt timeout alone would allow.
import type { Timings } from './types';

/**
 * A retried attempt resumes where the last one stopped, so the data is paid for once, at the slowest rate dosvob
 * promises to work with; every attempt gets the floor on top (connect, hash the local image, apply, backoff).
 */
export function transferBudgetMs(t: Timings, sizeBytes: number): number {
  const data = (Math.max(0, sizeBytes) / Math.max(1, t.transferSlowBytesPerSecond)) * 1000;
  return Math.ceil(t.transferMaximumAttempts * t.transferAttemptFloorMs + data);
}
