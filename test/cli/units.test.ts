// The CLI's pure parts: schedule parsing, the progress view (rates, ETA, lines, bars), ids, tables.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { baseInput, quoteQuery, runIdsFromEnv } from '../../client/ids';
import { table } from '../../client/output';
import { BarDisplay, PlainDisplay, RateMeter, describeVolume, viewOf } from '../../client/progress';
import type { RunState } from '../../client/run-state';
import type { RunSummary } from '../../client/runs';
import { versionsMade } from '../../client/commands/runs';
import { parseSchedule, scheduleOptions, scheduleSpec } from '../../client/schedule';
import { UserError } from '../../client/errors';
import { loadConfig } from '../../common/config';
import type { RunProgress } from '../../workflows/types';

const GiB = 2 ** 30;

function state(progress: RunProgress, transfers: RunState['transfers'] = new Map()): RunState {
  return {
    workflowId: 'dosvob-backup',
    runId: 'r1',
    type: 'backupWorkflow',
    status: 'RUNNING',
    startTime: new Date(0),
    closeTime: undefined,
    progress,
    transfers,
    parent: undefined,
  };
}

const progress = (step: RunProgress['volumes'][number]['step']): RunProgress => ({
  phase: 'backing up',
  volumes: [{ name: 'db-data', region: 'nyc3', step, sizeBytes: 10 * GiB }],
  swept: [],
  deleted: [],
});

const transfer = (blocksDone: number, atMs: number) =>
  new Map([
    [
      'db-data',
      {
        phase: 'transferring' as const,
        blockCount: 10240,
        blocksDone,
        bytesReceived: 0,
        blocksChanged: 0,
        attempt: 1,
        at: new Date(atMs),
      },
    ],
  ]);

describe('conf.json "schedule"', () => {
  it('reads intervals and cron expressions', () => {
    assert.deepEqual(parseSchedule('4h'), { kind: 'interval', everyMs: 4 * 3600_000, text: '4h' });
    assert.equal((parseSchedule('1h30m') as { everyMs: number }).everyMs, 90 * 60_000);
    assert.equal((parseSchedule('1d') as { everyMs: number }).everyMs, 86_400_000);
    assert.deepEqual(scheduleSpec(parseSchedule('0 3 * * *')), { cronExpressions: ['0 3 * * *'] });
    assert.equal(parseSchedule('@daily').kind, 'cron');
    assert.equal(parseSchedule('CRON_TZ=Europe/Paris 30 2 * * 1-5').kind, 'cron');
  });
  it('refuses what is neither, and intervals under a minute, as bad input', () => {
    for (const bad of ['often', '4 hours', '* * *', '10s', '']) {
      assert.throws(
        () => parseSchedule(bad),
        (err: unknown) => err instanceof UserError && err.exitCode === 2,
        bad,
      );
    }
  });
  it('the schedule starts backupWorkflow with the installation ids, overlap SKIP, a catch-up window', () => {
    const config = loadConfig({ path: 'conf.json.example', requireToken: false, env: {} });
    const options = scheduleOptions(config, runIdsFromEnv({}));
    assert.equal(options.scheduleId, 'dosvob-schedule');
    assert.deepEqual(options.action.args, [{}]);
    assert.equal(options.action.workflowId, 'dosvob-scheduled');
    assert.equal(options.action.taskQueue, 'dosvob');
    assert.equal(options.policies?.overlap, 'SKIP');
    assert.equal(options.policies?.catchupWindow, '1h');
    const other = scheduleOptions(config, runIdsFromEnv({ DOSVOB_WORKFLOW_ID: 'backup-b', DOSVOB_TASK_QUEUE: 'q-b' }));
    assert.deepEqual(other.action.args, [{ singletonId: 'backup-b' }]);
  });
});

describe('ids', () => {
  it('defaults, overrides, and refuses ids a visibility query could not hold', () => {
    assert.deepEqual(baseInput(runIdsFromEnv({})), {});
    assert.equal(runIdsFromEnv({ DOSVOB_TASK_QUEUE: 'q1' }).taskQueue, 'q1');
    assert.throws(() => runIdsFromEnv({ DOSVOB_TASK_QUEUE: "x' OR 1=1" }), UserError);
    assert.equal(quoteQuery("a'b"), "'a\\'b'");
  });
});

describe('progress view', () => {
  it('bytes done from blocks, a rate from heartbeat times, and an ETA', () => {
    const meter = new RateMeter();
    const first = viewOf(state(progress('transfer'), transfer(1024, 10_000)), meter)?.volumes[0];
    assert.equal(first?.bytesDone, GiB);
    assert.equal(first?.bytesPerSecond, undefined, 'one heartbeat: no rate yet');
    // The same heartbeat seen again must not look like a stall.
    viewOf(state(progress('transfer'), transfer(1024, 10_000)), meter);
    const second = viewOf(state(progress('transfer'), transfer(2048, 12_000)), meter)?.volumes[0];
    assert.equal(second?.bytesPerSecond, GiB / 2);
    assert.equal(second?.etaSeconds, 16);
    assert.equal(describeVolume(second!), 'db-data (nyc3): transfer 2.0 GiB / 10 GiB (20%), 512 MiB/s, ETA 16 s');
  });
  it('a retried attempt starts its rate over; steps after the transfer count the whole volume', () => {
    const meter = new RateMeter();
    viewOf(state(progress('transfer'), transfer(4096, 1000)), meter);
    const retried = viewOf(state(progress('transfer'), transfer(100, 2000)), meter)?.volumes[0];
    assert.equal(retried?.bytesPerSecond, undefined);
    assert.equal(viewOf(state(progress('detach')), meter)?.volumes[0]?.bytesDone, 10 * GiB);
    assert.equal(viewOf({ ...state(progress('done')), progress: undefined }, meter), undefined);
  });
  it('plain lines: one per change of step, a moving transfer at most every interval', () => {
    const lines: string[] = [];
    const display = new PlainDisplay((l) => lines.push(l), 60_000);
    const meter = new RateMeter();
    display.update(viewOf(state(progress('snapshot')), meter)!);
    display.update(viewOf(state(progress('snapshot')), meter)!);
    display.update(viewOf(state(progress('transfer'), transfer(100, 1000)), meter)!);
    display.update(viewOf(state(progress('transfer'), transfer(200, 2000)), meter)!);
    display.update(viewOf(state(progress('done')), meter)!);
    assert.deepEqual(lines, [
      '[backing up] 0 of 1 volumes backed up',
      '  db-data (nyc3): snapshot (10 GiB)',
      '  db-data (nyc3): transfer 100 MiB / 10 GiB (0%), -',
      '[backing up] 1 of 1 volumes backed up',
      '  db-data (nyc3): done',
    ]);
  });
  it('bars on a terminal: one per volume, with its text', async () => {
    const stream = Object.assign(new PassThrough(), { isTTY: true, columns: 120 });
    const chunks: string[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c.toString()));
    const display = new BarDisplay(stream);
    display.update(viewOf(state(progress('transfer'), transfer(5120, 1000)), new RateMeter())!);
    display.stop();
    await new Promise((r) => setImmediate(r));
    const screen = chunks.join('');
    assert.match(screen, /db-data \|={12}-{12}\| \(nyc3\): transfer 5\.0 GiB \/ 10 GiB \(50%\)/);
    assert.match(screen, /\[backing up\] 0 of 1 volumes backed up/);
  });
});

describe('tables', () => {
  it('pads every column but the last', () => {
    assert.deepEqual(table(['A', 'BB', 'C'], [['xxx', 'y', 'z']]), ['A    BB  C', 'xxx  y   z']);
  });
});

describe('dosvob runs: the versions a run made', () => {
  const run = (pruning?: RunSummary['pruning']): RunSummary =>
    ({
      runId: 'r1',
      versions: [{ volume: 'data', region: 'nyc3', version: '20261202T134500Z-1a2b3c' }],
      pruning,
    }) as RunSummary;

  it('names each volume version, then what pruning removed or why it failed', () => {
    assert.deepEqual(versionsMade([run()]), ['r1: data (nyc3) 20261202T134500Z-1a2b3c']);
    assert.deepEqual(versionsMade([run({ versionsRemoved: 2, bytesFreed: 40 * 2 ** 20 })]), [
      'r1: data (nyc3) 20261202T134500Z-1a2b3c; pruned 2 old version(s), freed 40 MiB',
    ]);
    assert.deepEqual(versionsMade([run({ versionsRemoved: 0, bytesFreed: 0, error: 'disk on fire' })]), [
      'r1: data (nyc3) 20261202T134500Z-1a2b3c; pruning failed: disk on fire',
    ]);
  });
});
