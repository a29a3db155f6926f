// Kept-versions benchmark (issue 10): restoring a version to a file against `cp --sparse=always` of the image, on the
// 2 GiB image (10 % data in 1 MiB blocks) after ten incremental syncs that each rewrite 2 % of the blocks (all with
// data: the worst case for the chunk store). The oldest version is the one that reads the most from saved chunks.
// Before it, unless --restore-only, the store's own bench (test/store/versions-bench.ts: ten syncs with versions on
// against off, bytes written, store growth) runs as a child and its figures are printed beside these.
//
//   npm run bench:versions -- [--rounds 10] [--repeat 3] [--restore-only]
//
// Page cache warm for both sides (each source is read once before timing): this measures dosvob's work, not the disk.
import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { listChunks, listVersions, storePaths } from '../../activities/store/index.js';
import { restoreToFile } from '../../activities/store-ops/restore-file.js';
import { syncVolume } from '../../activities/transfer/core.js';
import { contentDigest } from '../support/sparse.js';
import { baseOptions, startDroplet, tempDir } from '../transfer/helpers.js';
import { pick } from './pick-blocks.js';

const MiB = 1 << 20;
const SIZE = 2048 * MiB;
const BLOCKS = SIZE / MiB;

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}
const ROUNDS = Number(arg('rounds', '10'));
const REPEAT = Number(arg('repeat', '3'));
const RESTORE_ONLY = process.argv.includes('--restore-only');

function data(seed: string, i: number): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(i, 12);
  return createCipheriv('aes-128-ctr', key, iv).update(Buffer.alloc(MiB));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function timed(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

async function timedAsync(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

interface StoreBench {
  ratioWallMedian: number;
  storeGrowth: { chunkBytes: number; changedBytes: number; perVersionOverheadPct: number };
  on: { wallMedianMs: number; writtenMeanMiB: number };
  off: { wallMedianMs: number; writtenMeanMiB: number };
}

function storeBench(): StoreBench | undefined {
  const script = resolve(__dirname, '..', 'store', 'versions-bench.ts');
  process.stderr.write(`running ${script} (${ROUNDS} rounds, versions on vs off)...\n`);
  try {
    const out = execFileSync(process.execPath, ['--import', 'tsx', script, String(ROUNDS)], {
      encoding: 'utf8',
      maxBuffer: 64 * MiB,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    return JSON.parse(out) as StoreBench;
  } catch (err) {
    process.stderr.write(`the store's bench failed: ${String(err)}\n`);
    return undefined;
  }
}

async function main(): Promise<void> {
  const sb = RESTORE_ONLY ? undefined : storeBench();
  const d = await startDroplet();
  const tmp = await tempDir('dosvob-versions-restore-bench-');
  try {
    const device = join(tmp.dir, 'device.img');
    const backups = join(tmp.dir, 'backups');
    await mkdir(backups);
    const dataBlocks = pick('data', Math.round(BLOCKS * 0.1), [...Array(BLOCKS).keys()]);
    const fh = await open(device, 'w');
    await fh.truncate(SIZE);
    for (const i of dataBlocks) await fh.write(data('A', i), 0, MiB, i * MiB);
    await fh.close();
    const opts = (snap: string) =>
      baseOptions(d, backups, device, { blockSize: MiB, stripes: 1, snapshotId: snap, volumeName: 'vol1' });
    process.stderr.write(`building the store: a first sync and ${ROUNDS} syncs of 2 % changes...\n`);
    await syncVolume(opts('snap-0'));
    const digests: string[] = [await contentDigest(device)];
    for (let r = 1; r <= ROUNDS; r++) {
      const dev = await open(device, 'r+');
      for (const i of pick(`round-${r}`, Math.round(BLOCKS * 0.02), dataBlocks)) {
        await dev.write(data(`R${r}`, i), 0, MiB, i * MiB);
      }
      await dev.close();
      await syncVolume(opts(`snap-${r}`));
      digests.push(await contentDigest(device));
    }
    const versions = await listVersions(backups, 'vol1');
    const image = storePaths(backups, 'vol1').image;
    const chunks = await listChunks(backups);
    // Warm the cache for both sides: the image and every chunk read once.
    execFileSync('cat', [image], { stdio: ['ignore', 'ignore', 'inherit'] });
    for (const c of chunks) execFileSync('cat', [c.path], { stdio: ['ignore', 'ignore', 'inherit'] });

    const cpMs: number[] = [];
    const cpSyncMs: number[] = [];
    const rows: { which: string; ms: number[]; fromChunks: number; exact: boolean; allocatedMiB: number }[] = [];
    for (let k = 0; k < REPEAT; k++) {
      const to = join(tmp.dir, 'cp.img');
      cpMs.push(timed(() => execFileSync('cp', ['--sparse=always', image, to])));
      await rm(to);
      // A restore fsyncs its file before it reports success; `sync FILE` is the same for cp.
      cpSyncMs.push(
        timed(() => {
          execFileSync('cp', ['--sparse=always', image, to]);
          execFileSync('sync', [to]);
        }),
      );
      await rm(to);
    }
    const targets: [string, number][] = [
      ['oldest', 0],
      ['middle', Math.floor(versions.length / 2)],
      ['newest', versions.length - 1],
    ];
    for (const [which, index] of targets) {
      const v = versions[index]!;
      const ms: number[] = [];
      let fromChunks = 0;
      let exact = false;
      let allocatedMiB = 0;
      for (let k = 0; k < REPEAT; k++) {
        const to = join(tmp.dir, `${which}.img`);
        let blocks = 0;
        ms.push(
          await timedAsync(async () => {
            blocks = (await restoreToFile(backups, { volume: 'vol1', versionId: v.versionId, toFile: to }))
              .blocksFromChunks;
          }),
        );
        fromChunks = blocks;
        if (k === 0) {
          exact = (await contentDigest(to)) === digests[index];
          allocatedMiB = ((await stat(to)).blocks * 512) / MiB;
        }
        await rm(to);
      }
      rows.push({ which, ms, fromChunks, exact, allocatedMiB });
    }
    const cp = median(cpMs);
    const cpSync = median(cpSyncMs);
    const lines = [
      `# kept versions: restore to a file vs cp --sparse=always (2 GiB image, 10 % data, ${ROUNDS} syncs of 2 %)`,
      '',
      `cp --sparse=always of the image: median ${cp.toFixed(0)} ms (${cpMs.map((x) => x.toFixed(0)).join(', ')})`,
      `cp --sparse=always + sync FILE: median ${cpSync.toFixed(0)} ms (${cpSyncMs.map((x) => x.toFixed(0)).join(', ')})`,
      ...rows.map(
        (r) =>
          `restore ${r.which.padEnd(6)}: median ${median(r.ms).toFixed(0)} ms (${r.ms.map((x) => x.toFixed(0)).join(', ')}), ` +
          `${(median(r.ms) / cp).toFixed(2)}x cp, ${(median(r.ms) / cpSync).toFixed(2)}x cp+sync; ` +
          `${r.fromChunks} blocks from chunks; ` +
          `${r.allocatedMiB.toFixed(0)} MiB allocated; byte-exact ${r.exact ? 'yes' : 'NO'}`,
      ),
      `store: ${versions.length} versions, ${chunks.length} chunks (${(chunks.reduce((s, c) => s + c.sizeBytes, 0) / MiB).toFixed(0)} MiB)`,
    ];
    const oldest = median(rows[0]!.ms) / cp;
    const oldestSync = median(rows[0]!.ms) / cpSync;
    lines.push(
      `target: restore of the oldest ≤ 1.5x cp: ${oldest.toFixed(2)}x ${oldest <= 1.5 ? 'met' : 'MISSED'} ` +
        `(${oldestSync.toFixed(2)}x cp + sync, which is what the restore does: it fsyncs before it reports)`,
    );
    if (sb) {
      lines.push(
        '',
        `# syncs with versions on vs off (test/store/versions-bench.ts, ${ROUNDS} rounds)`,
        '',
        `wall median on ${sb.on.wallMedianMs.toFixed(0)} ms, off ${sb.off.wallMedianMs.toFixed(0)} ms: ` +
          `${sb.ratioWallMedian.toFixed(3)}x (target ≤ 1.10x: ${sb.ratioWallMedian <= 1.1 ? 'met' : 'MISSED'})`,
        `written locally per sync: on ${sb.on.writtenMeanMiB.toFixed(1)} MiB, off ${sb.off.writtenMeanMiB.toFixed(1)} MiB`,
        `store growth: ${(sb.storeGrowth.chunkBytes / MiB).toFixed(1)} MiB of chunks for ` +
          `${(sb.storeGrowth.changedBytes / MiB).toFixed(1)} MiB changed: ` +
          `${sb.storeGrowth.perVersionOverheadPct.toFixed(2)} % over (target ≤ 1 % per version)`,
      );
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await d.close();
    await tmp.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
