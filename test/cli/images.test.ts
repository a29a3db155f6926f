// `dosvob images`: the CLI starts the images workflow, whose activity runs on the store worker over its backups
// directory. The stores are made by the real transfer against a local "droplet" (faster than a whole backup run,
// which other tests cover); what is checked is what a person about to restore needs to know.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ImagesOutcome } from '../../client/commands/images';
import { readManifest, storePaths } from '../../activities/store';
import { startHarness, type Harness } from '../support/harness';
import {
  MiB,
  baseOptions,
  filesEqual,
  makeDevice,
  mutateRegion,
  startDroplet,
  sync,
  tempDir,
  type Droplet,
} from '../transfer/helpers';
import { cli, cliEnv, parseJson } from './support';

const CRASH_CHILD = join(__dirname, '..', 'transfer', 'fixtures', 'apply-crash-child.ts');

describe('dosvob images', () => {
  let h: Harness;
  let d: Droplet;
  let env: Record<string, string>;
  let devices: Awaited<ReturnType<typeof tempDir>>;

  before(async () => {
    h = await startHarness();
    d = await startDroplet();
    devices = await tempDir('dosvob-images-');
    env = cliEnv(h);
  });
  after(async () => {
    await d?.close();
    await h?.close();
    await devices?.cleanup();
  });

  const device = (name: string) => join(devices.dir, `${name}.device`);

  it('lists a backup as ok; --verify reads it in full and finds a byte that rotted in place (exit 1)', async () => {
    const dev = device('web-data');
    await makeDevice(dev, 8 * MiB, MiB, (i) => (i % 3 === 0 ? 'random' : 'zero'));
    const synced = await sync(d, h.backupsDir, dev, { volumeName: 'web-data', blockSize: MiB });

    const listed = await cli(['images', '--json'], env);
    assert.equal(listed.code, 0, listed.stdout + listed.stderr);
    const [image, ...others] = parseJson<ImagesOutcome>(listed).images;
    assert.equal(others.length, 0);
    assert.equal(image?.volumeName, 'web-data');
    assert.equal(image.state, 'ok');
    assert.equal(image.sizeBytes, 8 * MiB);
    assert.equal(image.digest, synced.digest);
    assert.equal(image.snapshotId, 'snap-1');
    assert.ok(image.allocatedBytes! <= 3 * MiB + 64 * 1024, `sparse: ${image.allocatedBytes} bytes allocated`);

    const verified = await cli(['images', '--verify'], env);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    assert.match(verified.stdout, /^web-data +8\.0 MiB +3\.0 MiB .* ok: verified 8 blocks$/m);

    // Bit rot: one byte of block 3 changes, the file's size and times do not.
    const path = storePaths(h.backupsDir, 'web-data').image;
    const { mtimeNs } = await stat(path, { bigint: true });
    const fh = await open(path, 'r+');
    const byte = Buffer.alloc(1);
    await fh.read(byte, 0, 1, 3 * MiB + 777);
    await fh.write(Buffer.from([byte[0]! ^ 0x40]), 0, 1, 3 * MiB + 777);
    await fh.close();
    // To the nanosecond (utimes() takes a double of seconds, and the stamp compares exactly).
    const ns = (mtimeNs % 1_000_000_000n).toString().padStart(9, '0');
    execFileSync('touch', ['-m', '-d', `@${mtimeNs / 1_000_000_000n}.${ns}`, path]);

    const quick = parseJson<ImagesOutcome>(await cli(['images', '--json'], env));
    assert.equal(quick.images[0]?.state, 'ok', 'without --verify nothing reads the image');
    const bad = await cli(['images', '--verify', '--json'], env);
    assert.equal(bad.code, 1);
    const report = parseJson<ImagesOutcome>(bad).images[0]!;
    assert.equal(report.state, 'corrupt');
    assert.deepEqual(report.verify, { blocksChecked: 8, badBlocks: 1, firstBadBlocks: [3], manifestIntact: true });
  });

  it('finishes an update that a crash cut off while it was written into the image', async () => {
    const dev = device('db-data');
    await makeDevice(dev, 16 * MiB, MiB, (i) => (i % 2 === 0 ? 'random' : 'zero'));
    const options = { volumeName: 'db-data', blockSize: MiB, stripes: 1 };
    await sync(d, h.backupsDir, dev, options);
    for (let i = 0; i < 16; i += 3) await mutateRegion(dev, MiB, i, 'random');
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        CRASH_CHILD,
        JSON.stringify({ ...baseOptions(d, h.backupsDir, dev, options), snapshotId: 'snap-2', killAtRecord: 2 }),
      ],
      { stdio: 'ignore' },
    );
    const signal = await new Promise((resolve) => child.on('close', (_code, sig) => resolve(sig)));
    assert.equal(signal, 'SIGKILL', 'killed in the middle of the apply');
    const paths = storePaths(h.backupsDir, 'db-data');
    assert.equal(await filesEqual(dev, paths.image), false, 'the image is half updated');

    const r = await cli(['images'], env);
    assert.match(r.stdout, /^db-data +16 MiB .* ok: finished an interrupted update$/m);
    assert.ok(await filesEqual(dev, paths.image), 'the image now equals the volume');
    assert.equal((await readManifest(paths.manifest)).header.snapshotId, 'snap-2');
    const again = parseJson<ImagesOutcome>(await cli(['images', '--verify', '--json'], env));
    const db = again.images.find((i) => i.volumeName === 'db-data');
    assert.equal(db?.state, 'ok');
    assert.equal(db.finishedInterruptedUpdate, false, 'finished once');
    assert.equal(db.verify?.badBlocks, 0);
  });

  it('lists a damaged manifest and an odd-named image each with its state, and the others as before', async () => {
    const dev = device('logs-data');
    await makeDevice(dev, 4 * MiB, MiB, () => 'random');
    await sync(d, h.backupsDir, dev, { volumeName: 'logs-data', blockSize: MiB });
    const manifest = storePaths(h.backupsDir, 'logs-data').manifest;
    const fh = await open(manifest, 'r+');
    await fh.write(Buffer.from('rot'), 0, 3, (await fh.stat()).size - 50);
    await fh.close();
    const odd = await open(join(h.backupsDir, 'old disk copy.img'), 'w');
    await odd.close();

    const r = await cli(['images', '--json'], env);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const states = Object.fromEntries(parseJson<ImagesOutcome>(r).images.map((i) => [i.volumeName, i.state]));
    assert.equal(states['logs-data'], 'corrupt-manifest');
    assert.equal(states['old disk copy'], 'unsupported-name');
    assert.equal(states['db-data'], 'ok');
    const table = await cli(['images'], env);
    assert.match(
      table.stdout,
      /^logs-data +4\.0 MiB .* corrupt-manifest: .*damaged.*the next sync re-hashes the image/m,
    );
  });
});
