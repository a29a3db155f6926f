// Freeze hooks (conf.json `hooks`, issue 12) end to end: a user droplet of the simulator whose exec is the recorded
// shell (test/simulator/user-droplet.ts) proves freeze → snapshot → thaw in that order, with the snapshot's creation
// time inside the frozen interval and the thaw before the copy volume; and the failures: a failed snapshot, a
// cancelled run, a wrong host key, a missing key, a failing freeze command, an optional hook whose droplet is gone.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import { rootApplicationFailure } from '../../client/errors';
import { pinnedFingerprint, type HookConfig } from '../../common/hooks-config';
import type { ThawResult } from '../../activities/hooks/types';
import { listVersions } from '../../activities/store/versions';
import { versionsReport } from '../../activities/store-ops/versions-report';
import type { BackupInput, BackupResult, VolumeOutcome } from '../../workflows/types';
import { randomData } from '../support/bytes';
import { generateEd25519 } from '../support/exec-ssh-server';
import { hookKeys } from './freeze-support';
import { startHarness, type Harness } from '../support/harness';
import { maybeRecordHistory } from '../support/history';
import {
  activityAttempts,
  activityResults,
  assertEndsCancelled,
  assertHistoryHasNoSecrets,
} from '../support/run-checks';
import type { UserDropletShell } from '../simulator/user-droplet';

const MiB = 1 << 20;
const MAX_FREEZE_SECONDS = 120;

const keys = hookKeys();
const { clientKey, hostKey, keyDir, keyFile } = keys;
const otherHostKey = generateEd25519();

/** Every line of the private key's body: none may reach a history or an error. */
const keyLines = clientKey.privateKey
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l.length >= 16 && !l.startsWith('-----'));

function hook(volumes: string, mount: string, changes: Partial<HookConfig> = {}): HookConfig {
  return keys.hook(volumes, mount, MAX_FREEZE_SECONDS, changes);
}

const HOOKS: HookConfig[] = [
  hook('db-ok', '/mnt/ok'),
  hook('db-snapfail', '/mnt/snapfail'),
  hook('db-cancel', '/mnt/cancel'),
  hook('db-wrongkey', '/mnt/wrongkey', {
    ssh: { ...hook('', '').ssh, hostKeyFingerprint: pinnedFingerprint(otherHostKey.publicKey) ?? '' },
  }),
  hook('db-nokey', '/mnt/nokey', { ssh: { ...hook('', '').ssh, privateKeyFile: path.join(keyDir, 'missing') } }),
  hook('db-optional', '/mnt/optional', { droplet: 'no-such-droplet', hooksRequired: false }),
  // The droplet is there, but nothing answers SSH on that port.
  hook('db-unreachable', '/mnt/unreachable', { ssh: { ...hook('', '').ssh, port: 1 }, hooksRequired: false }),
  // Prints the key it logs in with: the failure must show the output with the key cut out.
  hook('db-badfreeze', '/mnt/bad', { freeze: `echo cannot flush the tables; cat ${keyFile}; exit 4` }),
  // Its first thaw fails (the file the freeze leaves is the "busy" state): the thaw is retried.
  hook('db-flakythaw', '/mnt/flaky', {
    freeze: 'fsfreeze -f /mnt/flaky && : > "$TMPDIR/busy"',
    thaw: 'if [ -e "$TMPDIR/busy" ]; then rm "$TMPDIR/busy"; echo device busy >&2; exit 1; fi; fsfreeze -u /mnt/flaky',
  }),
  // Its freeze waits for the test's go-ahead: the run is cancelled while the freeze command runs.
  hook('db-slowfreeze', '/mnt/slow', {
    freeze: 'while [ ! -e "$TMPDIR/go" ]; do sleep 0.05; done; fsfreeze -f /mnt/slow',
  }),
];

const SOURCES = [
  'db-ok',
  'db-snapfail',
  'db-cancel',
  'db-wrongkey',
  'db-nokey',
  'db-optional',
  'db-unreachable',
  'db-badfreeze',
  'db-flakythaw',
  'db-slowfreeze',
  'plain',
];

describe('freeze hooks', () => {
  let h: Harness;
  let shell: UserDropletShell;
  const volumeIds = new Map<string, string>();

  before(async () => {
    h = await startHarness({ config: { hooks: HOOKS } });
    for (const name of SOURCES) {
      const v = await h.sim.createVolume({ name, region: 'nyc3', sizeGigabytes: 1 });
      await h.sim.writeVolume(v.id, 0, randomData(2 * MiB));
      volumeIds.set(name, v.id);
    }
    const user = await h.sim.createUserDroplet({
      name: 'db-host',
      region: 'nyc3',
      hostKey,
      authorizedKeys: [clientKey.publicKey],
      volumeIds: [volumeIds.get('db-ok')!],
    });
    shell = user.shell;
  });
  after(async () => {
    await h?.close();
    keys.remove();
  });

  async function run(input: BackupInput): Promise<{ handle: WorkflowHandle; result: BackupResult; failed: boolean }> {
    const handle = await h.start(input);
    try {
      return { handle, result: (await handle.result()) as BackupResult, failed: false };
    } catch (err) {
      const app = rootApplicationFailure(err);
      assert.equal(app?.type, 'BackupFailed', String(err));
      return { handle, result: app?.details?.[0] as BackupResult, failed: true };
    }
  }

  function volume(result: BackupResult, name: string): VolumeOutcome {
    const v = result.volumes.find((x) => x.name === name);
    assert.ok(v, `${name} is in the result`);
    return v;
  }

  function intervals(mount: string) {
    return shell.frozenIntervals().filter((i) => i.mountPoint === mount);
  }

  function snapshotsOf(name: string) {
    return h.sim.snapshotRecords().filter((s) => s.volumeId === volumeIds.get(name));
  }

  /** Nothing of dosvob's left; the user's droplet and volumes untouched. */
  function assertOnlyUsersResources(): void {
    const live = h.sim.liveResources();
    assert.deepEqual(
      live.droplets.map((d) => d.name),
      ['db-host'],
      'only the user droplet is left',
    );
    assert.deepEqual(live.snapshots, [], 'no snapshots left');
    assert.deepEqual(live.sshKeys, [], 'no SSH keys left');
    assert.deepEqual(live.volumes.map((v) => v.name).sort(), [...SOURCES].sort(), 'no volumes but the sources');
  }

  async function assertClean(handle: WorkflowHandle): Promise<string> {
    return assertHistoryHasNoSecrets(handle, {
      token: h.config.doToken,
      keySecret: h.config.keySecret,
      extra: keyLines,
    });
  }

  it('freezes, snapshots and thaws in that order, the snapshot inside the freeze, the thaw before the copy', async () => {
    h.sim.clearCallLog();
    const { handle, result, failed } = await run({ include: ['db-ok'] });
    assert.equal(failed, false, result.message);
    const v = volume(result, 'db-ok');
    assert.equal(v.ok, true, v.error);
    assert.equal(v.frozen, true, v.consistency);
    assert.match(v.consistency ?? '', /frozen on droplet db-host/);

    const [window, ...more] = intervals('/mnt/ok');
    assert.ok(window?.to !== undefined, 'frozen, then thawed');
    assert.equal(more.length, 0, 'frozen once');
    const [snap] = snapshotsOf('db-ok');
    assert.ok(snap, 'one snapshot was taken');
    assert.ok(window.from <= snap.createdAt && snap.createdAt <= window.to, 'the snapshot was created while frozen');
    const copy = h.sim.callLog.find((c) => c.method === 'POST' && c.template === '/v2/volumes');
    assert.ok(copy, 'the copy volume was created');
    assert.ok(window.to <= copy.time, 'thawed before the copy volume was asked for');

    const history = await handle.fetchHistory();
    assert.deepEqual(activityResults<ThawResult>(history, 'thawVolume'), [{ thawedBy: 'dosvob' }], 'dosvob thawed it');
    assert.equal(shell.isFrozen('/mnt/ok'), false);

    // The version says so, and `dosvob versions` shows it.
    const versions = await listVersions(h.backupsDir, 'db-ok');
    assert.equal(versions.at(-1)?.frozen, true, 'the version records its frozen snapshot');
    const report = await versionsReport(h.backupsDir, 'db-ok');
    assert.equal(report.stores[0]?.versions.at(-1)?.frozen, true);
    assertOnlyUsersResources();
    maybeRecordHistory('backup-frozen', handle.workflowId, await assertClean(handle));
  });

  it('retries a thaw that failed, and the snapshot still counts as frozen', async () => {
    const { handle, result, failed } = await run({ include: ['db-flakythaw'] });
    assert.equal(failed, false, result.message);
    const v = volume(result, 'db-flakythaw');
    assert.equal(v.frozen, true, v.consistency);
    const [window] = intervals('/mnt/flaky');
    assert.ok(window?.to !== undefined && !shell.isFrozen('/mnt/flaky'), 'thawed in the end');
    const history = await handle.fetchHistory();
    const thaws = activityAttempts(history).filter((a) => a.type === 'thawVolume');
    assert.equal(thaws.length, 1);
    assert.ok(thaws[0]!.attempt > 1, 'the thaw was retried');
    assert.match(thaws[0]!.lastFailure ?? '', /thaw hook for db-flakythaw .* failed \(exit 1\): device busy/);
    assertOnlyUsersResources();
  });

  it('thaws when the run is cancelled while the freeze command runs', async () => {
    const go = path.join(shell.tmpDir, 'go');
    const handle = await h.start({ include: ['db-slowfreeze'] });
    try {
      const deadline = Date.now() + 60_000; // a bound for failing only
      while (!shell.commands().some((c) => c.command.includes('dosvob-freeze') && c.endedAt === undefined)) {
        assert.ok(Date.now() < deadline, 'the freeze started');
        await new Promise((r) => setTimeout(r, 20));
      }
      await handle.cancel();
    } finally {
      writeFileSync(go, '');
    }
    await assertEndsCancelled(handle);
    const [window, ...more] = intervals('/mnt/slow');
    assert.ok(window?.to !== undefined, 'the freeze finished, then the thaw came');
    assert.equal(more.length, 0);
    assert.equal(shell.isFrozen('/mnt/slow'), false);
    const history = await handle.fetchHistory();
    assert.deepEqual(activityResults<ThawResult>(history, 'thawVolume'), [{ thawedBy: 'dosvob' }]);
    for (const snap of snapshotsOf('db-slowfreeze'))
      assert.ok(snap.deletedAt !== undefined, 'any snapshot was deleted');
    assertOnlyUsersResources();
  });

  it('thaws after the snapshot failed, and the volume fails with the snapshot error', async () => {
    h.sim.setFaults({ only: ['POST /v2/volumes/{volume_id}/snapshots'], failNextRequests: 1000 });
    try {
      const { handle, result, failed } = await run({ include: ['db-snapfail'], timings: { apiMaximumAttempts: 2 } });
      assert.equal(failed, true);
      const v = volume(result, 'db-snapfail');
      assert.equal(v.ok, false);
      assert.match(v.error ?? '', /snapshotting db-snapfail/);
      const [window] = intervals('/mnt/snapfail');
      assert.ok(window && window.to !== undefined, 'frozen, then thawed');
      assert.equal(snapshotsOf('db-snapfail').length, 0, 'no snapshot was made');
      const history = await handle.fetchHistory();
      assert.deepEqual(activityResults<ThawResult>(history, 'thawVolume'), [{ thawedBy: 'dosvob' }]);
    } finally {
      h.sim.setFaults({});
    }
    assertOnlyUsersResources();
  });

  it('thaws when the run is cancelled during the freeze', async () => {
    const current: { handle?: WorkflowHandle } = {};
    let cancelled = false;
    h.sim.onHandled = async (call) => {
      if (call.method !== 'POST' || call.template !== '/v2/volumes/{volume_id}/snapshots') return;
      if (call.params['volume_id'] !== volumeIds.get('db-cancel') || !current.handle) return;
      assert.ok(shell.isFrozen('/mnt/cancel'), 'frozen while the snapshot is being made');
      cancelled = true;
      await current.handle.cancel();
    };
    try {
      current.handle = await h.start({ include: ['db-cancel'] });
      await assertEndsCancelled(current.handle);
    } finally {
      h.sim.onHandled = undefined;
    }
    assert.ok(cancelled, 'the run was cancelled while frozen');
    const [window] = intervals('/mnt/cancel');
    assert.ok(window && window.to !== undefined, 'thawed');
    const [snap] = snapshotsOf('db-cancel');
    assert.ok(snap && window.from <= snap.createdAt && snap.createdAt <= window.to);
    const history = await current.handle.fetchHistory();
    assert.deepEqual(activityResults<ThawResult>(history, 'thawVolume'), [{ thawedBy: 'dosvob' }]);
    assertOnlyUsersResources();
    await assertClean(current.handle);
  });

  it('refuses a wrong host key and a missing key file before anything is frozen; other volumes go on', async () => {
    const before = shell.commands().length;
    const { handle, result, failed } = await run({ include: ['db-wrongkey', 'db-nokey', 'plain'] });
    assert.equal(failed, true);
    const wrong = volume(result, 'db-wrongkey');
    assert.equal(wrong.ok, false);
    assert.match(wrong.error ?? '', /refusing droplet db-host/);
    assert.ok(wrong.error?.includes(pinnedFingerprint(otherHostKey.publicKey)!), 'names the pinned fingerprint');
    assert.ok(wrong.error?.includes(pinnedFingerprint(hostKey.publicKey)!), 'names the presented fingerprint');
    const noKey = volume(result, 'db-nokey');
    assert.equal(noKey.ok, false);
    assert.match(noKey.error ?? '', /cannot read its SSH key: private_key_file .*missing .*ENOENT/);
    assert.equal(shell.commands().length, before, 'no command ran on the droplet');
    assert.deepEqual(intervals('/mnt/wrongkey'), []);
    assert.deepEqual(intervals('/mnt/nokey'), []);
    assert.equal(snapshotsOf('db-wrongkey').length + snapshotsOf('db-nokey').length, 0, 'no snapshot of either');

    const plain = volume(result, 'plain');
    assert.equal(plain.ok, true, plain.error);
    assert.equal(plain.frozen, undefined, 'a volume without a hook is snapshotted as before');
    assert.equal(plain.consistency, undefined);
    const history = await handle.fetchHistory();
    assert.deepEqual(activityResults(history, 'freezeVolume'), [], 'nothing was frozen');
    assert.deepEqual(activityResults(history, 'thawVolume'), [], 'so nothing was thawed');
    assertOnlyUsersResources();
    await assertClean(handle);
  });

  it('fails a volume whose freeze command fails, with its output and the key cut out, and thaws it', async () => {
    const { handle, result, failed } = await run({ include: ['db-badfreeze', 'db-optional', 'db-unreachable'] });
    assert.equal(failed, true);
    const bad = volume(result, 'db-badfreeze');
    assert.equal(bad.ok, false);
    assert.match(bad.error ?? '', /freeze hook for db-badfreeze on droplet db-host .* failed \(exit 4\)/);
    assert.match(bad.error ?? '', /cannot flush the tables/);
    assert.match(bad.error ?? '', /\[redacted\]/);
    for (const line of keyLines) assert.ok(!bad.error?.includes(line), 'no line of the private key in the error');
    assert.equal(snapshotsOf('db-badfreeze').length, 0);

    // hooks_required: false, and the droplet is gone: a crash-consistent snapshot, and the result says so.
    const optional = volume(result, 'db-optional');
    assert.equal(optional.ok, true, optional.error);
    assert.equal(optional.frozen, false);
    assert.match(optional.consistency ?? '', /crash-consistent.*hooks_required is false.*no-such-droplet/);
    assert.equal(snapshotsOf('db-optional').length, 1);
    assert.equal((await listVersions(h.backupsDir, 'db-optional')).at(-1)?.frozen, undefined, 'not marked frozen');
    const unreachable = volume(result, 'db-unreachable');
    assert.equal(unreachable.ok, true, unreachable.error);
    assert.equal(unreachable.frozen, false);
    assert.match(unreachable.consistency ?? '', /crash-consistent.*cannot reach droplet db-host/);
    assert.deepEqual(intervals('/mnt/unreachable'), []);
    assertOnlyUsersResources();
    await assertClean(handle);
  });
});
