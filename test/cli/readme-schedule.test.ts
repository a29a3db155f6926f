// The README's schedule command lines, exactly as written there (read between the marker comments, so they cannot
// drift): `temporal schedule create` is run for real against the suite's server and a scheduled run goes end to end;
// the tctl line is checked as far as possible without tctl, and run when tctl is installed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { BackupResult } from '../../workflows/types';
import { scheduleView } from '../../client/commands/schedule';
import { runIdsFromEnv } from '../../client/ids';
import { scheduleOptions } from '../../client/schedule';
import { loadConfig } from '../../common/config';
import { BACKUP_WORKFLOW_ID } from '../../common/task-queues';
import { startHarness, type Harness } from '../support/harness';
import { uniqueId } from '../support/temporal';
import { REPO, cliEnv, waitFor } from './support';

const exec = promisify(execFile);

/** The shell block of the README between `<!-- NAME -->` and `<!-- /NAME -->`. */
export function readmeBlock(name: string): string {
  const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const fence = '```';
  const match = new RegExp(`<!-- ${name} -->\\s*${fence}sh\\n([\\s\\S]*?)${fence}\\s*<!-- /${name} -->`).exec(readme);
  assert.ok(match?.[1], `README has a \`\`\`sh block between <!-- ${name} --> markers`);
  return match[1];
}

/** The argv the block passes to `command`, after the shell's own expansion, without running anything. */
async function argvOf(block: string, command: string, env: Record<string, string>): Promise<string[]> {
  const { stdout } = await exec('bash', ['-euc', `${command}() { printf '%s\\0' "$@"; }\n${block}`], {
    env: { PATH: process.env.PATH, ...env },
  });
  return stdout.split('\0').slice(0, -1);
}

/** `--flag value` pairs (every flag in these lines takes a value) after the leading positional words. */
function flagsOf(argv: string[]): { words: string[]; flags: Map<string, string> } {
  const words: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a.startsWith('--')) {
      assert.ok(!flags.has(a), `${a} given once`);
      flags.set(a, argv[++i] ?? '');
    } else words.push(a);
  }
  return { words, flags };
}

async function ensureCli(name: 'temporal' | 'tctl'): Promise<{ path?: string; reason?: string }> {
  try {
    const { stdout } = await exec('bash', [path.join(REPO, 'scripts', 'ensure-temporal-cli.sh'), name], {
      timeout: 120_000,
    });
    return { path: stdout.trim().split('\n').pop() };
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? err).trim();
    const lines = stderr.split('\n').map((l) => l.trim());
    const why = lines.filter((l) => /could not build|not installed|not available|403/.test(l));
    return { reason: (why.length ? why : lines).join(' / ') };
  }
}

describe('README schedule command lines', () => {
  let h: Harness;
  let env: Record<string, string>;
  const expected = () => {
    const config = loadConfig({ path: path.join(REPO, 'conf.json.example'), requireToken: false, env: {} });
    return scheduleOptions(config, runIdsFromEnv({}));
  };

  before(async () => {
    h = await startHarness({ sim: { actionDelayMs: 0, dropletActiveDelayMs: 0, sshKeyListPerMinute: 1000 } });
    const volume = await h.sim.createVolume({ name: 'web-files', region: 'nyc3', sizeGigabytes: 1 });
    await h.sim.writeVolume(volume.id, 0, Buffer.alloc(1 << 20, 7));
    env = cliEnv(h, { DOSVOB_SCHEDULED_WORKFLOW_ID: uniqueId('dosvob-scheduled') });
  });
  after(async () => {
    await h?.close();
  });

  it('the temporal line is the schedule `dosvob schedule create` makes', async () => {
    const want = expected();
    const { words, flags } = flagsOf(await argvOf(readmeBlock('schedule:temporal'), 'temporal', {}));
    assert.deepEqual(words, ['schedule', 'create']);
    assert.equal(flags.get('--schedule-id'), want.scheduleId);
    assert.equal(flags.get('--interval'), '4h');
    assert.deepEqual(want.spec.intervals, [{ every: 4 * 3600_000 }]);
    assert.equal(flags.get('--overlap-policy'), 'Skip');
    assert.equal(flags.get('--catchup-window'), want.policies?.catchupWindow);
    assert.equal(flags.get('--type'), want.action.workflowType);
    assert.equal(flags.get('--workflow-id'), want.action.workflowId);
    assert.equal(flags.get('--task-queue'), want.action.taskQueue);
    assert.deepEqual(JSON.parse(flags.get('--input') ?? 'null'), want.action.args?.[0]);
  });

  it('temporal schedule create, exactly as in the README, starts a run that backs up a volume', async () => {
    const temporal = await ensureCli('temporal');
    assert.ok(temporal.path, temporal.reason);
    const cliEnvForTemporal = {
      PATH: `${path.dirname(temporal.path)}:${process.env.PATH}`,
      HOME: process.env.HOME ?? '/tmp',
      TEMPORAL_ADDRESS: env.TEMPORAL_ADDRESS!,
      DOSVOB_SCHEDULE_ID: env.DOSVOB_SCHEDULE_ID!,
      DOSVOB_SCHEDULED_WORKFLOW_ID: env.DOSVOB_SCHEDULED_WORKFLOW_ID!,
      DOSVOB_TASK_QUEUE: env.DOSVOB_TASK_QUEUE!,
    };
    await exec('bash', ['-euc', readmeBlock('schedule:temporal')], { env: cliEnvForTemporal });
    try {
      const schedule = h.client.schedule.getHandle(env.DOSVOB_SCHEDULE_ID!);
      const view = scheduleView(await schedule.describe());
      assert.equal(view.taskQueue, h.taskQueue);
      assert.equal(view.overlap, 'SKIP');
      await exec('temporal', ['schedule', 'trigger', '--schedule-id', env.DOSVOB_SCHEDULE_ID!], {
        env: cliEnvForTemporal,
      });
      // The README's input is `{}`: the run gets the default id, which no other test uses.
      const run = await waitFor(
        'the scheduled run',
        async () => {
          for await (const info of h.client.workflow.list({
            query: `WorkflowId = '${BACKUP_WORKFLOW_ID}' AND TaskQueue = '${h.taskQueue}'`,
          })) {
            return info;
          }
          return undefined;
        },
        60_000,
      );
      assert.ok(
        run.parentExecution?.workflowId?.startsWith(env.DOSVOB_SCHEDULED_WORKFLOW_ID!),
        'launched by the schedule',
      );
      const result = (await h.client.workflow.getHandle(run.workflowId, run.runId).result()) as BackupResult;
      assert.deepEqual(
        result.volumes.map((v) => [v.name, v.ok]),
        [['web-files', true]],
      );
      assert.ok(existsSync(path.join(h.backupsDir, 'web-files.img')), 'the image was written');
    } finally {
      await h.client.schedule
        .getHandle(env.DOSVOB_SCHEDULE_ID!)
        .delete()
        .catch(() => undefined);
    }
  });

  it('the tctl line: v1.18 syntax, the same schedule; run when tctl is installed', async (t) => {
    const block = readmeBlock('schedule:tctl');
    await exec('bash', ['-n', '-c', block]);
    const want = expected();
    const argv = await argvOf(block, 'tctl', {});
    // Global flags come before the command in tctl v1.
    const command = argv.indexOf('schedule');
    assert.deepEqual(argv.slice(0, command), ['--namespace', 'default']);
    assert.equal(argv[command + 1], 'create');
    const { words, flags } = flagsOf(argv.slice(command + 2));
    assert.deepEqual(words, []);
    // tctl v1.18's `schedule create` flags (cli_curr/schedule.go and getFlagsForStart).
    const known = new Set(
      [
        'schedule_id',
        'calendar',
        'cron',
        'interval',
        'start_time',
        'end_time',
        'jitter',
        'time_zone',
        'notes',
        'pause',
        'remaining_actions',
        'overlap_policy',
        'catchup_window',
        'pause_on_failure',
        'memo_key',
        'memo',
        'memo_file',
        'search_attr_key',
        'search_attr_value',
        'taskqueue',
        'workflow_id',
        'workflow_type',
        'execution_timeout',
        'run-timeout',
        'workflow_task_timeout',
        'input',
        'input_file',
      ].map((f) => `--${f}`),
    );
    for (const flag of flags.keys()) assert.ok(known.has(flag), `tctl schedule create has no ${flag}`);
    assert.equal(flags.get('--schedule_id'), want.scheduleId);
    assert.equal(flags.get('--interval'), '4h');
    assert.equal(flags.get('--overlap_policy'), 'Skip');
    assert.equal(flags.get('--catchup_window'), want.policies?.catchupWindow);
    assert.equal(flags.get('--workflow_type'), want.action.workflowType);
    assert.equal(flags.get('--workflow_id'), want.action.workflowId);
    assert.equal(flags.get('--taskqueue'), want.action.taskQueue);
    assert.deepEqual(JSON.parse(flags.get('--input') ?? 'null'), want.action.args?.[0]);

    const tctl = await ensureCli('tctl');
    if (!tctl.path) {
      t.skip(`tctl is not installed and cannot be built here (${tctl.reason})`);
      return;
    }
    const id = uniqueId('dosvob-schedule-tctl');
    const [host, port] = (env.TEMPORAL_ADDRESS ?? '').split(':');
    await exec('bash', ['-euc', block], {
      env: {
        PATH: `${path.dirname(tctl.path)}:${process.env.PATH}`,
        HOME: process.env.HOME ?? '/tmp',
        TEMPORAL_CLI_ADDRESS: `${host}:${port}`,
        DOSVOB_SCHEDULE_ID: id,
        DOSVOB_TASK_QUEUE: h.taskQueue,
      },
    });
    const view = scheduleView(await h.client.schedule.getHandle(id).describe());
    await h.client.schedule.getHandle(id).delete();
    assert.deepEqual(view.spec, { intervalsMs: [4 * 3600_000], calendars: 0 });
    assert.equal(view.overlap, 'SKIP');
    assert.equal(view.workflowType, 'backupWorkflow');
  });
});
