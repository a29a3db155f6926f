// A source volume deleted by someone else mid-run, before dosvob snapshots it: that volume is
// reported failed with a clear reason (not retried), the others are backed up, nothing is left.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { rootApplicationFailure } from '../../client/errors';
import type { BackupResult } from '../../workflows/types';
import { randomData } from '../support/bytes';
import { startHarness, type Harness } from '../support/harness';
import { assertHistoryHasNoSecrets, assertNothingLeft } from '../support/run-checks';
import { sameSparseBytes } from '../support/sparse';

const MiB = 1 << 20;

describe('a source volume deleted mid-run', () => {
  let h: Harness;
  const ids: Record<string, string> = {};

  before(async () => {
    h = await startHarness();
    for (const [i, name] of ['alpha', 'gone', 'zeta'].entries()) {
      ids[name] = (await h.sim.createVolume({ name, region: 'nyc3', sizeGigabytes: 1 })).id;
      await h.sim.writeVolume(ids[name], i * 100 * MiB, randomData(2 * MiB));
    }
  });
  after(async () => h?.close());

  it('fails that volume with a clear reason; the others are backed up; nothing is left', async () => {
    // Listed as a source, then deleted while the run registers its key: before any snapshot.
    let deleted = false;
    h.sim.onHandled = async (call) => {
      if (deleted || call.method !== 'POST' || call.template !== '/v2/account/keys') return;
      deleted = true;
      await h.sim.deleteVolumeBehindTheScenes(ids.gone!);
    };
    const handle = await h.start();
    let result: BackupResult | undefined;
    try {
      await assert.rejects(handle.result(), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError, String(err));
        const app = rootApplicationFailure(err);
        assert.equal(app?.type, 'BackupFailed');
        assert.equal(app?.nonRetryable, true);
        assert.match(app?.message ?? '', /^1 of 3 volumes failed: gone: gone no longer exists$/);
        result = app?.details?.[0] as BackupResult;
        return true;
      });
    } finally {
      h.sim.onHandled = undefined;
    }
    assert.ok(deleted, 'the volume was deleted mid-run');
    assert.deepEqual(
      result?.volumes.map((v) => [v.name, v.ok, v.error]),
      [
        ['alpha', true, undefined],
        ['gone', false, 'gone no longer exists'],
        ['zeta', true, undefined],
      ],
    );
    for (const name of ['alpha', 'zeta']) {
      assert.ok(await sameSparseBytes(path.join(h.backupsDir, `${name}.img`), h.sim.volumeFile(ids[name]!)), name);
    }
    assert.equal(existsSync(path.join(h.backupsDir, 'gone.img')), false, 'no image for the deleted volume');
    assertNothingLeft(h.sim, ['alpha', 'zeta']);
    assert.equal(h.sim.creationCounts().snapshots, 2, 'no snapshot of the deleted volume');
    // Not retried: a volume that is gone stays gone.
    const lookups = h.sim.callLog.filter((c) => c.path === `/v2/volumes/${ids.gone}/snapshots`);
    assert.deepEqual(
      lookups.map((c) => c.status),
      [404],
      'one look-up of its snapshots, answered 404',
    );
    await assertHistoryHasNoSecrets(handle, { token: h.config.doToken, keySecret: h.config.keySecret });
  });

  it('deleted after its snapshot: backed up from the snapshot', async () => {
    const id = (await h.sim.createVolume({ name: 'late', region: 'nyc3', sizeGigabytes: 1 })).id;
    await h.sim.writeVolume(id, 300 * MiB, randomData(2 * MiB));
    const copy = path.join(mkdtempSync(path.join(tmpdir(), 'dosvob-late-')), 'late.bytes');
    execFileSync('cp', ['--sparse=always', h.sim.volumeFile(id), copy]);
    h.sim.onHandled = async (call) => {
      if (
        call.method === 'POST' &&
        call.template === '/v2/volumes/{volume_id}/snapshots' &&
        call.params.volume_id === id
      ) {
        await h.sim.deleteVolumeBehindTheScenes(id);
      }
    };
    let result: BackupResult;
    try {
      const handle = await h.start({ include: ['late'] });
      result = (await handle.result()) as BackupResult;
      await assertHistoryHasNoSecrets(handle, { token: h.config.doToken, keySecret: h.config.keySecret });
    } finally {
      h.sim.onHandled = undefined;
    }
    assert.deepEqual(
      result.volumes.map((v) => [v.name, v.ok, v.error]),
      [['late', true, undefined]],
    );
    assert.equal(
      h.sim.liveResources().volumes.some((v) => v.id === id),
      false,
      'the source is gone',
    );
    assert.ok(await sameSparseBytes(path.join(h.backupsDir, 'late.img'), copy), 'the image holds the snapshot');
    assertNothingLeft(h.sim, ['alpha', 'zeta']);
    rmSync(path.dirname(copy), { recursive: true, force: true });
  });
});
