// Restore to DigitalOcean (issue 11): a kept version written onto a new volume, verified, detached or attached to the
// user's droplet; refusals before anything is created; nothing ephemeral left; a sweep never touches the result.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { createApiClient } from 'dots-wrapper';
import { rootApplicationFailure } from '../../client/errors';
import type { RestoreResult } from '../../workflows/restore';
import type { CallLogEntry } from '../simulator/types';
import { startHarness, type Harness } from '../support/harness';
import { assertHistoryHasNoSecrets, assertNothingLeft } from '../support/run-checks';
import { sameSparseBytes } from '../support/sparse';
import { maybeRecordHistory } from '../support/history';
import { openapiSpecMissing } from '../simulator/openapi-check';
import { checkTraffic } from '../support/openapi-traffic';
import { skipUnlessPresent } from '../support/shared-material';
import { addFile, assertCleanExt4, copyOfVolume, ext4Volume, startRestore, volumeNames } from './restore-support';

const MiB = 1 << 20;

function failureOf(err: unknown) {
  assert.ok(err instanceof WorkflowFailedError, String(err));
  const app = rootApplicationFailure(err);
  assert.ok(app, 'an application failure');
  return app;
}

describe('restore to a new DigitalOcean volume', () => {
  let h: Harness;
  let sourceId: string;
  let firstVersion: string;
  let firstBytes: string;
  let newestBytes: string;
  let restoreCalls: CallLogEntry[] = [];

  before(async () => {
    h = await startHarness();
    sourceId = await ext4Volume(h, 'data');
    firstBytes = await copyOfVolume(h, sourceId);
    const first = await h.run({ include: ['data'] });
    firstVersion = first.volumes[0]?.version ?? '';
    assert.ok(firstVersion, 'the first backup made a version');
    // Change the source: a new file and an overwritten region.
    await addFile(h, sourceId, 'later', 5 * MiB);
    await h.run({ include: ['data'] });
    newestBytes = await copyOfVolume(h, sourceId);
    assert.equal(await sameSparseBytes(firstBytes, newestBytes), false, 'the source changed');
  });
  after(async () => h?.close());

  it('restores the older version byte-exact onto a new, detached volume whose ext4 is clean', async () => {
    h.sim.clearCallLog();
    const handle = await startRestore(h, { volume: 'data', versionId: firstVersion, toVolume: 'data-restored' });
    const result = (await handle.result()) as RestoreResult;
    assert.equal(result.versionId, firstVersion);
    assert.equal(result.target.name, 'data-restored');
    assert.equal(result.target.region, 'nyc3');
    assert.equal(result.target.attachedTo, undefined);
    const target = h.sim.liveResources().volumes.find((v) => v.name === 'data-restored');
    assert.ok(target, 'the target volume exists');
    assert.equal(target.id, result.target.volumeId);
    assert.deepEqual(target.dropletIds, [], 'left detached');
    assert.ok(!target.tags.includes('dosvob-ephemeral'), 'no ephemeral tag on the restored volume');
    assert.ok(!target.name.startsWith('dosvob-ephemeral'), 'no ephemeral prefix');
    assert.ok(await sameSparseBytes(target.file, firstBytes), "the new volume's bytes equal the version's");
    await assertCleanExt4(target.file);
    assert.ok(result.verifiedBlocks > 0, 'blocks were read back and checked');
    assertNothingLeft(h.sim, ['data', 'data-restored']);
    const history = await assertHistoryHasNoSecrets(handle, { token: h.config.doToken, keySecret: h.config.keySecret });
    maybeRecordHistory('restore-older-version', handle.workflowId, history);
    restoreCalls = [...h.sim.callLog];

    // A backup run afterwards: its sweep leaves the restored volume alone, and the restored volume (written through
    // the simulator's device) backs up like any other, to the version's bytes.
    const again = await h.run({ include: ['data', 'data-restored'] });
    assert.ok(
      h.sim.liveResources().volumes.some((v) => v.id === result.target.volumeId),
      'the sweep left the restored volume',
    );
    const restoredImage = again.volumes.find((v) => v.name === 'data-restored')?.image;
    assert.ok(restoredImage, 'the restored volume was backed up');
    assert.ok(await sameSparseBytes(restoredImage, firstBytes), 'its backup holds the restored bytes');
  });

  // ../shared/ material: skipped with the reason where it is absent, failed in CI.
  const noSpec = skipUnlessPresent(openapiSpecMissing());

  it("a restore's traffic matches DigitalOcean's OpenAPI description, both ways", { skip: noSpec }, () => {
    assert.ok(restoreCalls.length > 0, 'the restore above ran');
    const { problems, endpoints } = checkTraffic(restoreCalls);
    assert.deepEqual(problems, []);
    assert.ok(endpoints.has('POST /v2/volumes'), 'the target volume was created through the API');
  });

  it('restores the newest version and attaches it to the named droplet', async () => {
    const api = createApiClient({ token: h.sim.token, endpoint: `${h.sim.apiUrl}/v2` });
    const { data } = await api.droplet.createDroplet({
      name: 'web-1',
      region: 'nyc3',
      size: 's-1vcpu-1gb',
      image: 'debian-12-x64',
    });
    const handle = await startRestore(h, { volume: 'data', toVolume: 'data-web', attachTo: 'web-1' });
    const result = (await handle.result()) as RestoreResult;
    assert.equal(result.target.attachedTo?.name, 'web-1');
    const target = h.sim.liveResources().volumes.find((v) => v.name === 'data-web');
    assert.ok(target);
    assert.deepEqual(target.dropletIds, [data.droplet.id], 'attached to web-1');
    assert.ok(await sameSparseBytes(target.file, newestBytes), 'the newest version');
    const droplets = h.sim.liveResources().droplets.map((d) => d.name);
    assert.deepEqual(droplets, ['web-1'], "only the user's droplet is left");
  });

  it('refuses a name already in use before creating anything', async () => {
    const before = h.sim.creationCounts();
    const handle = await startRestore(h, { volume: 'data', toVolume: 'data' });
    await assert.rejects(handle.result(), (err: unknown) => {
      const app = failureOf(err);
      assert.equal(app.type, 'VolumeNameInUse');
      assert.match(app.message, /a volume named "data" already exists in nyc3/);
      return true;
    });
    assert.deepEqual(h.sim.creationCounts(), before, 'nothing was created');
  });

  it('refuses an unknown version and an unknown volume before creating anything', async () => {
    const before = h.sim.creationCounts();
    for (const [input, pattern] of [
      [
        { volume: 'data', versionId: '20000101T000000Z-000000', toVolume: 'x1' },
        /has no version 20000101T000000Z-000000/,
      ],
      [{ volume: 'nope', toVolume: 'x2' }, /no backups of "nope"/],
    ] as const) {
      const handle = await startRestore(h, input);
      await assert.rejects(handle.result(), (err: unknown) => {
        const app = failureOf(err);
        assert.equal(app.type, 'StoreRequestInvalid');
        assert.match(app.message, pattern);
        return true;
      });
    }
    assert.deepEqual(h.sim.creationCounts(), before, 'nothing was created');
  });

  it('a corrupt saved block fails the restore before any volume is created, naming the block', async () => {
    const chunksDir = path.join(h.backupsDir, '.dosvob', '.chunks');
    const chunk = readdirSync(chunksDir)
      .filter((d) => /^[0-9a-f]{2}$/.test(d))
      .flatMap((d) => readdirSync(path.join(chunksDir, d)).map((f) => path.join(chunksDir, d, f)))
      .find((f) => /[0-9a-f]{64}$/.test(f));
    assert.ok(chunk, 'the older version saved chunks');
    const original = readFileSync(chunk);
    const bad = Buffer.from(original);
    bad[100] = (bad[100] ?? 0) ^ 0xff;
    writeFileSync(chunk, bad);
    const before = h.sim.creationCounts();
    try {
      const handle = await startRestore(h, { volume: 'data', versionId: firstVersion, toVolume: 'data-bad' });
      await assert.rejects(handle.result(), (err: unknown) => {
        const app = failureOf(err);
        assert.equal(app.type, 'VersionDamaged');
        assert.match(app.message, /block \d+/);
        return true;
      });
    } finally {
      writeFileSync(chunk, original);
    }
    assert.deepEqual(h.sim.creationCounts(), before, 'no volume, droplet or key was created');
    assert.ok(!volumeNames(h).includes('data-bad'));
  });
});
