// Issue 10's "a volume synced 12 times, retention applied over a synthetic timeline": the sync times, the policy, and
// exactly which syncs remain and why. The retention unit test checks the engine against it; a store test can sync
// 12 times at these times and check that these versions remain and restore byte-exact.
import type { KeepConfig } from '../../common/retention-config';

/** Sync n (1-based) happened at TWELVE_SYNCS[n - 1], UTC. 30 November 2026 is a Monday (ISO week 2026-W49). */
export const TWELVE_SYNCS: readonly string[] = [
  '2026-09-02T04:00:00Z', // 1
  '2026-09-20T04:00:00Z', // 2
  '2026-10-05T04:00:00Z', // 3
  '2026-10-19T04:00:00Z', // 4
  '2026-11-02T04:00:00Z', // 5
  '2026-11-16T04:00:00Z', // 6
  '2026-11-23T04:00:00Z', // 7
  '2026-11-27T04:00:00Z', // 8
  '2026-11-28T04:00:00Z', // 9
  '2026-11-29T04:00:00Z', // 10
  '2026-11-29T16:00:00Z', // 11: a second sync that day
  '2026-11-30T04:00:00Z', // 12
];

export const TWELVE_SYNCS_KEEP: KeepConfig = { last: 3, daily: 3, weekly: 3, monthly: 4 };

/** Sync number → every reason it is kept; the syncs not listed (3, 5, 7, 8) are removed. */
export const TWELVE_SYNCS_KEPT: Readonly<Record<number, readonly string[]>> = {
  12: ['last 1', 'daily 2026-11-30', 'weekly 2026-W49', 'monthly 2026-11', 'newest'],
  11: ['last 2', 'daily 2026-11-29', 'weekly 2026-W48'],
  10: ['last 3'],
  9: ['daily 2026-11-28'],
  6: ['weekly 2026-W47'],
  4: ['monthly 2026-10'],
  2: ['monthly 2026-09'],
  // The monthly rule has a 4th slot left at the oldest version (restic >= 0.16.0).
  1: ['oldest monthly 2026-09'],
};
