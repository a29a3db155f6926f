// Two dosvob installations on one DigitalOcean account: each run names and tags what it creates with its
// installation's id, and a sweep takes only its own installation's leftovers (another's only when far older than any
// run), so runs of two installations at once both complete, with their own resources.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Worker } from '@temporalio/worker';
import { createDoApi } from '../../activities/digitalocean/api';
import { FOREIGN_LEFTOVER_AGE_MS, withRegisteredComment } from '../../activities/digitalocean/leftovers';
import { ed25519FromSeed } from '../../activities/run-keys';
import type { Config } from '../../common/config';
import { installationId } from '../../common/installation';
import { EPHEMERAL_TAG, installationTag, legacyRunKey } from '../../common/names';
import { createWorkers, runWorkers } from '../../worker/worker';
import type { BackupResult } from '../../workflows/types';
import { randomData } from '../support/bytes';
import { FAST_TIMINGS, startHarness, type Harness } from '../support/harness';
import { uniqueId, workflowBundle } from '../support/temporal';
import { waitFor } from '../cli/support';

const MiB = 1 << 20;
const DAY = 24 * 3600_000;
// Two runs at once poll the simulator in parallel: no rate limit may decide the outcome.
const SIM = { rateLimitPerMinute: 1_000_000, rateLimitPerHour: 10_000_000, sshKeyListPerMinute: 1_000_000 };

/** A second installation on the harness's DigitalOcean account and Temporal namespace: its own secret and queues. */
async function secondInstallation(h: Harness) {
  const taskQueue = uniqueId('dosvob-other');
  const config: Config = {
    ...h.config,
    keySecret: randomBytes(32).toString('hex'),
    installationId: undefined,
    backupsDir: mkdtempSync(path.join(tmpdir(), 'dosvob-other-')),
    storeTaskQueue: `${taskQueue}-store`,
  };
  const workers: Worker[] = await createWorkers({
    connection: h.native,
    namespace: 'default',
    config,
    taskQueue,
    workflowBundle: workflowBundle(),
    options: { shutdownGraceTime: '1s' },
  });
  const running = runWorkers(workers);
  return {
    id: installationId(undefined, { keySecret: config.keySecret ?? '', namespace: 'default', taskQueue }),
    start: () =>
      h.client.workflow.start('backupWorkflow', {
        taskQueue,
        workflowId: uniqueId('backup-other'),
        args: [{ singletonId: uniqueId('backup-other'), timings: FAST_TIMINGS }],
      }),
    async close() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await running;
      rmSync(config.backupsDir, { recursive: true, force: true });
    },
  };
}

describe('two installations on one account', () => {
  let h: Harness;
  let other: Awaited<ReturnType<typeof secondInstallation>>;

  before(async () => {
    h = await startHarness({ sim: SIM, config: { installationId: 'insta' } });
    const v = await h.sim.createVolume({ name: 'shared-data', region: 'nyc3', sizeGigabytes: 1 });
    await h.sim.writeVolume(v.id, 0, randomData(2 * MiB));
    other = await secondInstallation(h);
  });
  after(async () => {
    await other?.close();
    await h?.close();
  });

  it("run at once, each with its own resources: neither sweeps nor adopts the other's", async () => {
    const b = await other.start();
    // B is mid-run (its droplet exists) when A starts and sweeps.
    await waitFor('the other installation to create its droplet', async () =>
      h.sim.liveResources().droplets.some((d) => d.name.startsWith(`dosvob-ephemeral-${other.id}-`)),
    );
    const a = await h.start();
    const [ra, rb] = (await Promise.all([a.result(), b.result()])) as [BackupResult, BackupResult];
    for (const [r, id] of [
      [ra, 'insta'],
      [rb, other.id],
    ] as const) {
      assert.ok(
        r.volumes.every((v) => v.ok),
        JSON.stringify(r.volumes),
      );
      assert.deepEqual(r.swept, [], `installation ${id} swept nothing`);
      assert.ok(r.run.startsWith(`${id}-`), r.run);
      assert.ok(r.deleted.length >= 4, r.deleted.join(', '));
      for (const d of r.deleted) assert.ok(d.includes(`dosvob-ephemeral-${id}-`), `${id} deleted only its own: ${d}`);
    }
    // What each made carries its installation's tag, and the two never created under one name.
    const created = h.sim.callLog
      .filter((c) => c.method === 'POST' && c.status < 300 && ['/v2/droplets', '/v2/volumes'].includes(c.path))
      .map((c) => c.requestBody as { name: string; tags?: string[] });
    assert.equal(created.length, 4, 'one droplet and one copy per installation');
    assert.equal(new Set(created.map((c) => c.name)).size, 4);
    for (const c of created) {
      const id = c.name.startsWith('dosvob-ephemeral-insta-') ? 'insta' : other.id;
      assert.deepEqual(c.tags, [EPHEMERAL_TAG, installationTag(id)], c.name);
    }
    assert.deepEqual(h.sim.resourcesByPrefix('dosvob-ephemeral-').droplets, []);
  });
});

describe("a sweep and another installation's leftovers", () => {
  let h: Harness;
  const theirs = 'other7';

  before(async () => {
    h = await startHarness({ sim: SIM, config: { installationId: 'mine7' } });
    const v = await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 });
    await h.sim.writeVolume(v.id, 0, randomData(MiB));
  });
  after(async () => h?.close());

  it("leaves another installation's fresh leftovers alone and removes its (and legacy) ancient ones", async () => {
    const api = createDoApi({ token: h.sim.token, apiUrl: h.sim.apiUrl });
    const source = h.sim.liveResources().volumes.find((v) => v.name === 'app-data');
    const now = Date.now();
    const ancient = FOREIGN_LEFTOVER_AGE_MS + DAY;
    // A run key from before installation ids: a UUIDv7 run id's first 10 digits, its start in 256 ms steps.
    const legacyKey = (ms: number) => legacyRunKey(`${ms.toString(16).padStart(12, '0')}-7000-8000-000000000000`);
    const legacyFresh = legacyKey(now - 60_000);
    const legacyOld = legacyKey(now - ancient);

    /** One run's droplet, copy volume, snapshot and key under `run`, created `ageMs` ago. */
    async function leftoversOf(run: string, tags: string[], ageMs: number, key: boolean) {
      const droplet = (
        await api.droplet.createDroplet({
          name: `dosvob-ephemeral-${run}-nyc3`,
          region: 'nyc3',
          size: 's-1vcpu-1gb',
          image: 'debian-12-x64',
          tags,
        })
      ).data.droplet;
      const volume = await h.sim.createVolume({
        name: `dosvob-ephemeral-${run}-app-data`,
        region: 'nyc3',
        sizeGigabytes: 1,
        tags,
      });
      const snapshot = (
        await api.volume.createVolumeSnapshot({
          volume_id: source?.id ?? '',
          name: `dosvob-ephemeral-${run}-app-data`,
          tags,
        })
      ).data.snapshot;
      h.sim.backdate('droplet', droplet.id, ageMs);
      h.sim.backdate('volume', volume.id, ageMs);
      h.sim.backdate('snapshot', snapshot.id, ageMs);
      if (key) {
        const pub = ed25519FromSeed(randomBytes(32), 'x').publicKey;
        h.sim.addSshKey(`dosvob-ephemeral-${run}-key`, withRegisteredComment(pub, theirs, now - ageMs));
      }
    }
    const theirTags = [EPHEMERAL_TAG, installationTag(theirs)];
    await leftoversOf(`${theirs}-aaaaaaaaaa`, theirTags, 60_000, true); // in flight: must survive
    await leftoversOf(`${theirs}-bbbbbbbbbb`, theirTags, ancient, true); // long dead: swept
    await leftoversOf(legacyFresh, [EPHEMERAL_TAG], 60_000, true); // before installation ids, recent: survives
    await leftoversOf(legacyOld, [EPHEMERAL_TAG], ancient, true); // before installation ids, long dead: swept
    await leftoversOf('mine7-cccccccccc', [EPHEMERAL_TAG, installationTag('mine7')], 60_000, true); // ours: swept

    const result = await h.run();
    assert.ok(
      result.volumes.every((v) => v.ok),
      JSON.stringify(result.volumes),
    );
    const sweptRuns = new Set(result.swept.map((s) => /dosvob-ephemeral-(.+)-(nyc3|app-data|key)$/.exec(s)?.[1]));
    assert.deepEqual([...sweptRuns].sort(), [`${theirs}-bbbbbbbbbb`, legacyOld, 'mine7-cccccccccc'].sort());
    assert.equal(result.swept.length, 12, result.swept.join(', '));
    const live = h.sim.resourcesByPrefix('dosvob-ephemeral-');
    for (const run of [`${theirs}-aaaaaaaaaa`, legacyFresh]) {
      const prefix = `dosvob-ephemeral-${run}-`;
      assert.equal(live.droplets.filter((d) => d.name.startsWith(prefix)).length, 1, `${run}'s droplet survives`);
      assert.equal(live.volumes.filter((d) => d.name.startsWith(prefix)).length, 1, `${run}'s volume survives`);
      assert.equal(live.snapshots.filter((d) => d.name.startsWith(prefix)).length, 1, `${run}'s snapshot survives`);
      assert.equal(live.sshKeys.filter((d) => d.name.startsWith(prefix)).length, 1, `${run}'s key survives`);
    }
    assert.equal(live.droplets.length + live.volumes.length + live.snapshots.length + live.sshKeys.length, 8);
  });
});
