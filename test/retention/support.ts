// Shared fixtures of the retention tests: a volume synced for real at the times of a synthetic timeline.
import { createHash } from 'node:crypto';
import { readFile, readdir, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { mock } from 'node:test';
import { chunksNeeded, listChunks, listStores, listVersions } from '../../activities/store/index.js';
import type { SyncVolumeOptions } from '../../activities/transfer/core.js';
import { TWELVE_SYNCS } from '../support/retention-timeline';
import type { Droplet } from '../transfer/helpers.js';
import { BLOCK, TestVolume, rng } from '../store/support.js';

/**
 * A sync whose version is dated `at`: the store dates a version by its commit, from the clock, and has no option to
 * set it, so the clock (Date only: timers run as usual) is set for the sync's duration.
 */
export async function syncAt(v: TestVolume, at: string, extra: Partial<SyncVolumeOptions> = {}): Promise<string> {
  mock.timers.enable({ apis: ['Date'], now: Date.parse(at) });
  try {
    return (await v.sync(extra)).versionId!;
  } finally {
    mock.timers.reset();
  }
}

/** A volume synced at each of TWELVE_SYNCS with random changes; ids[n - 1] is sync n's version. */
export async function twelveSyncs(d: Droplet, dir: string, seed: number): Promise<{ v: TestVolume; ids: string[] }> {
  const v = await TestVolume.create(d, dir, 24 * BLOCK + 999);
  const next = rng(seed);
  const recurring = Buffer.alloc(BLOCK, 7);
  const ids: string[] = [];
  for (let k = 1; k <= TWELVE_SYNCS.length; k++) {
    if (k > 1) await v.mutate(next, k % 3 === 0 ? recurring : undefined);
    ids.push(await syncAt(v, TWELVE_SYNCS[k - 1]!, { region: 'nyc3', runId: `run-${k}` }));
  }
  return { v, ids };
}

/** Every chunk dated `daysAgo` days back: older than any GC margin, so only the mark decides. */
export async function ageChunks(backups: string, daysAgo = 2): Promise<void> {
  const t = new Date(Date.now() - daysAgo * 24 * 3600_000);
  for (const c of await listChunks(backups)) await utimes(c.path, t, t);
}

/** The union of the chunks every version of every store needs. */
export async function neededChunks(backups: string): Promise<Set<string>> {
  const out = new Set<string>();
  for (const key of await listStores(backups)) {
    for (const m of (await chunksNeeded(backups, key)).values()) for (const h of m?.keys() ?? []) out.add(h);
  }
  return out;
}

export async function versionIds(backups: string, key = 'vol1'): Promise<string[]> {
  return (await listVersions(backups, key)).map((x) => x.versionId);
}

/** Path -> size, mtime and content hash of every file under `root`: equal before and after means nothing changed. */
export async function treeState(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        out.set(`${p}/`, String((await stat(p)).mtimeMs));
        await walk(p);
      } else {
        const st = await stat(p);
        const sha = createHash('sha256')
          .update(await readFile(p))
          .digest('hex');
        out.set(p, `${st.size} ${st.mtimeMs} ${sha}`);
      }
    }
  };
  await walk(root);
  return out;
}

/** Forget the remembered content of versions that are gone, so assertAllRestore checks the survivors. */
export function forget(v: TestVolume, keep: readonly string[]): void {
  for (const id of [...v.states.keys()]) if (!keep.includes(id)) v.states.delete(id);
}
