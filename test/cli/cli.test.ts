// dosvob's commands end to end: real Temporal server, real workers, the DigitalOcean simulator; the transfer is a
// stand-in (support.ts) so a run can be held in its transfer step with live progress, or made to fail.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { msToTs } from '@temporalio/common/lib/time';
import { after, before, describe, it } from 'node:test';
import { installationId } from '../../common/installation';
import { EPHEMERAL_TAG, installationTag } from '../../common/names';
import type { CancelOutcome } from '../../client/commands/cancel';
import type { CleanupOutcome } from '../../client/commands/cleanup';
import type { Status } from '../../client/commands/status';
import type { SyncOutcome } from '../../client/commands/sync';
import type { RunSummary } from '../../client/runs';
import { startHarness, type Harness } from '../support/harness';
import { cli, cliEnv, cliProcess, parseJson, startFakeStore, waitFor } from './support';

describe('dosvob CLI', () => {
  let h: Harness;
  let env: Record<string, string>;
  let store: Awaited<ReturnType<typeof startFakeStore>>;

  before(async () => {
    h = await startHarness({ sim: { sshKeyListPerMinute: 1000 } });
    await h.sim.createVolume({ name: 'db-data', region: 'nyc3', sizeGigabytes: 1 });
    env = cliEnv(h);
    store = await startFakeStore(h);
  });
  after(async () => {
    await store?.close();
    await h?.close();
  });

  it('every command answers --help with exit code 0', async () => {
    const commands = [
      ['sync'],
      ['status'],
      ['runs'],
      ['cancel'],
      ['cleanup'],
      ['images'],
      ['worker'],
      ['setup'],
      ['schedule'],
      ...['create', 'show', 'pause', 'resume', 'trigger', 'delete'].map((c) => ['schedule', c]),
    ];
    for (const command of commands) {
      const r = await cli([...command, '--help'], env);
      assert.equal(r.code, 0, `${command.join(' ')} --help: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`Usage: dosvob ${command.join(' ')}`));
    }
    const read = ['status', 'runs', 'cleanup', 'cancel', 'sync', 'images', 'setup', 'schedule show', 'schedule create'];
    for (const command of read) {
      const r = await cli([...command.split(' '), '--help'], env);
      assert.match(r.stdout, /--json/, `${command} has --json`);
    }
  });

  it('sync follows a run with per-volume step, bytes, rate and ETA, and exits 0', async () => {
    store.mode = 'run';
    const r = await cli(['sync'], env);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^started backup run \S+$/m);
    assert.match(r.stdout, /\[backing up\] 0 of 1 volumes backed up/);
    // A transfer line from the heartbeats: bytes done of the total, a rate once two heartbeats are in, and an ETA.
    assert.match(
      r.stdout,
      /db-data \(nyc3\): transfer \d+(\.\d)? [KMG]iB \/ 1\.0 GiB \(\d+%\), [\d.]+ [KMG]iB\/s, ETA \d+ s/,
    );
    assert.match(r.stdout, /ok {5}nyc3\/db-data: /);
    assert.match(r.stdout, /1 of 1 volumes backed up/);
    // The run names its volumes and regions in the web UI without our CLI.
    const run = h.client.workflow.getHandle(env.DOSVOB_WORKFLOW_ID!);
    const described = await run.describe();
    assert.equal(await described.staticSummary(), 'dosvob backup of db-data (nyc3)');
    assert.match((await described.staticDetails()) ?? '', /\| db-data \| nyc3 \| 1\.0 GiB \|/);
  });

  it('sync --json prints one JSON document; a failed volume exits 1', async () => {
    store.mode = 'fail';
    const r = await cli(['sync', '--json'], env);
    assert.equal(r.code, 1, r.stderr);
    const outcome = parseJson<SyncOutcome>(r);
    assert.equal(outcome.exitCode, 1);
    assert.equal(outcome.result?.volumes[0]?.ok, false);
    assert.match(outcome.result?.volumes[0]?.error ?? '', /closed the connection/);
    store.mode = 'run';
  });

  it('status shows the running run, cleanup refuses to run beside it, cancel waits for the teardown', async () => {
    store.mode = 'hold';
    const detached = await cli(['sync', '--detach', '--json'], env);
    assert.equal(detached.code, 0, detached.stderr);
    const { runId } = parseJson<SyncOutcome>(detached);

    // The stand-in transfer stops at a quarter of the volume: status must get there from the heartbeats.
    const running = await waitFor('the transfer to report a quarter done', async () => {
      const s = parseJson<Status>(await cli(['status', '--json'], env));
      const volume = s.running ? s.progress?.volumes[0] : undefined;
      return volume?.step === 'transfer' && volume.bytesDone === 256 * 2 ** 20 ? s : undefined;
    });
    assert.ok(running.running && running.runId === runId);
    assert.equal(running.progress?.phase, 'backing up');
    const text = await cli(['status'], env);
    assert.match(text.stdout, new RegExp(`backup run ${runId} in progress`));
    assert.match(text.stdout, /db-data \(nyc3\): transfer 256 MiB \/ 1\.0 GiB \(25%\)/);

    const refused = await cli(['cleanup'], env);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /^dosvob: backup run \S+ is in progress/);
    assert.equal(refused.stderr.trim().split('\n').length, 1);

    const live = h.sim.liveResources();
    assert.equal(live.droplets.length, 1, 'the run has its droplet');
    const r = await cli(['cancel', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const cancelled = parseJson<CancelOutcome>(r);
    assert.equal(cancelled.ended, 'cancelled');
    const deleted = cancelled.deleted ?? [];
    for (const kind of ['droplet', 'volume', 'snapshot', 'ssh key']) {
      assert.ok(
        deleted.some((d) => d.startsWith(`${kind} dosvob-ephemeral-`)),
        `${kind} in ${deleted.join(', ')}`,
      );
    }
    const after = h.sim.liveResources();
    assert.deepEqual(after.droplets, []);
    assert.deepEqual(after.snapshots, []);
    assert.deepEqual(after.sshKeys, []);
    assert.deepEqual(
      after.volumes.map((v) => v.name),
      ['db-data'],
    );
    const again = await cli(['cancel'], env);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /no backup run is in progress/);
  });

  it('runs lists outcome, duration, bytes and cost; status then shows the last run', async () => {
    const list = parseJson<RunSummary[]>(await cli(['runs', '--json'], env));
    assert.deepEqual(
      list.map((r) => r.outcome),
      ['cancelled', 'failed', 'ok'],
    );
    const ok = list[2]!;
    assert.equal(ok.volumes, 1);
    assert.equal(ok.bytesTransferred, Math.round(2 ** 30 * 0.1));
    assert.ok((ok.estimatedCostUsd ?? 0) > 0 && (ok.durationMs ?? 0) > 0);
    assert.equal(list[1]!.volumesFailed, 1);
    const text = await cli(['runs', '--limit', '2'], env);
    const lines = text.stdout.trim().split('\n');
    assert.match(lines[0] ?? '', /^START +KIND +OUTCOME +DURATION +VOLUMES +TRANSFERRED +COST +RUN$/);
    assert.equal(lines.length, 3, 'header and two runs');
    const status = parseJson<Status>(await cli(['status', '--json'], env));
    assert.ok(!status.running && status.last?.outcome === 'cancelled');
  });

  it('cleanup --dry-run lists leftovers; cleanup deletes them and nothing else', async () => {
    // The installation the harness's workers (and this CLI's conf.json) make up.
    const id = installationId(undefined, {
      keySecret: h.config.keySecret ?? '',
      namespace: 'default',
      taskQueue: h.taskQueue,
    });
    const tags = [EPHEMERAL_TAG, installationTag(id)];
    const left = await h.sim.createVolume({
      name: `dosvob-ephemeral-${id}-0123456789-db-data`,
      region: 'nyc3',
      sizeGigabytes: 1,
      tags,
    });
    await h.sim.createVolume({ name: 'dosvob-ephemeral-lookalike', region: 'nyc3', sizeGigabytes: 1 }); // no tag: not ours
    // Another installation's, in flight as far as anyone can tell: not ours either.
    await h.sim.createVolume({
      name: 'dosvob-ephemeral-elsewhere-0123456789-db-data',
      region: 'nyc3',
      sizeGigabytes: 1,
      tags: [EPHEMERAL_TAG, installationTag('elsewhere')],
    });
    h.sim.addSshKey(
      `dosvob-ephemeral-${id}-0123456789-key`,
      'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJgL6Ea5FE6qZfbgEqBvJmNq1ZcYFU4PrvHmZTHn0Fy0 x',
    );
    const dry = parseJson<CleanupOutcome>(await cli(['cleanup', '--dry-run', '--json'], env));
    assert.deepEqual(
      dry.leftovers.map((r) => `${r.kind} ${r.name} ${r.deleted}`),
      [`volume ${left.name} false`, `ssh_key dosvob-ephemeral-${id}-0123456789-key false`],
    );
    assert.equal(h.sim.liveResources().volumes.length, 4, 'a dry run deletes nothing');
    const r = await cli(['cleanup'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`deleted volume ${left.name}`));
    const live = h.sim.liveResources();
    assert.deepEqual(live.volumes.map((v) => v.name).sort(), [
      'db-data',
      'dosvob-ephemeral-elsewhere-0123456789-db-data',
      'dosvob-ephemeral-lookalike',
    ]);
    assert.deepEqual(live.sshKeys, []);
    const none = await cli(['cleanup'], env);
    assert.match(none.stdout, /no leftovers of earlier runs/);
  });

  it('the real binary: bad input is one line and exit code 2; status --json is JSON', async () => {
    const badRegion = await cliProcess(['sync'], {
      ...env,
      DIGITALOCEAN_API_URL: h.sim.apiUrl,
      DOSVOB_CONFIG: writeBad(h, { region: 'xyz9' }),
    });
    assert.equal(badRegion.code, 2, badRegion.stderr);
    assert.match(badRegion.stderr, /^dosvob: unknown region "xyz9": DigitalOcean's regions are /);
    assert.equal(badRegion.stderr.trim().split('\n').length, 1);
    const badSchedule = await cliProcess(['schedule', 'create'], {
      ...env,
      DOSVOB_CONFIG: writeBad(h, { region: 'nyc3', schedule: 'often' }),
    });
    assert.equal(badSchedule.code, 2);
    assert.match(badSchedule.stderr, /^dosvob: conf\.json "schedule": "often" is neither an interval/);
    const badOption = await cliProcess(['runs', '--limit', '0'], env);
    assert.equal(badOption.code, 2);
    assert.equal(badOption.stderr.trim().split('\n').length, 1);
    const status = await cliProcess(['status', '--json'], env);
    assert.equal(status.code, 0, status.stderr);
    assert.equal(parseJson<Status>(status).running, false);
  });
});

function writeBad(h: Harness, conf: Record<string, unknown>): string {
  const file = `${h.backupsDir}/bad-${Object.keys(conf).join('-')}.json`;
  writeFileSync(file, JSON.stringify({ do_token: h.config.doToken, api_url: h.config.apiUrl, ...conf }));
  return file;
}

describe('dosvob setup', () => {
  it('registers the search attributes on a namespace that lacks them, then finds them there', async () => {
    const { connect, uniqueId } = await import('../support/temporal');
    const { connection } = await connect();
    try {
      const namespace = uniqueId('dosvob-ns');
      await connection.workflowService.registerNamespace({
        namespace,
        workflowExecutionRetentionPeriod: msToTs('1 day'),
      });
      const env = { TEMPORAL_ADDRESS: process.env.TEMPORAL_ADDRESS ?? '', TEMPORAL_NAMESPACE: namespace };
      const first = await waitFor('the new namespace', async () => {
        const r = await cli(['setup', '--json'], env);
        return r.code === 0 ? r : undefined;
      });
      assert.deepEqual(parseJson<{ registered: string[] }>(first).registered.sort(), [
        'DosvobOutcome',
        'DosvobVolumes',
      ]);
      const listed = await connection.operatorService.listSearchAttributes({ namespace });
      assert.ok(
        listed.customAttributes?.DosvobVolumes !== undefined && listed.customAttributes?.DosvobOutcome !== undefined,
      );
      const again = parseJson<{ registered: string[]; alreadyRegistered: string[] }>(
        await cli(['setup', '--json'], env),
      );
      assert.deepEqual(again.registered, []);
      assert.deepEqual(again.alreadyRegistered.sort(), ['DosvobOutcome', 'DosvobVolumes']);
    } finally {
      await connection.close();
    }
  });

  it('--wait waits for a namespace the server has not created yet (as a fresh auto-setup server answers)', async () => {
    const { connect, uniqueId } = await import('../support/temporal');
    const { connection } = await connect();
    try {
      const namespace = uniqueId('dosvob-late');
      const env = { TEMPORAL_ADDRESS: process.env.TEMPORAL_ADDRESS ?? '', TEMPORAL_NAMESPACE: namespace };
      const setup = cli(['setup', '--wait', '120', '--json'], env);
      await waitFor('setup to wait for the namespace', async () =>
        /namespace \S+ does not exist yet; waiting/.test(setup.stderrSoFar()),
      );
      await connection.workflowService.registerNamespace({
        namespace,
        workflowExecutionRetentionPeriod: msToTs('1 day'),
      });
      const r = await setup;
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(parseJson<{ registered: string[] }>(r).registered.sort(), ['DosvobOutcome', 'DosvobVolumes']);
    } finally {
      await connection.close();
    }
  });

  it('--wait gives up on an address where no server ever answers, in one line', async () => {
    const net = await import('node:net');
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port: p } = probe.address() as { port: number };
        probe.close(() => resolve(p));
      });
    });
    const r = await cli(['setup', '--wait', '1'], { TEMPORAL_ADDRESS: `127.0.0.1:${port}` });
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^dosvob: cannot reach Temporal at 127\\.0\\.0\\.1:${port}`));
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });
});
