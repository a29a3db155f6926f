// `verify: fsck` end to end: real dev server, real workers, the simulator over real SSH, a real ext4 filesystem on the
// source volume. Three runs with `keep last 1`: a clean one, then two whose snapshots are torn as if taken while writes
// were in flight (the simulator's tornSnapshots). The torn versions are suspect with e2fsck's verdict in the run's
// result, its healthchecks ping is /fail, `versions` and `runs` say so, and retention keeps the clean one, which
// `dosvob verify --fsck --version` then checks through a temporary restore.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { listVersions, storePaths } from '../../activities/store';
import type { VerifyVersionsReport } from '../../activities/verify/activities';
import type { VersionsReport } from '../../activities/store-ops/versions-report';
import { verifyTempDir } from '../../activities/verify/temp';
import type { BackupResult } from '../../workflows/types';
import { cli, cliEnv, parseJson, waitFor } from '../cli/support';
import { startHarness, type Harness } from '../support/harness';
import { startPingServer, type PingServer } from '../support/ping-server';
import { maybeRecordHistory } from '../support/history';
import { activityAttempts, assertHistoryHasNoSecrets, assertNothingLeft } from '../support/run-checks';
import { fileState, formatExt4, missingTools, writeExt4Files } from './support';

const noExt4 = missingTools('mkfs.ext4', 'debugfs', 'e2fsck');

describe('backups with verify: fsck', { skip: noExt4 }, () => {
  let h: Harness;
  let pings: PingServer;
  let env: Record<string, string>;
  let volumeId: string;
  const results: BackupResult[] = [];
  const histories: string[][] = [];
  const details: string[] = [];
  /** The versions the three runs made, oldest first. */
  const made = (): [string, string, string] => {
    const ids = results.map((r) => r.volumes[0]?.version ?? '');
    assert.equal(ids.length, 3);
    return [ids[0]!, ids[1]!, ids[2]!];
  };

  before(async () => {
    pings = await startPingServer();
    h = await startHarness({
      config: { healthchecks: pings.url, verify: 'fsck', retention: { rules: [{ kind: 'last', count: 1 }] } },
    });
    env = cliEnv(h);
    const v = await h.sim.createVolume({ name: 'web-data', region: 'nyc3', sizeGigabytes: 1 });
    volumeId = v.id;
    // The volume's file is its own (not shared with a snapshot): the filesystem is made on it in place.
    assert.equal(await h.sim.volumeSharesSnapshotFile(volumeId), false);
    await formatExt4(h.sim.volumeFile(volumeId));
    await writeExt4Files(h.sim.volumeFile(volumeId), { 'index.html': '<h1>one</h1>\n' });

    const backup = async (torn: boolean) => {
      h.sim.setFaults(torn ? { tornSnapshots: 1 } : {});
      // The installation's run id (cliEnv's), so that `dosvob runs` lists these runs.
      const handle = await h.start({}, env.DOSVOB_WORKFLOW_ID);
      const result = (await handle.result()) as BackupResult;
      results.push(result);
      histories.push(activityAttempts(await handle.fetchHistory()).map((a) => a.type));
      // The run's details in the web UI (the SDK's metadata query), as they were when it finished.
      const meta = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
      details.push(meta.currentDetails ?? '');
      if (torn) {
        const history = await assertHistoryHasNoSecrets(handle, {
          token: h.config.doToken,
          keySecret: h.config.keySecret,
        });
        maybeRecordHistory('backup-fsck-suspect', handle.workflowId, history);
      }
      assert.equal(h.sim.faults.tornSnapshots ?? 0, 0, 'the fault was used');
    };
    await backup(false);
    await writeExt4Files(h.sim.volumeFile(volumeId), { 'two.html': '<h1>two</h1>\n' });
    await backup(true);
    await writeExt4Files(h.sim.volumeFile(volumeId), { 'three.html': '<h1>three</h1>\n' });
    await backup(true);
  });
  after(async () => {
    await h?.close();
    await pings?.close();
  });

  it('checks a clean version: passed, and the run pings success', () => {
    const [first] = results;
    const v = first!.volumes[0]!;
    assert.equal(v.ok, true);
    assert.deepEqual(v.check, { kind: 'fsck', result: 'passed', summary: 'passed: ext4: e2fsck: exit 0 (no errors)' });
    assert.equal(v.suspect, undefined);
    assert.match(first!.message, /1 of 1 volumes backed up.*; fsck: 1 passed$/);
    assert.ok(histories[0]!.includes('checkVersionFilesystem'), 'the history shows the check');
    assert.deepEqual(pings.pings.slice(0, 2), ['/ping/abc-123/start', '/ping/abc-123']);
  });

  it("marks a torn snapshot's version suspect with e2fsck's verdict, and pings /fail", () => {
    for (const r of results.slice(1)) {
      const v = r.volumes[0]!;
      assert.equal(v.ok, true, 'a failed check does not fail the volume');
      assert.equal(v.suspect, true);
      assert.equal(v.check?.result, 'failed');
      assert.match(v.check!.summary, /^failed: ext4: e2fsck: exit 4 \(errors left uncorrected\)$/);
      assert.match(r.message, new RegExp(`SUSPECT web-data \\(nyc3\\) version ${v.version}: failed: ext4: e2fsck`));
    }
    assert.deepEqual(pings.pings.slice(2), [
      '/ping/abc-123/start',
      '/ping/abc-123/fail',
      '/ping/abc-123/start',
      '/ping/abc-123/fail',
    ]);
    assertNothingLeft(h.sim, ['web-data']);
    assert.match(details[0]!, /- web-data \(nyc3\): version \S+, fsck passed: ext4: e2fsck: exit 0/);
    assert.match(details[1]!, /- web-data \(nyc3\): version \S+, fsck failed: ext4: e2fsck: exit 4/);
  });

  it('retention keeps the newest passing version', async () => {
    const [good, torn1, torn2] = made();
    const kept = await listVersions(h.backupsDir, 'web-data');
    assert.deepEqual(
      kept.map((v) => [v.versionId, v.suspect]),
      [
        [good, false],
        [torn2, true],
      ],
    );
    assert.ok(!kept.some((v) => v.versionId === torn1), 'the older suspect version was pruned');
    assert.deepEqual(results[2]!.pruning?.removed, [{ key: 'web-data', versionIds: [torn1] }]);
  });

  it('dosvob versions and dosvob runs name the verdict', async () => {
    const [good, , torn2] = made();
    const listed = await cli(['versions', 'web-data'], env);
    assert.equal(listed.code, 0, listed.stderr);
    const line = (id: string) => listed.stdout.split('\n').find((l) => l.includes(id)) ?? '';
    assert.match(line(torn2), /SUSPECT, fsck failed: ext4: e2fsck: exit 4/);
    assert.match(line(good), /fsck passed: ext4: e2fsck: exit 0/);
    assert.doesNotMatch(line(good), /SUSPECT/);
    const json = parseJson<VersionsReport>(await cli(['versions', 'web-data', '--json'], env));
    assert.equal(json.stores[0]!.versions.find((v) => v.versionId === torn2)?.suspect, true);

    // Visibility lags the runs' ends a little: poll until all three are listed.
    const runs = await waitFor('dosvob runs to list the three runs', async () => {
      const r = await cli(['runs', '--json'], env);
      return r.code === 0 && parseJson<unknown[]>(r).length === 3 && (await cli(['runs'], env));
    });
    assert.equal(runs.code, 0, runs.stderr);
    assert.match(runs.stdout, new RegExp(`web-data \\(nyc3\\) ${torn2} SUSPECT \\(fsck failed: ext4: e2fsck: exit 4`));
    assert.match(runs.stdout, new RegExp(`web-data \\(nyc3\\) ${good} \\(fsck passed\\)`));
  });

  it('dosvob verify --fsck checks an old version through a temporary restore, and the newest', async () => {
    const [good, , torn2] = made();
    const image = storePaths(h.backupsDir, 'web-data').image;
    const before = await fileState(image);

    const old = await cli(['verify', 'web-data', '--fsck', '--version', good, '--json'], env);
    assert.equal(old.code, 0, old.stdout + old.stderr);
    const report = parseJson<VerifyVersionsReport>(old);
    assert.equal(report.results.length, 1);
    assert.equal(report.results[0]!.versionId, good);
    assert.equal(report.results[0]!.source, 'restored');
    assert.equal(report.results[0]!.result, 'passed');

    const newest = await cli(['verify', 'web-data', '--fsck'], env);
    assert.equal(newest.code, 1, 'a failed check exits 1');
    // On demand, the newest is read from a clone of the image, or where the filesystem cannot clone, a restore.
    assert.match(
      newest.stdout,
      new RegExp(`web-data +${torn2} .* fsck \\((clone|restored)\\) +SUSPECT failed: ext4: e2fsck: exit 4`),
    );
    assert.match(newest.stdout, /Free blocks count wrong for group #0/);

    const hashes = await cli(['verify', 'web-data', '--version', good], env);
    assert.equal(hashes.code, 0, hashes.stdout + hashes.stderr);
    assert.match(hashes.stdout, /hashes +passed: all \d+ blocks match the version's hashes/);

    assert.equal(await fileState(image), before, 'the image was not written');
    assert.deepEqual(await readdir(verifyTempDir(h.backupsDir)), [], 'the temporary restore was removed');
  });

  it('dosvob verify refuses what it cannot do, with exit code 2', async () => {
    const bad = await cli(['verify', '--version', '20261202T000000Z-abcdef'], env);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--version needs a VOLUME/);
    const unknown = await cli(['verify', 'web-data', '--version', '20200101T000000Z-abcdef'], env);
    assert.equal(unknown.code, 2, unknown.stdout + unknown.stderr);
    assert.match(unknown.stderr, /has no version 20200101T000000Z-abcdef/);
  });
});
