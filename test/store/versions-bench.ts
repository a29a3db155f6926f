// What kept versions cost on the hot path: a 2 GiB image (10% data, 1 MiB blocks), incremental syncs that rewrite 2%
// of the blocks (all of them blocks with data, so every one is kept: the worst case), with versions on and off, taken
// in alternating order against the same device states. Also restoring the oldest version against
// `cp --sparse=always` of the image. Not a test: `node --import tsx test/store/versions-bench.ts [rounds]`.
import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { listChunks, listVersions, restoreVersion } from '../../activities/store/index.js';
import { syncVolume } from '../../activities/transfer/core.js';
import { baseOptions, startDroplet, tempDir } from '../transfer/helpers.js';
import { pick } from '../bench/pick-blocks.js';

const MiB = 1 << 20;
const SIZE = 2048 * MiB;
const BLOCKS = SIZE / MiB;
const ROUNDS = Number(process.argv[2] ?? 6);

function data(seed: string, i: number): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(i, 12);
  return createCipheriv('aes-128-ctr', key, iv).update(Buffer.alloc(MiB));
}

function writeBytes(): number {
  const m = /write_bytes: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'));
  return Number(m?.[1] ?? 0);
}

async function main(): Promise<void> {
  const d = await startDroplet();
  const tmp = await tempDir('dosvob-versions-bench-');
  try {
    const device = join(tmp.dir, 'device.img');
    const dataBlocks = pick('data', Math.round(BLOCKS * 0.1), [...Array(BLOCKS).keys()]);
    const fh = await open(device, 'w');
    await fh.truncate(SIZE);
    for (const i of dataBlocks) await fh.write(data('A', i), 0, MiB, i * MiB);
    await fh.sync();
    await fh.close();
    const dirs = { off: join(tmp.dir, 'off'), on: join(tmp.dir, 'on') };
    let steps: Record<string, number> = {};
    let t0 = 0;
    const opts = (backups: string, snap: string, keepVersions: boolean) =>
      baseOptions(d, backups, device, {
        blockSize: MiB,
        stripes: 1,
        snapshotId: snap,
        keepVersions,
        hooks: {
          onApplyStep: (step) => {
            steps[step] = Math.round(performance.now() - t0);
          },
        },
      });
    for (const [mode, dir] of Object.entries(dirs)) {
      await mkdir(dir, { recursive: true });
      await syncVolume(opts(dir, 'snap-0', mode === 'on'));
    }
    const rows: {
      round: number;
      mode: string;
      wallMs: number;
      commitMs: number;
      written: number;
      cpuMs: number;
      remoteCpuMs: number;
      steps: Record<string, number>;
    }[] = [];
    let changedBytes = 0;
    for (let r = 1; r <= ROUNDS; r++) {
      const changed = pick(`round-${r}`, Math.round(BLOCKS * 0.02), dataBlocks);
      const dev = await open(device, 'r+');
      for (const i of changed) await dev.write(data(`R${r}`, i), 0, MiB, i * MiB);
      await dev.sync();
      await dev.close();
      changedBytes += changed.length * MiB;
      const order = r % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const);
      for (const mode of order) {
        const w0 = writeBytes();
        const c0 = process.cpuUsage();
        steps = {};
        t0 = performance.now();
        const res = await syncVolume(opts(dirs[mode], `snap-${r}`, mode === 'on'));
        const wallMs = performance.now() - t0;
        const cpu = process.cpuUsage(c0);
        rows.push({
          round: r,
          mode,
          wallMs,
          commitMs: res.phasesMs.commit,
          written: writeBytes() - w0,
          cpuMs: Math.round((cpu.user + cpu.system) / 1000),
          remoteCpuMs: Math.round(res.remoteCpuSeconds * 1000),
          steps,
        });
      }
    }
    const stats = (mode: string) => {
      const xs = rows.filter((x) => x.mode === mode);
      const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
      return {
        wallMedianMs: med(xs.map((x) => x.wallMs)),
        wallMeanMs: xs.reduce((s, x) => s + x.wallMs, 0) / xs.length,
        commitMedianMs: med(xs.map((x) => x.commitMs)),
        writtenMeanMiB: xs.reduce((s, x) => s + x.written, 0) / xs.length / MiB,
      };
    };
    const chunks = await listChunks(dirs.on);
    const chunkBytes = chunks.reduce((s, c) => s + c.sizeBytes, 0);
    const versions = await listVersions(dirs.on, 'vol1');
    // Restore of the oldest version vs a sparse copy of the image (cache warm for both: each read once before).
    const image = join(dirs.on, 'vol1.img');
    const t1 = performance.now();
    execFileSync('cp', ['--sparse=always', image, join(tmp.dir, 'cp.img')]);
    const cpMs = performance.now() - t1;
    // The restore makes its file durable before it names it: the copy too, for a like-for-like figure.
    execFileSync('sync', [join(tmp.dir, 'cp.img')]);
    const cpSyncMs = performance.now() - t1;
    const t2 = performance.now();
    const rr = await restoreVersion(dirs.on, 'vol1', versions[0]!.versionId, join(tmp.dir, 'restored.img'));
    const restoreMs = performance.now() - t2;
    const out = {
      rounds: ROUNDS,
      changedPerRoundMiB: changedBytes / ROUNDS / MiB,
      off: stats('off'),
      on: stats('on'),
      ratioWallMedian: stats('on').wallMedianMs / stats('off').wallMedianMs,
      ratioWallMean: stats('on').wallMeanMs / stats('off').wallMeanMs,
      storeGrowth: {
        chunkBytes,
        changedBytes,
        perVersionOverheadPct: ((chunkBytes - changedBytes) / changedBytes) * 100,
      },
      versions: versions.length,
      restoreOldest: {
        restoreMs,
        cpSparseMs: cpMs,
        cpSparseThenSyncMs: cpSyncMs,
        ratioToCp: restoreMs / cpMs,
        ratioToCpSync: restoreMs / cpSyncMs,
        fromChunks: rr.blocksFromChunks,
        fromImage: rr.blocksFromImage,
      },
      imageAllocatedMiB: ((await stat(image)).blocks * 512) / MiB,
      rows,
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } finally {
    await d.close();
    // DOSVOB_BENCH_KEEP=1 keeps the directory (to look at the store afterwards).
    if (process.env.DOSVOB_BENCH_KEEP === '1') process.stderr.write(`kept ${tmp.dir}\n`);
    else await tmp.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
