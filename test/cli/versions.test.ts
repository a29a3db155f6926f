// `dosvob versions`, `dosvob restore` and `dosvob images --verify` over kept versions, through the real CLI: each
// starts a workflow whose activity runs on the harness's store worker over its backups directory. The versions are
// made by real syncs against a local "droplet".
import assert from 'node:assert/strict';
import { access, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ImagesOutcome } from '../../client/commands/images';
import type { RestoreFileResult } from '../../activities/store-ops/restore-file';
import type { VersionsReport } from '../../activities/store-ops/versions-report';
import { chunkPath, chunksNeeded } from '../../activities/store';
import { startHarness, type Harness } from '../support/harness';
import { contentDigest } from '../support/sparse';
import { MiB, makeDevice, mutateRegion, startDroplet, sync, tempDir, type Droplet } from '../transfer/helpers';
import { cli, cliEnv, cliProcess, parseJson, type CliResult } from './support';

describe('dosvob versions and restore', () => {
  let h: Harness;
  let d: Droplet;
  let env: Record<string, string>;
  let work: Awaited<ReturnType<typeof tempDir>>;
  /** Version ids, oldest first, and the device's content digest at each. */
  const made: { versionId: string; digest: string }[] = [];

  before(async () => {
    h = await startHarness();
    d = await startDroplet();
    work = await tempDir('dosvob-versions-cli-');
    env = cliEnv(h);
    const dev = join(work.dir, 'web-data.device');
    await makeDevice(dev, 8 * MiB, MiB, (i) => (i % 3 === 0 ? 'zero' : 'random'));
    for (let k = 1; k <= 3; k++) {
      if (k > 1) await mutateRegion(dev, MiB, k - 1, 'random'); // blocks 1 and 2, which hold data
      const r = await sync(d, h.backupsDir, dev, {
        volumeName: 'web-data',
        region: 'nyc3',
        runId: `run-${k}`,
        snapshotId: `snap-${k}`,
        blockSize: MiB,
      });
      made.push({ versionId: r.versionId!, digest: await contentDigest(dev) });
    }
  });
  after(async () => {
    await d?.close();
    await h?.close();
    await work?.cleanup();
  });

  /** A bad request: exit 2, one line on stderr, nothing on stdout. */
  const refused = (r: CliResult, re: RegExp) => {
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line: ${r.stderr}`);
  };

  it('lists every version with its snapshot, run and cost, and the store against its images', async () => {
    const r = await cli(['versions', '--json'], env);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const report = parseJson<VersionsReport>(r);
    assert.deepEqual(
      report.stores.map((s) => [s.key, s.name, s.region]),
      [['web-data', 'web-data', 'nyc3']],
    );
    const vs = report.stores[0]!.versions;
    assert.deepEqual(
      vs.map((v) => [v.versionId, v.snapshotId, v.runId, v.newest]),
      made.map((m, i) => [m.versionId, `snap-${i + 1}`, `run-${i + 1}`, i === 2]),
    );
    assert.deepEqual(
      vs.slice(1).map((v) => v.blocksChanged),
      [1, 1],
      'one 1 MiB region rewritten each time',
    );
    // The first version needs the old content of blocks 1 and 2; the second shares block 2's with it.
    assert.deepEqual(
      vs.map((v) => [v.chunkRefs, v.uniqueBytes]),
      [
        [2, MiB],
        [1, 0],
        [0, 0],
      ],
      'what each version needs, and what it alone holds',
    );
    assert.equal(report.usage.chunkBytes, 2 * MiB);

    const text = await cli(['versions', 'web-data'], env);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^web-data \(nyc3\):$/m);
    assert.match(text.stdout, new RegExp(`^  ${made[0]!.versionId} .* snap-1 +run-1 +\\S+ +1\\.0 MiB`, 'm'));
    assert.match(text.stdout, new RegExp(`^  ${made[2]!.versionId} .* snap-3 +run-3 +1/8 +image +newest$`, 'm'));
    assert.match(text.stdout, /^store: .* on disk \(\+.*%\) against .* of images .*saved blocks 2\.0 MiB in 2 chunks/m);

    refused(await cli(['versions', 'no-such-volume'], env), /no backups of "no-such-volume"/);
  });

  it('restores the newest version, one by id and one by time, byte-exact, to files on the store machine', async () => {
    const newest = join(work.dir, 'newest.img');
    const r = await cli(['restore', 'web-data', '--to', newest, '--json'], env);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const res = parseJson<RestoreFileResult>(r);
    assert.equal(res.versionId, made[2]!.versionId);
    assert.equal(await contentDigest(newest), made[2]!.digest);

    const first = join(work.dir, 'first.img');
    const byId = await cli(['restore', 'web-data', '--version', made[0]!.versionId, '--to', first], env);
    assert.equal(byId.code, 0, byId.stderr);
    assert.match(byId.stdout, new RegExp(`^restored web-data version ${made[0]!.versionId} .* to ${first}: 8\\.0 MiB`));
    assert.equal(await contentDigest(first), made[0]!.digest, 'the oldest version, byte-exact');

    const listed = parseJson<VersionsReport>(await cli(['versions', 'web-data@nyc3', '--json'], env));
    const second = listed.stores[0]!.versions[1]!;
    const at = join(work.dir, 'at.img');
    const byTime = await cli(['restore', 'web-data', '--at', second.time, '--to', at, '--json'], env);
    assert.equal(byTime.code, 0, byTime.stderr);
    assert.equal(parseJson<RestoreFileResult>(byTime).versionId, second.versionId);
    assert.equal(await contentDigest(at), made[1]!.digest);
  });

  it('refuses, in one line with exit 2 and writing nothing: unknown volume, version or time, an existing file', async () => {
    const to = join(work.dir, 'never.img');
    refused(await cli(['restore', 'nope', '--to', to], env), /no backups of "nope"/);
    refused(
      await cli(['restore', 'web-data', '--version', '20200101T000000Z-000000', '--to', to], env),
      /web-data has no version 20200101T000000Z-000000/,
    );
    refused(
      await cli(['restore', 'web-data', '--at', '2001-01-01', '--to', to], env),
      /no version at or before 2001-01-0.*its oldest is from/,
    );
    refused(
      await cli(['restore', 'web-data', '--at', 'yesterday', '--to', to], env),
      /--at "yesterday": give an ISO time/,
    );
    refused(
      await cli(['restore', 'web-data', '--at', '2030-01-01', '--version', made[0]!.versionId, '--to', to], env),
      /not both/,
    );
    await assert.rejects(access(to), /ENOENT/, 'nothing written');
    await assert.rejects(access(`${to}.partial`), /ENOENT/);

    const existing = join(work.dir, 'existing.img');
    await writeFile(existing, 'precious');
    // Through the real executable: the exit code a script sees.
    const real = await cliProcess(['restore', 'web-data', '--to', existing], env);
    refused(real, /existing\.img exists: remove it, or pass --force/);
    assert.equal(await readFile(existing, 'utf8'), 'precious');
    const forced = await cli(['restore', 'web-data', '--to', existing, '--force'], env);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(await contentDigest(existing), made[2]!.digest);

    const help = await cliProcess(['restore', '--help'], env);
    assert.match(help.stdout, /store worker's machine/);
  });

  it('images --verify finds a damaged chunk, names the versions it breaks, moves it aside (exit 1)', async () => {
    const ok = await cli(['images', '--verify', '--json'], env);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.equal(parseJson<ImagesOutcome>(ok).chunks?.checked, 2);

    // A chunk only the oldest version needs.
    const needed = await chunksNeeded(h.backupsDir, 'web-data', [made[0]!.versionId, made[1]!.versionId]);
    const [victim] = [...needed.get(made[0]!.versionId)!.keys()].filter((c) => !needed.get(made[1]!.versionId)!.has(c));
    const p = chunkPath(h.backupsDir, victim!);
    const buf = await readFile(p);
    buf[123] = buf[123]! ^ 0xff;
    await writeFile(p, buf);

    const bad = await cli(['images', '--verify'], env);
    assert.equal(bad.code, 1, bad.stdout + bad.stderr);
    assert.match(bad.stdout, /^web-data +8\.0 MiB .* ok: verified 8 blocks$/m);
    assert.match(bad.stdout, /^saved chunks: 2 checked, 1 damaged$/m);
    assert.match(
      bad.stdout,
      new RegExp(`^  BAD ${victim}: content hashes to [0-9a-f]{64}; moved aside to ${p}\\.bad$`, 'm'),
    );
    assert.match(
      bad.stdout,
      new RegExp(`^  BROKEN web-data version ${made[0]!.versionId}: misses 1 chunk\\(s\\) \\(${victim}\\)`, 'm'),
    );
    assert.doesNotMatch(bad.stdout, new RegExp(`BROKEN web-data version ${made[1]!.versionId}`));
    await access(`${p}.bad`);

    // One slice of two: a slice of the chunks and the matching half of the image's blocks.
    const half = await cli(['images', '--verify', '--subset', '2/2', '--json'], env);
    const outcome = parseJson<ImagesOutcome>(half);
    assert.deepEqual(outcome.subset, { n: 2, of: 2 });
    assert.deepEqual(outcome.images[0]!.verifiedBlocks, { from: 4, to: 8 });
    assert.equal(outcome.exitCode, 1, 'the oldest version is still broken');
    assert.equal(half.code, 1);
    const badSubset = await cli(['images', '--verify', '--subset', '3/2'], env);
    assert.equal(badSubset.code, 2);
    assert.match(badSubset.stderr, /--subset.*N\/T/);
  });
});
