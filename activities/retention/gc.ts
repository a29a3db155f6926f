// Garbage collection of the chunk store, in two phases as Proxmox Backup Server does it: mark every chunk a kept
// version of any store needs, then sweep only the unmarked chunks older than the start of the mark minus a margin.
//
// Why a transfer saving chunks meanwhile never loses one: a sync holds the chunk store's lock shared from before it
// first asks whether a chunk exists until its COMMIT is durable, and creates or touches (mtime = now) every chunk its
// commit will make an older version need. The mark starts by taking the lock exclusively for an instant and noting
// markStart inside it, so at markStart no sync is between saving and committing: every sync either committed before
// (its version and manifest are on disk, and the mark reads them) or saves after (its chunks are newer than
// markStart). PBS gets the same from the start time of its oldest running writer. The sweep runs under the exclusive
// lock and stats each chunk there, so a chunk touched up to that moment is seen as young.
//
// The margin: PBS uses 24 h 5 min because it relies on atime, which relatime updates at most once a day. dosvob sets
// mtime explicitly, so the margin covers only clocks: the coarse kernel clock that stamps a new file's mtime (a few
// ms behind Date.now()), a wall-clock step back by NTP between markStart and a save, and a network filesystem whose
// server stamps mtimes with its own clock. One hour covers those with room to spare and costs nothing in practice:
// a chunk becomes garbage when the last version needing it is pruned, days after it was last written.
import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import {
  chunksDir,
  chunksNeeded,
  isStoreKey,
  listChunks,
  listStores,
  listVersions,
  lockChunkStoreExclusive,
  markNeededChunks,
} from '../store/index.js';
import type { GcReport } from './types';

export const DEFAULT_GC_MARGIN_MS = 60 * 60 * 1000;

/** `<64 hex>.tmp-<random>`: what a save interrupted before its rename leaves behind. */
const TMP_RE = /^[0-9a-f]{64}\.tmp-/;

export interface GcHooks {
  /** After markStart is noted, before the mark reads any manifest (tests interleave a sync here). */
  afterMarkStart?: () => void | Promise<void>;
  /** After the mark, before the sweep takes the lock. */
  beforeSweep?: () => void | Promise<void>;
  /** Inside the sweep, after each chunk or temp file removed (tests kill the process here). */
  onRemoved?: (path: string) => void | Promise<void>;
}

export interface GcOptions {
  dryRun?: boolean;
  /** Dry run only: count as if these versions were gone (what a prune's dry run would remove). */
  assumeRemoved?: ReadonlyMap<string, readonly string[]>;
  marginMs?: number;
  signal?: AbortSignal;
  hooks?: GcHooks;
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}

async function tmpFiles(backupsDir: string): Promise<string[]> {
  const root = chunksDir(backupsDir);
  let prefixes: string[];
  try {
    prefixes = (await readdir(root)).filter((n) => /^[0-9a-f]{2}$/.test(n));
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return [];
    throw err;
  }
  const out: string[] = [];
  for (const p of prefixes) {
    try {
      for (const name of await readdir(join(root, p))) if (TMP_RE.test(name)) out.push(join(root, p, name));
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
  }
  return out.sort();
}

/** Unlink `path`; false if it was already gone. */
async function removeFile(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

/** The mark of a dry run: what the versions a prune would leave need (relative to the current manifests). */
async function markKept(backupsDir: string, removed: ReadonlyMap<string, readonly string[]>): Promise<Set<string>> {
  const marked = new Set<string>();
  for (const key of (await listStores(backupsDir)).filter(isStoreKey)) {
    const gone = new Set(removed.get(key) ?? []);
    const ids = (await listVersions(backupsDir, key)).map((v) => v.versionId).filter((id) => !gone.has(id));
    for (const needs of (await chunksNeeded(backupsDir, key, ids)).values())
      for (const h of needs?.keys() ?? []) marked.add(h);
  }
  return marked;
}

export async function collectGarbage(backupsDir: string, options: GcOptions = {}): Promise<GcReport> {
  const dryRun = options.dryRun === true;
  const marginMs = options.marginMs ?? DEFAULT_GC_MARGIN_MS;
  const hooks = options.hooks ?? {};
  let markStart: number;
  if (dryRun) {
    // A dry run writes nothing, not even the lock file; it may count a chunk a committing sync is about to need as
    // garbage, which is harmless since it removes nothing.
    markStart = Date.now();
  } else {
    const barrier = await lockChunkStoreExclusive(backupsDir, options.signal);
    try {
      markStart = Date.now();
    } finally {
      await barrier.release();
    }
  }
  await hooks.afterMarkStart?.();
  if (options.assumeRemoved && !dryRun) throw new Error('assumeRemoved is for a dry run only');
  const marked = options.assumeRemoved
    ? await markKept(backupsDir, options.assumeRemoved)
    : await markNeededChunks(backupsDir);
  options.signal?.throwIfAborted();
  await hooks.beforeSweep?.();

  const cutoff = markStart - marginMs;
  const report: GcReport = {
    dryRun,
    markStart: new Date(markStart).toISOString(),
    marginMs,
    markedChunks: marked.size,
    chunksBefore: 0,
    chunksRemoved: 0,
    bytesFreed: 0,
    youngUnneeded: 0,
    tmpRemoved: 0,
    tmpBytesFreed: 0,
  };
  const lock = dryRun ? undefined : await lockChunkStoreExclusive(backupsDir, options.signal);
  try {
    // Listed (and so stat'ed) inside the lock: an mtime a sync set a moment ago is the one compared.
    const chunks = await listChunks(backupsDir);
    report.chunksBefore = chunks.length;
    for (const c of chunks) {
      if (marked.has(c.hash)) continue;
      if (c.mtimeMs >= cutoff) {
        report.youngUnneeded++;
        continue;
      }
      options.signal?.throwIfAborted();
      if (dryRun || (await removeFile(c.path))) {
        report.chunksRemoved++;
        report.bytesFreed += c.sizeBytes;
        if (!dryRun) await hooks.onRemoved?.(c.path);
      }
    }
    // Under the exclusive lock no save is running, so every temp file is an interrupted one; the cutoff still applies
    // in case a writer ignores the lock (an older dosvob).
    for (const path of await tmpFiles(backupsDir)) {
      let st;
      try {
        st = await stat(path);
      } catch (err) {
        if (isErrno(err, 'ENOENT')) continue;
        throw err;
      }
      if (st.mtimeMs >= cutoff) continue;
      if (dryRun || (await removeFile(path))) {
        report.tmpRemoved++;
        report.tmpBytesFreed += st.size;
        if (!dryRun) await hooks.onRemoved?.(path);
      }
    }
  } finally {
    await lock?.release();
  }
  return report;
}
