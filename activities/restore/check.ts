// Before a restore creates anything: every block of the version that only the chunk store holds is read and checked
// against its hash, so a damaged or missing chunk fails the restore before a volume or droplet exists. The image's
// blocks are checked while they stream, by the agent before it writes each (a second full read of the image here would
// double the restore's disk reads).
import { lockChunkStoreShared } from '../store/chunks.js';
import { VersionDamagedError } from '../store/errors.js';
import { hashAt, blockLength } from '../store/manifest.js';
import { openVersionReader } from '../store/restore.js';

export interface VersionCheckResult {
  storeKey: string;
  versionId: string;
  sizeBytes: number;
  blockSize: number;
  blockCount: number;
  /** Blocks that hold data (the only ones a restore writes), and their bytes. */
  dataBlocks: number;
  dataBytes: number;
  /** Blocks read from the chunk store and checked. */
  chunksChecked: number;
  /** The version's digest (SHA-256 over its block hashes), hex. */
  digest: string;
}

export interface VersionCheckOptions {
  signal?: AbortSignal;
  onProgress?: (p: { chunksDone: number; chunkCount: number }) => void;
}

/** Chunk reads at once: each is a small file read and a SHA-256 in the thread pool. */
const PARALLEL = 4;

export async function checkVersionForRestore(
  backupsDir: string,
  storeKey: string,
  versionId: string,
  options: VersionCheckOptions = {},
): Promise<VersionCheckResult> {
  // Shared with syncs, exclusive for a GC sweep: no sweep removes a chunk while it is being checked.
  const lock = await lockChunkStoreShared(backupsDir, options.signal);
  const reader = await openVersionReader(backupsDir, storeKey, versionId).catch(async (err: unknown) => {
    await lock.release();
    throw err;
  });
  try {
    const { sizeBytes, blockSize, blockCount, digest } = reader.manifest.header;
    const fromChunks: number[] = [];
    let dataBlocks = 0;
    let dataBytes = 0;
    for (let i = 0; i < blockCount; i++) {
      const source = reader.source(i);
      if (source === 'zero') continue;
      dataBlocks++;
      dataBytes += blockLength(i, sizeBytes, blockSize);
      if (source === 'chunk') fromChunks.push(i);
    }
    // One read per distinct chunk: identical blocks share theirs.
    const blocksOf = new Map<string, number[]>();
    for (const i of fromChunks) {
      const h = hashAt(reader.manifest.hashes, i).toString('hex');
      const list = blocksOf.get(h);
      if (list) list.push(i);
      else blocksOf.set(h, [i]);
    }
    const todo = [...blocksOf.values()].map((list) => list[0]!);
    const damaged: { hash: string; blocks: number[] }[] = [];
    let next = 0;
    let done = 0;
    let failed = false;
    const worker = async () => {
      const buf = Buffer.allocUnsafe(blockSize);
      while (next < todo.length && !failed) {
        options.signal?.throwIfAborted();
        const i = todo[next++]!;
        try {
          await reader.read(i, buf);
        } catch (err) {
          if (!(err instanceof VersionDamagedError)) throw err;
          // Go on: the failure names every damaged chunk and every block that needs it, not just the first.
          const hash = hashAt(reader.manifest.hashes, i).toString('hex');
          damaged.push({ hash, blocks: blocksOf.get(hash) ?? [i] });
        }
        done++;
        options.onProgress?.({ chunksDone: done, chunkCount: todo.length });
      }
    };
    const settled = await Promise.allSettled(
      Array.from({ length: PARALLEL }, () =>
        worker().catch((err: unknown) => {
          failed = true;
          throw err;
        }),
      ),
    );
    const failure = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) throw failure.reason;
    if (damaged.length > 0) throw damagedError(storeKey, versionId, damaged);
    return {
      storeKey,
      versionId,
      sizeBytes,
      blockSize,
      blockCount,
      dataBlocks,
      dataBytes,
      chunksChecked: done,
      digest,
    };
  } finally {
    await reader.close();
    await lock.release();
  }
}

function damagedError(key: string, versionId: string, damaged: { hash: string; blocks: number[] }[]) {
  damaged.sort((a, b) => a.blocks[0]! - b.blocks[0]!);
  const blocks = damaged.flatMap((d) => d.blocks).sort((a, b) => a - b);
  const what = damaged
    .slice(0, 10)
    .map((d) => `block${d.blocks.length > 1 ? 's' : ''} ${d.blocks.slice(0, 10).join(', ')} (chunk ${d.hash})`)
    .join('; ');
  return new VersionDamagedError(
    `${key} version ${versionId} cannot be restored byte-exact: ${what}${damaged.length > 10 ? `; … ${damaged.length} chunks in all` : ''} ` +
      'missing or damaged in the chunk store, and the image does not hold that content either',
    key,
    versionId,
    blocks[0]!,
  );
}
