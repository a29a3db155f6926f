// Checking kept versions in a real store (activities/verify/version-check.ts): versions made by real syncs of an ext4
// device, one torn as the simulator tears a snapshot. The newest is checked on the image itself, older ones through a
// temporary restore that is removed after; verdicts land in versions/<id>.checks.json, a failed one makes the version
// suspect, and retention then keeps the newest passing version. No image is ever written by a check.
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import {
  StoreLock,
  chunkPath,
  chunksNeeded,
  listVersions,
  storePaths,
  type VersionRecord,
} from '../../activities/store';
import { pruneStore } from '../../activities/retention/prune';
import { MockActivityEnvironment } from '@temporalio/testing';
import { CancelledFailure } from '@temporalio/common';
import { createVerifyActivities } from '../../activities/verify/activities';
import {
  checkVersionFilesystem,
  checkVersionHashes,
  type VersionCheckProgress,
  type VersionFsckResult,
} from '../../activities/verify/version-check';
import { verifyTempDir } from '../../activities/verify/temp';
import { dropletFixture, sync } from '../transfer/helpers';
import { MiB, fileState, makeExt4, makeXfs, missingTools, tearExt4, writeExt4Files } from './support';

const noExt4 = missingTools('mkfs.ext4', 'debugfs', 'e2fsck');

describe('checks of kept versions', { skip: noExt4 }, () => {
  const fx = dropletFixture('dosvob-version-fsck-');
  let backups: string;
  let image: string;
  /** Oldest first: good, torn, torn (the newest). */
  const ids: string[] = [];

  const versions = async (): Promise<Map<string, VersionRecord>> =>
    new Map((await listVersions(backups, 'vol1')).map((v) => [v.versionId, v]));

  before(async () => {
    const dir = fx.dir();
    await mkdir(dir, { recursive: true });
    backups = join(dir, 'backups');
    const clean = join(dir, 'clean.device');
    const dev = join(dir, 'vol1.device');
    await makeExt4(clean, 64 * MiB, { 'a.txt': 'version one\n' });
    const syncOf = async (k: number) =>
      (await sync(fx.d, backups, dev, { snapshotId: `snap-${k}`, runId: `run-${k}`, region: 'nyc3' })).versionId!;
    await copyFile(clean, dev);
    ids.push(await syncOf(1));
    await writeExt4Files(clean, { 'b.txt': 'version two\n' });
    await copyFile(clean, dev);
    assert.ok(await tearExt4(dev, join(dir, 'sim-2')));
    ids.push(await syncOf(2));
    await writeExt4Files(clean, { 'c.txt': 'version three\n' });
    await copyFile(clean, dev);
    assert.ok(await tearExt4(dev, join(dir, 'sim-3')));
    ids.push(await syncOf(3));
    image = storePaths(backups, 'vol1').image;
  });

  /** The check, asserting the image was not written and no temporary file stayed. */
  async function fsck(versionId: string) {
    const before = await fileState(image);
    const r = await checkVersionFilesystem(backups, 'vol1', versionId);
    assert.equal(await fileState(image), before, 'the image was not written');
    assert.deepEqual(await readdir(verifyTempDir(backups)).catch(() => []), [], 'no temporary file left');
    return r;
  }

  it('checks the newest version on the image itself and records the verdict', async () => {
    const r = await fsck(ids[2]!);
    assert.equal(r.source, 'image');
    assert.equal(r.result, 'failed');
    assert.match(r.summary, /e2fsck: exit 4 \(errors left uncorrected\)/);
    const v = (await versions()).get(ids[2]!)!;
    assert.equal(v.suspect, true);
    const fsckChecks = v.checks.filter((c) => c.kind === 'fsck');
    assert.equal(fsckChecks.length, 1);
    assert.equal(fsckChecks[0]!.ok, false);
    assert.equal(fsckChecks[0]!.result, 'failed');
    assert.match(fsckChecks[0]!.detail ?? '', /^failed: ext4: e2fsck: exit 4[^\n]*\n[\s\S]*Free blocks count wrong/);
  });

  it('checks an older version through a temporary restore: the good one passes, the torn one fails', async () => {
    const good = await fsck(ids[0]!);
    assert.equal(good.source, 'restored');
    assert.equal(good.result, 'passed', good.summary);
    const torn = await fsck(ids[1]!);
    assert.equal(torn.source, 'restored');
    assert.equal(torn.result, 'failed', torn.summary);
    const all = await versions();
    assert.equal(all.get(ids[0]!)!.suspect, false);
    assert.equal(all.get(ids[1]!)!.suspect, true);
  });

  it('an on-demand check of the newest holds the store only to clone it, else restores it', async () => {
    const before = await fileState(image);
    const r = await checkVersionFilesystem(backups, 'vol1', ids[2]!, { newest: 'clone' });
    assert.ok(r.source === 'clone' || r.source === 'restored', r.source);
    assert.equal(r.result, 'failed');
    assert.match(r.summary, /e2fsck: exit 4/);
    assert.equal(await fileState(image), before);
    assert.deepEqual(await readdir(verifyTempDir(backups)), []);
  });

  it('checks the newest through a restore while another process works on the store', async () => {
    const lock = await StoreLock.acquire(storePaths(backups, 'vol1').lock, 'vol1');
    try {
      const r = await fsck(ids[2]!);
      assert.equal(r.source, 'restored');
      assert.equal(r.result, 'failed');
    } finally {
      await lock.release();
    }
  });

  it('the activity heartbeats while it restores, and a cancel stops it and removes the temporary file', async () => {
    const env = new MockActivityEnvironment();
    const beats: VersionCheckProgress[] = [];
    env.on('heartbeat', (d: VersionCheckProgress) => {
      beats.push(d);
      env.cancel();
    });
    const checksBefore = (await versions()).get(ids[0]!)!.checks;
    const acts = createVerifyActivities({ backupsDir: backups });
    await assert.rejects(env.run(acts.checkVersionFilesystem, { storeKey: 'vol1', versionId: ids[0]! }), (err) => {
      assert.ok(err instanceof CancelledFailure, String(err));
      return true;
    });
    assert.equal(beats[0]?.phase, 'restore');
    assert.equal(beats[0]?.versionId, ids[0]);
    assert.deepEqual(await readdir(verifyTempDir(backups)), [], 'no temporary file left');
    assert.deepEqual((await versions()).get(ids[0]!)!.checks, checksBefore, 'a cancelled check records nothing');

    const done: VersionFsckResult = await new MockActivityEnvironment().run(acts.checkVersionFilesystem, {
      storeKey: 'vol1',
      versionId: ids[0]!,
    });
    assert.equal(done.result, 'passed');
  });

  it('retention keeps the newest passing version when the newer ones are suspect', async () => {
    // Every version has its verdict (the tests above may run alone: check any that has none).
    for (const id of ids) if ((await versions()).get(id)!.checks.length === 0) await fsck(id);
    const report = await pruneStore(backups, 'vol1', { rules: [{ kind: 'last', count: 1 }] });
    assert.deepEqual(report.removed, [ids[1]]);
    const kept = await versions();
    assert.deepEqual([...kept.keys()], [ids[0], ids[2]]);
    const reasons = report.versions?.find((v) => v.versionId === ids[0])?.reasons ?? [];
    assert.ok(reasons.includes('newest passing'), reasons.join(', '));
    assert.deepEqual(
      (await readdir(storePaths(backups, 'vol1').versions)).filter((n) => n.startsWith(ids[1]!)),
      [],
      "the removed version's checks went with it",
    );
  });

  it('a version whose saved block is gone fails its hash check and becomes suspect', async () => {
    const before = await checkVersionHashes(backups, 'vol1', ids[0]!);
    assert.equal(before.result, 'passed', before.summary);
    const need = (await chunksNeeded(backups, 'vol1', [ids[0]!])).get(ids[0]!)!;
    const hash = [...need.keys()][0]!;
    await unlink(chunkPath(backups, hash));
    const after = await checkVersionHashes(backups, 'vol1', ids[0]!);
    assert.equal(after.result, 'failed');
    assert.match(after.summary, /cannot be restored byte-exact/);
    const v = (await versions()).get(ids[0]!)!;
    assert.equal(v.suspect, true);
    // fsck goes through a restore, which finds the same damage: a failed hash check, no filesystem verdict.
    const r = await checkVersionFilesystem(backups, 'vol1', ids[0]!);
    assert.equal(r.result, 'failed');
    assert.match(r.summary, /cannot be read back byte-exact/);
  });
});

describe('checks of kept versions of other filesystems', () => {
  const fx = dropletFixture('dosvob-version-fsck-other-');

  it('checks an XFS version with xfs_repair', { skip: missingTools('mkfs.xfs', 'xfs_repair') }, async () => {
    const dir = fx.dir();
    await mkdir(dir, { recursive: true });
    const backups = join(dir, 'backups');
    const dev = join(dir, 'xfs.device');
    await makeXfs(dev, 512 * MiB);
    const id = (await sync(fx.d, backups, dev, { volumeName: 'xfs-data', blockSize: MiB })).versionId!;
    const r = await checkVersionFilesystem(backups, 'xfs-data', id);
    assert.equal(r.source, 'image');
    assert.equal(r.result, 'passed', r.summary);
    assert.match(r.summary, /^passed: xfs: xfs_repair: exit 0 \(no corruption found\)$/);
  });

  it('records an unknown filesystem as unchecked: not suspect', async () => {
    const dir = fx.dir();
    await mkdir(dir, { recursive: true });
    const backups = join(dir, 'backups');
    const dev = join(dir, 'raw.device');
    await writeFile(dev, Buffer.alloc(4 * MiB, 0x5a));
    const id = (await sync(fx.d, backups, dev, { volumeName: 'raw-data' })).versionId!;
    const r = await checkVersionFilesystem(backups, 'raw-data', id);
    assert.equal(r.result, 'unchecked');
    const [v] = await listVersions(backups, 'raw-data');
    assert.equal(v!.suspect, false);
    assert.deepEqual(
      v!.checks.map((c) => [c.kind, c.ok, c.result]),
      [['fsck', true, 'unchecked']],
    );
    assert.match(v!.checks[0]!.detail ?? '', /no filesystem dosvob recognises/);
  });
});
