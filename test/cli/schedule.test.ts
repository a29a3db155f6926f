// `dosvob schedule …` against a real Temporal server, and one run at a time between scheduled and CLI runs.
import assert from 'node:assert/strict';
import { ScheduleOverlapPolicy } from '@temporalio/client';
import { after, before, describe, it } from 'node:test';
import type { ScheduleView } from '../../client/commands/schedule';
import type { RunSummary } from '../../client/runs';
import { runsQuery } from '../../client/runs';
import { runIdsFromEnv } from '../../client/ids';
import { startHarness, type Harness } from '../support/harness';
import { cli, cliEnv, parseJson, startFakeStore, waitFor } from './support';

describe('dosvob schedule', () => {
  let h: Harness;
  let env: Record<string, string>;
  let store: Awaited<ReturnType<typeof startFakeStore>>;

  before(async () => {
    // Scheduled runs take no test timings: instant simulator actions keep the production waits short.
    h = await startHarness({ sim: { actionDelayMs: 0, dropletActiveDelayMs: 0, sshKeyListPerMinute: 1000 } });
    await h.sim.createVolume({ name: 'db-data', region: 'nyc3', sizeGigabytes: 1 });
    env = cliEnv(h);
    store = await startFakeStore(h);
  });
  after(async () => {
    await cli(['schedule', 'delete'], env);
    await store?.close();
    await h?.close();
  });

  /** Every execution of this installation's workflows, newest first. */
  async function executions() {
    const list = [];
    for await (const info of h.client.workflow.list({ query: runsQuery(runIdsFromEnv(env)) })) list.push(info);
    return list;
  }

  it('create builds the schedule from conf.json; create again updates it', async () => {
    const r = await cli(['schedule', 'create', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const view = parseJson<ScheduleView>(r);
    assert.deepEqual(view.spec, { intervalsMs: [4 * 3600_000], calendars: 0 });
    assert.equal(view.overlap, 'SKIP');
    assert.equal(view.catchupWindowMs, 3600_000);
    assert.equal(view.workflowType, 'backupWorkflow');
    assert.equal(view.workflowId, env.DOSVOB_SCHEDULED_WORKFLOW_ID ?? 'dosvob-scheduled');
    assert.equal(view.taskQueue, h.taskQueue);
    assert.equal(view.summary, 'dosvob scheduled backup of volumes matching * in nyc3');
    assert.equal(view.paused, false);
    assert.equal(view.nextActionTimes.length > 0, true);

    const again = await cli(['schedule', 'create'], env);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^schedule \S+ updated: backups every 4 h 00 min$/m);
  });

  it('pause and resume show in `schedule show`', async () => {
    assert.equal((await cli(['schedule', 'pause'], env)).code, 0);
    const paused = parseJson<ScheduleView>(await cli(['schedule', 'show', '--json'], env));
    assert.equal(paused.paused, true);
    const text = await cli(['schedule', 'show'], env);
    assert.match(text.stdout, /every 4 h 00 min — PAUSED/);
    assert.equal((await cli(['schedule', 'resume'], env)).code, 0);
    assert.equal(parseJson<ScheduleView>(await cli(['schedule', 'show', '--json'], env)).paused, false);
  });

  it('a scheduled run and a CLI run at once: the CLI attaches, a second scheduled start is skipped', async () => {
    store.mode = 'hold';
    assert.equal((await cli(['schedule', 'trigger'], env)).code, 0);
    // The schedule's launcher starts the run under the installation's run id.
    const runId = await waitFor('the scheduled run', async () => {
      const run = (await executions()).find(
        (e) => e.workflowId === env.DOSVOB_WORKFLOW_ID && e.status.name === 'RUNNING',
      );
      return run?.runId;
    });
    const sync = cli(['sync'], env);
    await waitFor('sync to attach', async () => sync.stdoutSoFar().includes('already in progress'));
    assert.match(sync.stdoutSoFar(), new RegExp(`a backup run is already in progress \\(${runId}\\)`));

    // A second scheduled start: the schedule's SKIP policy drops it once it has noticed its launcher running, or
    // else its launcher finds the run in progress and ends "skipped". Forcing a start past the schedule's policy
    // (ALLOW_ALL) shows the second path for certain: the workflow's own rule keeps one run at a time.
    assert.equal((await cli(['schedule', 'trigger'], env)).code, 0);
    await new Promise((r) => setTimeout(r, 1100)); // launcher ids carry the time to the second
    await h.client.schedule.getHandle(env.DOSVOB_SCHEDULE_ID!).trigger(ScheduleOverlapPolicy.ALLOW_ALL);
    const skipped = await waitFor('a scheduled start to be skipped', async () => {
      const list = parseJson<RunSummary[]>(await cli(['runs', '--json'], env));
      return list.find((r) => r.outcome === 'skipped');
    });
    assert.match(skipped.message ?? '', /already in progress/);

    store.release();
    const r = await sync;
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /1 of 1 volumes backed up/);
    const runs = (await executions()).filter((e) => e.workflowId === env.DOSVOB_WORKFLOW_ID);
    assert.equal(runs.length, 1, 'exactly one run');
    assert.ok(runs[0]?.parentExecution?.workflowId?.startsWith(env.DOSVOB_SCHEDULED_WORKFLOW_ID ?? 'dosvob-scheduled'));
    const list = parseJson<RunSummary[]>(await cli(['runs', '--json'], env));
    assert.equal(list.filter((x) => x.outcome === 'ok').length, 1);
    assert.ok(
      list.every((x) => x.outcome === 'ok' || x.outcome === 'skipped'),
      JSON.stringify(list),
    );
  });

  it('delete removes it; the other verbs then say so in one line, exit code 2', async () => {
    assert.equal((await cli(['schedule', 'delete'], env)).code, 0);
    for (const verb of ['show', 'pause', 'trigger']) {
      const r = await cli(['schedule', verb], env);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /^dosvob: there is no schedule "[^"]+": create it with `dosvob schedule create`\n$/);
    }
  });
});
