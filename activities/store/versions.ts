// Kept versions: every committed sync of a store is a version, a manifest of its own under
// backups/.dosvob/<key>/versions/<versionId> (the same binary format as the current manifest, which is always a copy of
// the newest one). The image holds the newest version; the blocks an update overwrote went to the chunk store
// (chunks.ts) before it was committed. So block i of version V is: zeros if V's hash is the zero block's; the image's
// block i if V's hash equals the current manifest's at i; else the chunk named by V's hash.
//
// A version is removed by unlinking its manifest only (atomic); the chunks it alone needed become garbage for GC.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ManifestDamagedError, StoreFormatError, VersionNotFoundError, isErrno } from './errors.js';
import { checkChunk, listChunks, setChunkAside, type ChunkInfo } from './chunks.js';
import { fsyncDir, unlinkIfExists, writeFileAtomic } from './fsutil.js';
import { listStoreKeys } from './identity.js';
import { storePaths } from './layout.js';
import {
  blockLength,
  hashAt,
  readManifest,
  readManifestHeader,
  zeroHash,
  type Manifest,
  type ManifestHeader,
  type StaleBlocks,
} from './manifest.js';

export const VERSION_ID_RE = /^\d{8}T\d{6}Z-[0-9a-f]{6}$/;

/** Version ids sort by time: `YYYYMMDDTHHMMSSZ-<6 hex>`. `suffix` makes one deterministic (an upgrade's). */
export function newVersionId(at: Date, suffix?: string): string {
  const stamp = at
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replace(/[-:]/g, '');
  return `${stamp}-${suffix ?? randomBytes(3).toString('hex')}`;
}

export function versionPath(backupsDir: string, key: string, versionId: string): string {
  if (!VERSION_ID_RE.test(versionId)) throw new VersionNotFoundError(`not a version id: ${JSON.stringify(versionId)}`);
  return join(storePaths(backupsDir, key).versions, versionId);
}

/** A result of a check of one version (issue 12 records these in versions/<id>.checks.json). */
export interface VersionCheck {
  kind: string;
  at: string;
  ok: boolean;
  detail?: string;
  /** `unchecked`: the check could not judge it (an unknown filesystem, no checker installed); ok stays true. */
  result?: 'passed' | 'failed' | 'unchecked';
}

/** Suspect: the latest check of some kind failed (a later pass of the same kind clears it). */
export function isSuspectByChecks(checks: readonly VersionCheck[]): boolean {
  const latest = new Map<string, VersionCheck>();
  for (const c of checks) {
    const seen = latest.get(c.kind);
    if (!seen || seen.at <= c.at) latest.set(c.kind, c);
  }
  return [...latest.values()].some((c) => !c.ok);
}

export interface VersionRecord {
  key: string;
  versionId: string;
  /** When it was committed (ISO). Versions are listed oldest first by (time, versionId). */
  time: string;
  /** The version the image holds: never removable. */
  newest: boolean;
  snapshotId: string | null;
  snapshotCreatedAt: string | null;
  runId: string | null;
  /** The volume it was taken from: a re-created volume (same name and region, new id) is a new lineage of the key. */
  volumeId: string;
  volumeName: string;
  region: string | null;
  origin: 'sync' | 'adopted' | 'upgraded';
  blocksChanged: number | null;
  sizeBytes: number;
  blockSize: number;
  blockCount: number;
  digest: string;
  protected: boolean;
  /** Blocks its update could not write (they hold the previous version's content, which the manifest says). */
  staleBlocks?: StaleBlocks;
  checks: VersionCheck[];
  /** Derived from `checks` (isSuspectByChecks): retention keeps the newest version that is not. */
  suspect: boolean;
  /** Its snapshot was taken with the filesystem frozen by a hook (the side file `<id>.frozen`). */
  frozen?: boolean;
  manifestPath: string;
  /** The manifest cannot be read (the version is listed so that it can be removed; it cannot be restored). */
  damaged?: string;
}

function recordOf(key: string, versionId: string, path: string, h: ManifestHeader): Omit<VersionRecord, 'newest'> {
  return {
    key,
    versionId,
    time: h.committedAt,
    snapshotId: h.snapshotId,
    snapshotCreatedAt: h.snapshotCreatedAt,
    runId: h.runId ?? null,
    volumeId: h.volumeId,
    volumeName: h.volumeName,
    region: h.region ?? null,
    origin: h.upgradedFrom !== undefined ? 'upgraded' : h.origin,
    blocksChanged: h.blocksChanged ?? null,
    sizeBytes: h.sizeBytes,
    blockSize: h.blockSize,
    blockCount: h.blockCount,
    digest: h.digest,
    protected: false,
    ...(h.staleBlocks ? { staleBlocks: h.staleBlocks } : {}),
    checks: [],
    suspect: false,
    manifestPath: path,
  };
}

/** The id of the version the current manifest is (the image's), if it says. */
export async function currentVersionId(backupsDir: string, key: string): Promise<string | undefined> {
  try {
    return (await readManifestHeader(storePaths(backupsDir, key).manifest)).versionId;
  } catch (err) {
    if (isErrno(err, 'ENOENT') || err instanceof ManifestDamagedError || err instanceof StoreFormatError) {
      return undefined;
    }
    throw err;
  }
}

/** The versions of one store, oldest first (empty if it has none). Reads only the manifests' headers. */
export async function listVersions(backupsDir: string, key: string): Promise<VersionRecord[]> {
  const dir = storePaths(backupsDir, key).versions;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return [];
    throw err;
  }
  const present = new Set(names);
  const out: Omit<VersionRecord, 'newest'>[] = [];
  for (const versionId of names.filter((n) => VERSION_ID_RE.test(n))) {
    const path = join(dir, versionId);
    let rec: Omit<VersionRecord, 'newest'>;
    try {
      rec = recordOf(key, versionId, path, await readManifestHeader(path));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) continue; // removed meanwhile
      if (!(err instanceof ManifestDamagedError || err instanceof StoreFormatError)) throw err;
      rec = damagedRecord(key, versionId, path, err.message);
    }
    rec.protected = present.has(`${versionId}.protected`);
    if (present.has(`${versionId}.checks.json`)) rec.checks = await readChecks(join(dir, `${versionId}.checks.json`));
    rec.suspect = isSuspectByChecks(rec.checks);
    if (present.has(`${versionId}.frozen`)) rec.frozen = true;
    out.push(rec);
  }
  out.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : a.versionId < b.versionId ? -1 : 1));
  const current = await currentVersionId(backupsDir, key);
  const newestId = out.some((v) => v.versionId === current) ? current : out[out.length - 1]?.versionId;
  return out.map((v) => ({ ...v, newest: v.versionId === newestId }));
}

function damagedRecord(key: string, versionId: string, path: string, why: string): Omit<VersionRecord, 'newest'> {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(versionId)!;
  return {
    key,
    versionId,
    time: `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.000Z`,
    snapshotId: null,
    snapshotCreatedAt: null,
    runId: null,
    volumeId: '',
    volumeName: key,
    region: null,
    origin: 'sync',
    blocksChanged: null,
    sizeBytes: 0,
    blockSize: 0,
    blockCount: 0,
    digest: '',
    protected: false,
    checks: [],
    suspect: false,
    manifestPath: path,
    damaged: why,
  };
}

async function readChecks(path: string): Promise<VersionCheck[]> {
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as unknown;
    return Array.isArray(parsed) ? (parsed as VersionCheck[]) : [];
  } catch {
    return [];
  }
}

/** The full (checked) manifest of a version. */
export async function readVersionManifest(backupsDir: string, key: string, versionId: string): Promise<Manifest> {
  try {
    return await readManifest(versionPath(backupsDir, key, versionId));
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw new VersionNotFoundError(`${key} has no version ${versionId}`);
    throw err;
  }
}

/** Write versions/<id> (atomically) with these exact manifest bytes. */
export async function writeVersionFile(backupsDir: string, key: string, versionId: string, bytes: Buffer) {
  const path = versionPath(backupsDir, key, versionId);
  if ((await mkdir(storePaths(backupsDir, key).versions, { recursive: true })) !== undefined) {
    await fsyncDir(storePaths(backupsDir, key).dataDir);
  }
  await writeFileAtomic(path, bytes);
}

/**
 * Record that a version's snapshot was taken frozen (conf.json `hooks`): a side file, as `.protected` is, so that the
 * manifest's format stays as it is. Written before the sync's result is recorded, so a retried transfer that finds the
 * result finds the mark too.
 */
export async function markVersionFrozen(backupsDir: string, key: string, versionId: string): Promise<void> {
  await writeFileAtomic(`${versionPath(backupsDir, key, versionId)}.frozen`, '');
}

/** Mark a version as one retention must keep (or not). */
export async function setProtected(backupsDir: string, key: string, versionId: string, value: boolean) {
  const path = versionPath(backupsDir, key, versionId);
  try {
    await stat(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw new VersionNotFoundError(`${key} has no version ${versionId}`);
    throw err;
  }
  if (value) await writeFileAtomic(`${path}.protected`, '');
  else {
    await unlinkIfExists(`${path}.protected`);
    await fsyncDir(storePaths(backupsDir, key).versions);
  }
}

/**
 * Remove versions: each by unlinking its manifest (atomic), then its side files; one fsync of the directory. Never the
 * newest (the image's); a protected one only with `allowProtected`. Ids already gone are skipped. Returns those removed.
 * Their chunks stay until garbage collection.
 */
export async function removeVersionManifests(
  backupsDir: string,
  key: string,
  versionIds: readonly string[],
  options: { allowProtected?: boolean } = {},
): Promise<string[]> {
  const versions = await listVersions(backupsDir, key);
  // The newest on disk and the manifest's own: during a commit the new version exists a moment before the manifest.
  const current = await currentVersionId(backupsDir, key);
  const last = versions[versions.length - 1]?.versionId;
  const byId = new Map(versions.map((v) => [v.versionId, v]));
  for (const id of versionIds) {
    if (id === current || id === last) throw new Error(`${key} ${id} is the newest version: it cannot be removed`);
    if (byId.get(id)?.protected && !options.allowProtected) {
      throw new Error(`${key} ${id} is protected: unprotect it first`);
    }
  }
  const removed: string[] = [];
  for (const id of versionIds) {
    const path = versionPath(backupsDir, key, id);
    if (!byId.has(id)) continue;
    await unlinkIfExists(path);
    await unlinkIfExists(`${path}.protected`);
    await unlinkIfExists(`${path}.checks.json`);
    await unlinkIfExists(`${path}.frozen`);
    removed.push(id);
  }
  if (removed.length > 0) await fsyncDir(storePaths(backupsDir, key).versions);
  return removed;
}

async function currentHashes(backupsDir: string, key: string): Promise<Manifest | undefined> {
  try {
    return await readManifest(storePaths(backupsDir, key).manifest);
  } catch (err) {
    if (isErrno(err, 'ENOENT') || err instanceof ManifestDamagedError) return undefined;
    throw err;
  }
}

/** The chunk hashes (hex) a version needs: its non-zero blocks that differ from the current manifest at their index. */
export function neededBy(version: Manifest, current: Manifest | undefined): Map<string, number> {
  const out = new Map<string, number>();
  const { sizeBytes, blockSize, blockCount } = version.header;
  const cur = current && current.header.blockSize === blockSize ? current : undefined;
  for (let i = 0; i < blockCount; i++) {
    const h = hashAt(version.hashes, i);
    if (cur && i < cur.header.blockCount && hashAt(cur.hashes, i).equals(h)) continue;
    const len = blockLength(i, sizeBytes, blockSize);
    if (h.equals(zeroHash(len))) continue;
    out.set(h.toString('hex'), len);
  }
  return out;
}

/**
 * Per version of `key` (all, or those named), the chunks it needs (hex hash -> block length). A version whose manifest
 * cannot be read maps to undefined.
 */
export async function chunksNeeded(
  backupsDir: string,
  key: string,
  versionIds?: readonly string[],
): Promise<Map<string, Map<string, number> | undefined>> {
  const ids = versionIds ?? (await listVersions(backupsDir, key)).map((v) => v.versionId);
  const current = await currentHashes(backupsDir, key);
  const out = new Map<string, Map<string, number> | undefined>();
  for (const id of ids) {
    try {
      out.set(id, neededBy(await readVersionManifest(backupsDir, key, id), current));
    } catch (err) {
      if (err instanceof VersionNotFoundError) continue;
      if (err instanceof ManifestDamagedError || err instanceof StoreFormatError) out.set(id, undefined);
      else throw err;
    }
  }
  return out;
}

/**
 * Every chunk (hex) that some version of some store needs: the mark of a garbage collection. Run it, and the sweep that
 * follows, under `lockChunkStoreExclusive`: then no sync is between saving blocks and its COMMIT, and an update that is
 * committed but not yet applied is seen through its manifest.next (read before the manifest, so that its rename in
 * between cannot hide it): a chunk is needed relative to either, since the image may hold either for a while.
 */
export async function markNeededChunks(backupsDir: string): Promise<Set<string>> {
  const marked = new Set<string>();
  for (const key of await listStoreKeys(backupsDir)) {
    let paths: ReturnType<typeof storePaths>;
    try {
      paths = storePaths(backupsDir, key);
    } catch {
      continue; // not a store dosvob made
    }
    const references: Manifest[] = [];
    for (const p of [paths.manifestNext, paths.manifest]) {
      try {
        references.push(await readManifest(p));
      } catch (err) {
        if (!(isErrno(err, 'ENOENT') || err instanceof ManifestDamagedError)) throw err;
      }
    }
    for (const v of await listVersions(backupsDir, key)) {
      let m: Manifest;
      try {
        m = await readVersionManifest(backupsDir, key, v.versionId);
      } catch (err) {
        if (err instanceof VersionNotFoundError || err instanceof ManifestDamagedError) continue;
        throw err;
      }
      if (references.length === 0) for (const h of neededBy(m, undefined).keys()) marked.add(h);
      for (const ref of references) for (const h of neededBy(m, ref).keys()) marked.add(h);
    }
  }
  return marked;
}

export interface VerifyChunksOptions {
  /** Check only slice n (1-based) of `of` slices of the chunks (by hash), e.g. one a night. */
  subset?: { n: number; of: number };
  signal?: AbortSignal;
  onProgress?: (p: { chunksDone: number; chunkCount: number }) => void;
}

export interface BrokenVersion {
  key: string;
  versionId: string;
  /** Chunks it needs that are missing or were found damaged (hex). */
  missingChunks: string[];
  /** Its manifest itself cannot be read. */
  damaged?: string;
}

export interface VerifyChunksResult {
  checked: number;
  bad: { hash: string; movedTo: string; reason: string }[];
  /** Every version (of every store) that needs a chunk that is not there (any more): it cannot be restored byte-exact. */
  brokenVersions: BrokenVersion[];
}

/** In slice n of `of` (1-based), by the first 8 hex digits of the hash. */
export function inSubset(hash: string, subset: { n: number; of: number } | undefined): boolean {
  if (!subset) return true;
  return parseInt(hash.slice(0, 8), 16) % subset.of === subset.n - 1;
}

/**
 * Check every chunk (or a slice) against its name; a bad one is moved aside to `<hash>.bad`. Then check that every
 * version of every store has every chunk it needs, and name those that do not.
 */
export async function verifyChunks(backupsDir: string, options: VerifyChunksOptions = {}): Promise<VerifyChunksResult> {
  const { subset } = options;
  if (
    subset &&
    !(Number.isInteger(subset.n) && Number.isInteger(subset.of) && subset.n >= 1 && subset.n <= subset.of)
  ) {
    throw new Error(`invalid subset ${subset.n}/${subset.of}`);
  }
  const chunks = (await listChunks(backupsDir)).filter((c) => inSubset(c.hash, subset));
  const bad: VerifyChunksResult['bad'] = [];
  let done = 0;
  for (const c of chunks) {
    options.signal?.throwIfAborted();
    let reason: string | undefined;
    try {
      reason = await checkChunk(c.path, c.hash);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) continue; // swept meanwhile
      throw err;
    }
    if (reason !== undefined) bad.push({ hash: c.hash, movedTo: await setChunkAside(c.path), reason });
    options.onProgress?.({ chunksDone: ++done, chunkCount: chunks.length });
  }
  const present = new Set((await listChunks(backupsDir)).map((c) => c.hash));
  return { checked: chunks.length, bad, brokenVersions: await findBrokenVersions(backupsDir, present) };
}

/** Store by store, the chunks each version needs; a directory named as no volume could be is no store to read. */
async function* neededPerStore(
  backupsDir: string,
): AsyncGenerator<[key: string, needed: Map<string, Map<string, number> | undefined>]> {
  for (const key of await listStoreKeys(backupsDir)) {
    let needed: Map<string, Map<string, number> | undefined>;
    try {
      needed = await chunksNeeded(backupsDir, key);
    } catch (err) {
      if (err instanceof Error && /invalid volume name/.test(err.message)) continue;
      throw err;
    }
    yield [key, needed];
  }
}

/** Versions that need a chunk not in `present`. */
export async function findBrokenVersions(backupsDir: string, present: Set<string>): Promise<BrokenVersion[]> {
  const broken: BrokenVersion[] = [];
  for await (const [key, needed] of neededPerStore(backupsDir)) {
    for (const [versionId, need] of needed) {
      if (!need) {
        broken.push({ key, versionId, missingChunks: [], damaged: 'its manifest cannot be read' });
        continue;
      }
      const missing = [...need.keys()].filter((h) => !present.has(h));
      if (missing.length > 0) broken.push({ key, versionId, missingChunks: missing.sort() });
    }
  }
  return broken;
}

export interface VersionUsage {
  key: string;
  versionId: string;
  /** Bytes of the chunks that no other version (of any store) needs: what removing it (and GC) frees. */
  uniqueBytes: number;
  /** Chunks it needs (shared or not). */
  chunkRefs: number;
  /** Bytes of those chunks. */
  chunkBytes: number;
}

export interface StoreUsage {
  versions: VersionUsage[];
  chunkCount: number;
  /** Bytes of all chunk files (including ones no version needs any more, until GC). */
  chunkBytes: number;
  /** Chunks no version needs (garbage for GC), and their bytes. */
  unreferencedChunks: number;
  unreferencedBytes: number;
  /** The images' allocated bytes (they are sparse) and their apparent sizes. */
  imageBytes: number;
  imageApparentBytes: number;
  /** Bytes of the version manifests. */
  manifestBytes: number;
  /** imageBytes + chunkBytes + manifestBytes. */
  totalBytes: number;
}

/** What the versions of every store cost: per version the bytes it alone holds; the store's total against the images. */
export async function storeUsage(backupsDir: string): Promise<StoreUsage> {
  const chunks = new Map<string, ChunkInfo>((await listChunks(backupsDir)).map((c) => [c.hash, c]));
  const refs = new Map<string, number>();
  const perVersion: { key: string; versionId: string; need: string[] }[] = [];
  let imageBytes = 0;
  let imageApparentBytes = 0;
  let manifestBytes = 0;
  for await (const [key, needed] of neededPerStore(backupsDir)) {
    for (const [versionId, need] of needed) {
      const hashes = [...(need?.keys() ?? [])].filter((h) => chunks.has(h));
      for (const h of hashes) refs.set(h, (refs.get(h) ?? 0) + 1);
      perVersion.push({ key, versionId, need: hashes });
      try {
        manifestBytes += (await stat(versionPath(backupsDir, key, versionId))).size;
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    }
    try {
      const st = await stat(storePaths(backupsDir, key).image);
      imageBytes += st.blocks * 512;
      imageApparentBytes += st.size;
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
  }
  const sizeOf = (h: string) => chunks.get(h)?.sizeBytes ?? 0;
  const versions = perVersion.map(({ key, versionId, need }) => ({
    key,
    versionId,
    uniqueBytes: need.filter((h) => refs.get(h) === 1).reduce((n, h) => n + sizeOf(h), 0),
    chunkRefs: need.length,
    chunkBytes: need.reduce((n, h) => n + sizeOf(h), 0),
  }));
  let chunkBytes = 0;
  let unreferencedChunks = 0;
  let unreferencedBytes = 0;
  for (const c of chunks.values()) {
    chunkBytes += c.sizeBytes;
    if (!refs.has(c.hash)) {
      unreferencedChunks++;
      unreferencedBytes += c.sizeBytes;
    }
  }
  return {
    versions,
    chunkCount: chunks.size,
    chunkBytes,
    unreferencedChunks,
    unreferencedBytes,
    imageBytes,
    imageApparentBytes,
    manifestBytes,
    totalBytes: imageBytes + chunkBytes + manifestBytes,
  };
}
