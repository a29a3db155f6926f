// The one failure freeze hooks must never cause: a filesystem left frozen. The worker is SIGKILLed between the freeze
// and the thaw (while DigitalOcean makes the snapshot) and no worker comes back: the droplet's own dead-man timer thaws
// the filesystem after max_freeze_seconds, with no word from dosvob. When a worker does come back, later, the run
// ends and reports that snapshot as crash-consistent (the timer thawed first).
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { HookConfig } from '../../common/hooks-config';
import { randomData } from '../support/bytes';
import { hookKeys } from './freeze-support';
import { startHarness, type Harness } from '../support/harness';
import { activityResults } from '../support/run-checks';
import type { ThawResult } from '../../activities/hooks/types';
import { listVersions } from '../../activities/store/versions';
import type { BackupResult } from '../../workflows/types';
import type { UserDropletShell } from '../simulator/user-droplet';

const MiB = 1 << 20;
const MAX_FREEZE_SECONDS = 2;

describe('a worker killed while a volume is frozen', () => {
  const keys = hookKeys();
  const { clientKey, hostKey } = keys;
  // The fingerprint of the droplet's host key (the hook's pin).
  const hook: HookConfig = keys.hook('db-*', '/mnt/db', MAX_FREEZE_SECONDS);
  let h: Harness;
  let shell: UserDropletShell;
  let volumeId: string;

  before(async () => {
    h = await startHarness({ inProcessWorkers: false, config: { hooks: [hook] } });
    const v = await h.sim.createVolume({ name: 'db-main', region: 'nyc3', sizeGigabytes: 1 });
    volumeId = v.id;
    await h.sim.writeVolume(v.id, 0, randomData(2 * MiB));
    ({ shell } = await h.sim.createUserDroplet({
      name: 'db-host',
      region: 'nyc3',
      hostKey,
      authorizedKeys: [clientKey.publicKey],
      volumeIds: [v.id],
    }));
  });
  after(async () => {
    await h?.close();
    keys.remove();
  });

  it('thaws by the droplet’s own timer after max_freeze_seconds; a late worker reports it', async () => {
    const worker: ChildProcess = await h.spawnWorker();
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    let killedWhileFrozen: boolean | undefined;
    h.sim.onHandled = async (call) => {
      if (call.method !== 'POST' || call.template !== '/v2/volumes/{volume_id}/snapshots') return;
      if (call.params['volume_id'] !== volumeId || killedWhileFrozen !== undefined) return;
      killedWhileFrozen = shell.isFrozen('/mnt/db');
      shell.mark('worker killed');
      worker.kill('SIGKILL');
      await exited;
    };
    // Short timeouts: the killed worker's activities are retried soon once a worker is back (at the end).
    const handle = await h.start({
      include: ['db-main'],
      timings: { apiStepTimeoutMs: 5_000, apiHeartbeatTimeoutMs: 2_000 },
    });
    let done = false;
    try {
      const deadline = Date.now() + 120_000; // a bound for failing only
      while (killedWhileFrozen === undefined || shell.isFrozen('/mnt/db')) {
        assert.ok(Date.now() < deadline, 'the filesystem was thawed in time');
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(killedWhileFrozen, true, 'the worker died while the filesystem was frozen');
      const [window, ...more] = shell.frozenIntervals();
      assert.ok(window?.to !== undefined, 'frozen, then thawed');
      assert.equal(more.length, 0);
      // The timer started before the freeze command and sleeps max_freeze_seconds.
      assert.ok(window.to - window.from <= MAX_FREEZE_SECONDS * 1000 + 60_000, 'thawed after about its timer');

      // The droplet's timer took the token, nobody else: no worker ever ran the thaw.
      const base = readdirSync(shell.tmpDir).find((n) => n.startsWith('dosvob-freeze-'));
      assert.ok(base, 'the freeze left its token directory');
      const generations = readdirSync(path.join(shell.tmpDir, base)).filter((n) => n !== 'current');
      assert.equal(generations.length, 1);
      const gen = path.join(shell.tmpDir, base, generations[0]!);
      assert.ok(existsSync(path.join(gen, 'claimed-timer')), 'the timer claimed the freeze');
      assert.ok(!existsSync(path.join(gen, 'armed')), 'no token is left for a second thaw');
      assert.deepEqual(activityResults(await handle.fetchHistory(), 'thawVolume'), [], 'no thaw activity ran');

      // Should a worker come back after all, the run ends, and says the timer thawed first: not known to be frozen.
      h.sim.onHandled = undefined;
      await h.spawnWorker();
      const result = (await handle.result()) as BackupResult;
      done = true;
      const [v] = result.volumes;
      assert.equal(v?.ok, true, v?.error);
      assert.equal(v.frozen, false);
      assert.match(
        v.consistency ?? '',
        /crash-consistent: the droplet's timer thawed the filesystem before dosvob did/,
      );
      assert.deepEqual(activityResults<ThawResult>(await handle.fetchHistory(), 'thawVolume'), [{ thawedBy: 'timer' }]);
      assert.equal((await listVersions(h.backupsDir, 'db-main')).at(-1)?.frozen, undefined, 'not marked frozen');
      assert.equal(shell.frozenIntervals().length, 1, 'nothing froze it again');
      const live = h.sim.liveResources();
      assert.deepEqual(
        live.droplets.map((d) => d.name),
        ['db-host'],
      );
      assert.deepEqual(live.snapshots, []);
    } finally {
      h.sim.onHandled = undefined;
      if (!done) await handle.terminate('test failed');
    }
  });
});
