// The backups directory's filesystem fills up during a run: that volume fails with a clear
// "disk full" reason, the previous image and its manifest stay intact and verified, the failed
// transfer's staging is freed, and the run still removes everything it created.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { storePaths, verifyImage } from '../../activities/store';
import { rootApplicationFailure } from '../../client/errors';
import type { BackupResult } from '../../workflows/types';
import { randomData } from '../support/bytes';
import { startHarness, type Harness } from '../support/harness';
import { activityAttempts, assertHistoryHasNoSecrets, assertNothingLeft } from '../support/run-checks';
import { sameSparseBytes } from '../support/sparse';

const MiB = 1 << 20;
const FS_SIZE = 40 * MiB;

describe('the backup filesystem full', () => {
  let h: Harness;
  let volumeId: string;
  let mounted = false;
  const saved = mkdtempSync(path.join(tmpdir(), 'dosvob-disk-full-'));

  before(async () => {
    h = await startHarness();
    volumeId = (await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 })).id;
    try {
      // Over the (still empty) backups directory the workers were given.
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${FS_SIZE}`, 'tmpfs', h.backupsDir], { stdio: 'ignore' });
      mounted = true;
    } catch {
      // not root, or no mount namespace of our own: skipped below
    }
  });
  after(async () => {
    if (mounted) execFileSync('umount', [h.backupsDir]);
    await h?.close();
    rmSync(saved, { recursive: true, force: true });
  });

  const freeBytes = async () => {
    const s = await statfs(h.backupsDir);
    return s.bavail * s.bsize;
  };

  it('fails the volume with "disk full" and keeps the previous image intact', async (t) => {
    if (!mounted) return t.skip('cannot mount a small tmpfs here (needs root)');
    const image = path.join(h.backupsDir, 'app-data.img');
    const store = storePaths(h.backupsDir, 'app-data');

    // A first backup that fits: 8 MiB of data in a sparse 1 GiB image.
    await h.sim.writeVolume(volumeId, 0, randomData(8 * MiB));
    const first = await h.start();
    const ok = (await first.result()) as BackupResult;
    assert.ok(ok.volumes[0]?.ok, ok.volumes[0]?.error);
    assert.ok(await sameSparseBytes(image, h.sim.volumeFile(volumeId)), 'first image identical');
    execFileSync('cp', ['--sparse=always', image, path.join(saved, 'app-data.img')]);
    execFileSync('cp', [store.manifest, path.join(saved, 'manifest')]);
    const digest = (await verifyImage(h.backupsDir, 'app-data')).manifest.header.digest;
    const free = await freeBytes();
    await assertHistoryHasNoSecrets(first, { token: h.config.doToken, keySecret: h.config.keySecret });

    // The data grows past what is left on the filesystem.
    assert.ok(free < 40 * MiB);
    for (let i = 0; i < 5; i++) await h.sim.writeVolume(volumeId, (100 + i * 100) * MiB, randomData(8 * MiB));
    const second = await h.start();
    await assert.rejects(second.result(), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError, String(err));
      const app = rootApplicationFailure(err);
      assert.equal(app?.type, 'BackupFailed');
      assert.match(
        app?.message ?? '',
        /^1 of 1 volumes failed: app-data: local disk full while writing .*; the previous image is intact$/,
      );
      const result = app?.details?.[0] as BackupResult;
      assert.equal(result.volumes[0]?.ok, false);
      assert.match(result.volumes[0]?.error ?? '', /disk full/);
      return true;
    });
    // Not retried: a full disk does not empty itself.
    const transfers = activityAttempts(await second.fetchHistory()).filter((a) => a.type === 'transferVolume');
    assert.deepEqual(
      transfers.map((a) => a.attempt),
      [1],
      'one attempt',
    );
    await assertHistoryHasNoSecrets(second, { token: h.config.doToken, keySecret: h.config.keySecret });

    // The previous image and manifest: the same bytes, and they verify.
    assert.ok(await sameSparseBytes(image, path.join(saved, 'app-data.img')), 'previous image untouched');
    assert.ok(await sameSparseBytes(store.manifest, path.join(saved, 'manifest')), 'previous manifest untouched');
    const verified = await verifyImage(h.backupsDir, 'app-data');
    assert.equal(verified.ok, true, `bad blocks: ${verified.badBlocks.join(', ')}`);
    assert.equal(verified.manifest.header.digest, digest);
    // The failed transfer's staging is gone and its space is free again.
    assert.equal(existsSync(store.staging), false, 'no staging left');
    assert.ok((await freeBytes()) >= free - MiB, 'the space is free again');
    // And the run cleaned up after itself although the volume failed.
    assertNothingLeft(h.sim, ['app-data']);
  });
});
