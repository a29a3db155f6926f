// `dosvob images --verify [--subset N/T]`: everything in the backups directory checked against its hashes. Every image
// block against its manifest; every saved chunk against its name (a damaged one is moved aside as `.bad` by the store's
// verifyChunks); every kept version for the chunks it needs, so the versions a bad chunk breaks are named.
//
// A subset checks the N-th of T slices: of the chunks by hash (the store's inSubset), of each image's blocks as a
// contiguous range (sequential reads), so T nights cover everything exactly once (restic's --read-data-subset).
//
// A damaged image block is marked so the next sync fetches it whatever its manifest says: the image's stamp is
// removed, so the next sync re-hashes the image (as for an image changed outside dosvob) and sees the block differ
// from the volume.
import { createHash } from 'node:crypto';
import { open, stat, unlink } from 'node:fs/promises';
import {
  StoreFormatError,
  VolumeBusyError,
  VolumeStore,
  blockLength,
  digestOf,
  hashAt,
  inspectImages,
  verifyChunks,
  type ImageReport,
  type VerifyChunksResult,
} from '../store';
import { StoreRequestError } from './select';

export interface Subset {
  /** 1-based slice number. */
  n: number;
  /** Number of slices. */
  of: number;
}

export interface ImageVerifyReport extends ImageReport {
  /** The blocks this run read: [from, to). */
  verifiedBlocks?: { from: number; to: number };
  /** Damaged blocks were found: the next sync re-hashes the image and fetches them. */
  markedForRefetch?: boolean;
}

export interface StoreVerifyReport {
  subset: Subset | null;
  images: ImageVerifyReport[];
  chunks: VerifyChunksResult;
  /** 0: everything checked is sound; 1: something is not. */
  exitCode: number;
}

export type StoreVerifyProgress =
  | { phase: 'images'; volumeName: string; blocksDone: number; blockCount: number }
  | { phase: 'chunks'; chunksDone: number; chunkCount: number };

export function checkSubset(subset: Subset | undefined): void {
  if (!subset) return;
  const { n, of } = subset;
  if (!(Number.isInteger(n) && Number.isInteger(of) && of >= 1 && n >= 1 && n <= of)) {
    throw new StoreRequestError(`invalid subset ${n}/${of}: N and T whole numbers with 1 <= N <= T`);
  }
}

/** The blocks of slice `subset` of `blockCount`: contiguous, and the T slices partition [0, blockCount). */
export function blockSlice(blockCount: number, subset: Subset | undefined): { from: number; to: number } {
  if (!subset) return { from: 0, to: blockCount };
  return {
    from: Math.floor(((subset.n - 1) * blockCount) / subset.of),
    to: Math.floor((subset.n * blockCount) / subset.of),
  };
}

export async function verifyStore(
  backupsDir: string,
  options: { subset?: Subset; signal?: AbortSignal; onProgress?: (p: StoreVerifyProgress) => void } = {},
): Promise<StoreVerifyReport> {
  const { subset, signal } = options;
  checkSubset(subset);
  // Listing first also finishes updates a crash interrupted, so what is verified is what a restore would read.
  const images: ImageVerifyReport[] = await inspectImages(backupsDir, { signal });
  for (const report of images) {
    signal?.throwIfAborted();
    if (report.state === 'ok' || report.state === 'incomplete') await verifyOneImage(backupsDir, report, options);
  }
  const chunks = await verifyChunks(backupsDir, {
    subset,
    signal,
    onProgress: (p) => options.onProgress?.({ phase: 'chunks', ...p }),
  });
  const sound = images.every((r) => r.state === 'ok') && chunks.bad.length === 0 && chunks.brokenVersions.length === 0;
  return { subset: subset ?? null, images, chunks, exitCode: sound ? 0 : 1 };
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function verifyOneImage(
  backupsDir: string,
  report: ImageVerifyReport,
  options: { subset?: Subset; signal?: AbortSignal; onProgress?: (p: StoreVerifyProgress) => void },
): Promise<void> {
  const volumeName = report.volumeName;
  let store: VolumeStore;
  try {
    // Under the store's lock: no transfer changes the image while it is read, or between finding and marking.
    store = await VolumeStore.open({ backupsDir, volumeName });
  } catch (err) {
    if (err instanceof VolumeBusyError || err instanceof StoreFormatError) {
      report.state = err instanceof VolumeBusyError ? 'busy' : 'foreign-format';
      report.detail = err.message;
      return;
    }
    throw err;
  }
  try {
    const m = store.manifest;
    if (!m || store.imageChanged) return; // changed since it was listed: the listing's state stands
    const { sizeBytes, blockSize, blockCount } = m.header;
    const range = blockSlice(blockCount, options.subset);
    const badBlocks: number[] = [];
    const fh = await open(store.paths.image, 'r');
    try {
      const buf = Buffer.alloc(blockSize);
      for (let i = range.from; i < range.to; i++) {
        options.signal?.throwIfAborted();
        const len = blockLength(i, sizeBytes, blockSize);
        buf.fill(0, 0, len); // past the file's end reads as zeros, as the transfer wrote it
        let got = 0;
        while (got < len) {
          const { bytesRead } = await fh.read(buf, got, len - got, i * blockSize + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        const h = createHash('sha256').update(buf.subarray(0, len)).digest();
        if (!h.equals(hashAt(m.hashes, i))) badBlocks.push(i);
        options.onProgress?.({
          phase: 'images',
          volumeName,
          blocksDone: i - range.from + 1,
          blockCount: range.to - range.from,
        });
      }
    } finally {
      await fh.close();
    }
    const manifestIntact = digestOf(m.hashes) === m.header.digest;
    const sizeMatches = (await stat(store.paths.image)).size === sizeBytes;
    report.verifiedBlocks = range;
    report.verify = {
      blocksChecked: range.to - range.from,
      badBlocks: badBlocks.length,
      firstBadBlocks: badBlocks.slice(0, 10),
      manifestIntact,
    };
    if (badBlocks.length > 0 || !manifestIntact || !sizeMatches) {
      report.state = 'corrupt';
      const what = !manifestIntact
        ? 'the manifest does not match its own digest'
        : !sizeMatches
          ? `the image's size differs from its manifest's ${sizeBytes} bytes`
          : `${badBlocks.length} of ${range.to - range.from} blocks checked differ from the manifest ` +
            `(first: ${badBlocks.slice(0, 10).join(', ')})`;
      // Without its stamp the image counts as changed outside dosvob: the next sync re-hashes it and so fetches every
      // block whose content is not the volume's, whatever the manifest says.
      await unlink(store.paths.stamp).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      await fsyncDir(store.paths.dataDir);
      report.markedForRefetch = true;
      report.detail = `${what}: the next sync re-hashes the image and fetches them again`;
    }
  } finally {
    await store.release();
  }
}
