// The chunk store: blocks of older versions, content-addressed by their SHA-256, shared by every store of a backups
// directory (identical blocks are kept once; all-zero blocks never).
//
//   backups/.dosvob/.chunks/<first 2 hex>/<64 hex>          the block, exactly its bytes
//   backups/.dosvob/.chunks/<first 2 hex>/<64 hex>.tmp-...  a save that did not finish: garbage
//   backups/.dosvob/.chunks/<first 2 hex>/<64 hex>.bad      found damaged by verification, kept aside for a person
//   backups/.dosvob/.chunks/.lock                           flock: shared by savers, exclusive for a sweep (GC)
//
// A chunk appears only by rename after its data is fsynced, so a name always means complete content (a crash leaves a
// temp file at worst). A sync saves what it will overwrite under the shared lock, from before it first asks whether
// a chunk exists until its COMMIT is durable, and touches (utimes) a chunk it finds already there: a sweep under the
// exclusive lock that removes only unneeded chunks older than the start of its mark can then never take one a
// committing sync relies on.
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, rename, stat, utimes, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { flock } from 'fs-ext';
import { isErrno, rethrowDiskFull } from './errors.js';
import { fsyncDir, readFully, unlinkIfExists, writeFully } from './fsutil.js';
import { chunkPath, chunksDir, isChunkName } from './layout.js';

export interface ChunkInfo {
  /** SHA-256 of the content, lower-case hex (the file's name). */
  hash: string;
  path: string;
  sizeBytes: number;
  mtimeMs: number;
}

function tryFlock(fd: number, mode: 'shnb' | 'exnb'): Promise<boolean> {
  return new Promise((resolve, reject) => {
    flock(fd, mode, (err) => {
      if (!err) resolve(true);
      else if (isErrno(err, 'EAGAIN') || isErrno(err, 'EWOULDBLOCK')) resolve(false);
      else reject(err);
    });
  });
}

export interface ChunkStoreLock {
  release(): Promise<void>;
}

/**
 * Take the chunk store's lock. Polls a non-blocking flock rather than blocking a thread-pool thread (which the rest
 * of the process's file I/O shares) for however long the holder needs.
 */
async function lockChunkStore(
  backupsDir: string,
  mode: 'shnb' | 'exnb',
  signal?: AbortSignal,
): Promise<ChunkStoreLock> {
  const dir = chunksDir(backupsDir);
  await mkdir(dir, { recursive: true });
  const fh = await open(join(dir, '.lock'), constants.O_RDWR | constants.O_CREAT, 0o644);
  try {
    let wait = 5;
    while (!(await tryFlock(fh.fd, mode))) {
      signal?.throwIfAborted();
      await sleep(wait);
      wait = Math.min(wait * 2, 200);
    }
  } catch (err) {
    await fh.close();
    throw err;
  }
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      await fh.close(); // closing the descriptor drops the flock
    },
  };
}

/** Shared: any number of savers at once. */
export function lockChunkStoreShared(backupsDir: string, signal?: AbortSignal): Promise<ChunkStoreLock> {
  return lockChunkStore(backupsDir, 'shnb', signal);
}

/** Exclusive: no saver is between its first existence check and its COMMIT. For a GC sweep. */
export function lockChunkStoreExclusive(backupsDir: string, signal?: AbortSignal): Promise<ChunkStoreLock> {
  return lockChunkStore(backupsDir, 'exnb', signal);
}

/** A block to keep: its bytes are at `offset` (length `length`) of the file being read, with this SHA-256. */
export interface BlockToSave {
  index: number;
  offset: number;
  length: number;
  hash: Buffer;
}

export interface SaveReport {
  /** Chunks written now. */
  written: number;
  bytesWritten: number;
  /** Already there (touched so that a concurrent sweep keeps them). */
  reused: number;
  /** Blocks whose content in the image did not match the hash they were to be saved under: not saved. */
  mismatched: number[];
}

const FSYNC_PARALLEL = 4;
/** ChunkSaver's datasyncs at once, while the stream needs the thread pool too. */
const BACKGROUND_SYNCS = 2;

async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(workers);
}

/** A temp file holding a chunk's checked content, written before the commit (ChunkSaver). */
export interface StagedChunk {
  path: string;
  /** Its data was fdatasynced (successfully): only the rename and its directory's fsync are left. */
  durable: boolean;
}

export interface SaveOptions {
  now?: Date;
  /** A temp file already holding a chunk's checked content (ChunkSaver.take), to be made durable instead of copied. */
  take?: (hashHex: string) => StagedChunk | undefined;
  onWritten?: (chunksWritten: number) => void | Promise<void>;
}

/**
 * Make every block durable in the chunk store (read from `source`, checked against its hash). Call under the shared
 * lock. On failure the temp files are removed and chunks already renamed stay (complete, merely unreferenced).
 */
export async function saveChunks(
  backupsDir: string,
  source: FileHandle,
  blocks: BlockToSave[],
  options: SaveOptions = {},
): Promise<SaveReport> {
  const now = options.now ?? new Date();
  const report: SaveReport = { written: 0, bytesWritten: 0, reused: 0, mismatched: [] };
  // fh undefined: a staged chunk whose data is durable already.
  const pending: { tmp: string; final: string; fh: FileHandle | undefined }[] = [];
  const seen = new Set<string>();
  const newDirs = new Set<string>();
  // A chunk found in place may have been renamed there by another sync a moment ago, its directory not yet fsynced.
  const foundDirs = new Set<string>();
  let buf = Buffer.alloc(0);
  try {
    for (const b of [...blocks].sort((x, y) => x.offset - y.offset)) {
      const hex = b.hash.toString('hex');
      if (seen.has(hex)) continue;
      seen.add(hex);
      const final = chunkPath(backupsDir, hex);
      try {
        await utimes(final, now, now);
        report.reused++;
        foundDirs.add(dirname(final));
        continue;
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
      const staged = options.take?.(hex);
      if (staged !== undefined) {
        try {
          pending.push({ tmp: staged.path, final, fh: staged.durable ? undefined : await open(staged.path, 'r+') });
          // Its prefix directory may be new: make the chunk store's own entries durable too, below.
          newDirs.add(dirname(final));
          report.written++;
          report.bytesWritten += b.length;
          continue;
        } catch (err) {
          if (!isErrno(err, 'ENOENT')) throw err;
        }
      }
      if (buf.length < b.length) buf = Buffer.allocUnsafe(b.length);
      const data = await readFully(source, b.length, b.offset, buf);
      const full = data.length === b.length ? data : Buffer.concat([data, Buffer.alloc(b.length - data.length)]);
      if (!createHash('sha256').update(full).digest().equals(b.hash)) {
        report.mismatched.push(b.index);
        seen.delete(hex);
        continue;
      }
      const dir = dirname(final);
      if ((await mkdir(dir, { recursive: true })) !== undefined) newDirs.add(dir);
      const tmp = `${final}.tmp-${randomBytes(4).toString('hex')}`;
      const fh = await open(tmp, 'wx');
      pending.push({ tmp, final, fh });
      await writeFully(fh, full, 0);
      report.written++;
      report.bytesWritten += full.length;
      await options.onWritten?.(report.written);
    }
    // Data first (in parallel: the journal batches them), then the names, then the directories that hold the names.
    await inParallel(
      pending.filter((p) => p.fh !== undefined),
      FSYNC_PARALLEL,
      async (p) => {
        await p.fh?.sync();
      },
    );
    for (const p of pending) {
      await p.fh?.close();
      p.fh = undefined;
      await rename(p.tmp, p.final);
    }
    const dirs = [...new Set([...pending.map((p) => dirname(p.final)), ...foundDirs])];
    await inParallel(dirs, FSYNC_PARALLEL, fsyncDir);
    if (newDirs.size > 0) {
      await fsyncDir(chunksDir(backupsDir));
      await fsyncDir(dirname(chunksDir(backupsDir)));
    }
    pending.length = 0;
    return report;
  } catch (err) {
    for (const p of pending) {
      await p.fh?.close().catch(() => undefined);
      await unlinkIfExists(p.tmp).catch(() => undefined);
    }
    rethrowDiskFull(err, 'the chunk store (blocks kept for older versions)');
  }
}

/**
 * Copies blocks in the background while a transfer is still streaming, as soon as it is known they will be
 * overwritten: read from the image, checked, written under a temp name and fdatasynced (in the background too, a few
 * at a time, so that the commit does not wait for 2 % of a volume to reach the disk; the rename and the directory
 * fsyncs still happen at the commit, all at once, where the journal batches them). Best effort: the commit's own pass
 * (saveChunks, given `take`) is what counts; it uses a temp made here when the chunk is still missing, fsyncs it if
 * its datasync did not finish, and saves whatever this did not get to.
 */
export class ChunkSaver {
  /** Temp files written here (content checked), by hash; `durable` once their datasync succeeded. */
  private readonly staged = new Map<string, StagedChunk>();
  /** Written, open, waiting for their datasync. */
  private readonly unsynced: { hex: string; fh: FileHandle }[] = [];
  private syncing: Promise<void> | undefined;
  private readonly queue: BlockToSave[] = [];
  private readonly queued = new Set<string>();
  private working = false;
  private idle: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;
  private stopped = false;
  private fh: Promise<FileHandle> | undefined;
  private written = 0;
  private buf = Buffer.alloc(0);

  constructor(
    private readonly backupsDir: string,
    private readonly source: string,
    private readonly onWritten?: (chunksWritten: number) => void | Promise<void>,
  ) {}

  add(b: BlockToSave): void {
    const hex = b.hash.toString('hex');
    if (this.stopped || this.queued.has(hex)) return;
    this.queued.add(hex);
    this.queue.push(b);
    if (this.working) return;
    this.working = true;
    this.idle = new Promise((resolve) => (this.wake = resolve));
    void this.work();
  }

  /** Wait until everything queued is staged (or given up), and every datasync begun here has ended. */
  async drain(): Promise<void> {
    await this.idle;
    await this.syncsDone();
  }

  /** A temp file with this chunk's content is waiting (its space is already taken). */
  has(hex: string): boolean {
    return this.staged.has(hex);
  }

  /** The temp file holding this chunk's content, handed over (the caller renames or removes it). */
  take(hex: string): StagedChunk | undefined {
    const tmp = this.staged.get(hex);
    this.staged.delete(hex);
    return tmp;
  }

  /** Stop, and remove the temp files nobody took. */
  async close(): Promise<void> {
    this.stopped = true;
    this.queue.length = 0;
    await this.idle;
    await this.syncsDone();
    const fh = this.fh;
    this.fh = undefined;
    if (fh) await (await fh.catch(() => undefined))?.close();
    for (const { path } of this.staged.values()) await unlinkIfExists(path).catch(() => undefined);
    this.staged.clear();
  }

  private async work(): Promise<void> {
    try {
      for (let b = this.queue.shift(); b && !this.stopped; b = this.queue.shift()) {
        try {
          await this.stage(b);
        } catch {
          // e.g. a full disk: stop early copying; the commit's own pass reports it properly.
          this.stopped = true;
        }
      }
    } finally {
      this.working = false;
      this.wake?.();
    }
  }

  private async stage(b: BlockToSave): Promise<void> {
    const hex = b.hash.toString('hex');
    const final = chunkPath(this.backupsDir, hex);
    try {
      await stat(final);
      return; // there already: the commit's pass touches it
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
    this.fh ??= open(this.source, 'r');
    if (this.buf.length < b.length) this.buf = Buffer.allocUnsafe(b.length);
    const data = await readFully(await this.fh, b.length, b.offset, this.buf);
    if (data.length !== b.length || !createHash('sha256').update(data).digest().equals(b.hash)) return;
    await mkdir(dirname(final), { recursive: true });
    const tmp = `${final}.tmp-${randomBytes(4).toString('hex')}`;
    const fh = await open(tmp, 'wx');
    try {
      await writeFully(fh, data, 0);
    } catch (err) {
      await fh.close().catch(() => undefined);
      await unlinkIfExists(tmp).catch(() => undefined);
      throw err;
    }
    this.staged.set(hex, { path: tmp, durable: false });
    this.unsynced.push({ hex, fh });
    this.kickSync();
    await this.onWritten?.(++this.written);
  }

  private kickSync(): void {
    if (this.syncing) return;
    this.syncing = this.syncStaged().finally(() => {
      this.syncing = undefined;
      // Staged between the loop's last check and here.
      if (this.unsynced.length > 0) this.kickSync();
    });
  }

  private async syncsDone(): Promise<void> {
    while (this.syncing) await this.syncing;
  }

  /**
   * Datasync the staged temps, BACKGROUND_SYNCS at a time (the journal batches those that overlap; more would take the
   * thread pool from the stream). A temp whose datasync fails is dropped, not handed to the commit: after a failed
   * writeback a later fsync on a new descriptor can succeed without the data, so the commit copies it again instead.
   */
  private async syncStaged(): Promise<void> {
    while (this.unsynced.length > 0) {
      const batch = this.unsynced.splice(0, this.unsynced.length);
      await inParallel(batch, BACKGROUND_SYNCS, async ({ hex, fh }) => {
        let ok = false;
        try {
          await fh.datasync();
          ok = true;
        } catch {
          // dropped below
        }
        await fh.close().catch(() => undefined);
        const staged = this.staged.get(hex);
        if (!staged) return; // taken meanwhile: the commit's pass fsyncs it itself
        if (ok) staged.durable = true;
        else {
          this.staged.delete(hex);
          await unlinkIfExists(staged.path).catch(() => undefined);
        }
      });
    }
  }
}

/** Every chunk with a valid name (not temp files, not ones set aside as bad), in name order. */
export async function listChunks(backupsDir: string): Promise<ChunkInfo[]> {
  const root = chunksDir(backupsDir);
  let prefixes: string[];
  try {
    prefixes = (await readdir(root)).filter((n) => /^[0-9a-f]{2}$/.test(n)).sort();
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return [];
    throw err;
  }
  const out: ChunkInfo[] = [];
  for (const p of prefixes) {
    let names: string[];
    try {
      names = (await readdir(join(root, p))).filter((n) => isChunkName(n) && n.startsWith(p)).sort();
    } catch (err) {
      if (isErrno(err, 'ENOENT')) continue;
      throw err;
    }
    for (const hash of names) {
      const path = join(root, p, hash);
      try {
        const st = await stat(path);
        out.push({ hash, path, sizeBytes: st.size, mtimeMs: st.mtimeMs });
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err; // removed meanwhile (a sweep)
      }
    }
  }
  return out;
}

export async function chunkExists(backupsDir: string, hashHex: string): Promise<boolean> {
  try {
    await stat(chunkPath(backupsDir, hashHex));
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

/** Read a chunk into `into` (or a new buffer); undefined if there is none. The caller checks its hash. */
export async function readChunk(backupsDir: string, hashHex: string, length: number, into?: Buffer) {
  let fh: FileHandle;
  try {
    fh = await open(chunkPath(backupsDir, hashHex), 'r');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
  try {
    return await readFully(fh, length, 0, into);
  } finally {
    await fh.close();
  }
}

/** Check one chunk's content against its name. */
export async function checkChunk(path: string, hash: string): Promise<string | undefined> {
  const fh = await open(path, 'r');
  try {
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(1 << 20);
    let pos = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    const got = h.digest('hex');
    return got === hash ? undefined : `content hashes to ${got}`;
  } finally {
    await fh.close();
  }
}

/** Move a damaged chunk aside (`<hash>.bad`), so that it is neither used nor mistaken for a good one again. */
export async function setChunkAside(path: string): Promise<string> {
  const bad = `${path}.bad`;
  await rename(path, bad);
  await fsyncDir(dirname(path));
  return bad;
}
