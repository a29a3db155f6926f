// The Temporal Schedule that runs backups: built from conf.json's `schedule` (an interval such as "4h", or a cron
// expression), starting backupWorkflow with no input but the installation's ids, so the run takes its settings from
// the worker's conf.json like any other. One run at a time is the workflow's own rule (see backupWorkflow); the
// schedule's SKIP overlap policy only avoids queueing launchers behind a long run.
import { ScheduleOverlapPolicy, type ScheduleOptions, type ScheduleSpec } from '@temporalio/client';
import type { Config } from '../common/config';
import { UserError } from './errors';
import { WORKFLOW_TYPE, baseInput, type RunIds } from './ids';
import { formatDuration } from './output';

/** Missed runs (server down) are made up only within this window: a backup from days ago is no use now. */
export const CATCHUP_WINDOW = '1h';
const MIN_INTERVAL_MS = 60_000;

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const INTERVAL = /^(?:\d+[smhd])+$/;
const CRON_MACRO = /^@(yearly|annually|monthly|weekly|daily|midnight|hourly|every\s+\S+)$/;
const CRON_FIELD = /^[0-9A-Za-z*?,/#-]+$/;
const CRON_TZ = /^(?:CRON_TZ|TZ)=[A-Za-z0-9_+\-/]+$/;

export type ParsedSchedule = { kind: 'interval'; everyMs: number; text: string } | { kind: 'cron'; text: string };

/** "4h", "90m", "1h30m", "1d", or a 5-field cron expression ("0 3 * * *"), "@daily", "CRON_TZ=Europe/Paris 0 3 * * *". */
export function parseSchedule(text: string): ParsedSchedule {
  const trimmed = text.trim();
  const explain = `conf.json "schedule": "${text}" is neither an interval such as "4h" or "1h30m" nor a cron expression such as "0 3 * * *"`;
  if (INTERVAL.test(trimmed)) {
    let everyMs = 0;
    for (const [, n, unit] of trimmed.matchAll(/(\d+)([smhd])/g)) everyMs += Number(n) * (UNIT_MS[unit ?? 's'] ?? 0);
    if (everyMs < MIN_INTERVAL_MS) {
      throw new UserError(`conf.json "schedule": "${text}" is shorter than a minute: runs would only be skipped`);
    }
    return { kind: 'interval', everyMs, text: trimmed };
  }
  const words = trimmed.split(/\s+/);
  if (words[0] && CRON_TZ.test(words[0])) words.shift();
  const cron = words.join(' ');
  if (CRON_MACRO.test(cron) || (words.length === 5 && words.every((w) => CRON_FIELD.test(w)))) {
    return { kind: 'cron', text: trimmed };
  }
  throw new UserError(explain);
}

export function scheduleSpec(parsed: ParsedSchedule): ScheduleSpec {
  return parsed.kind === 'interval' ? { intervals: [{ every: parsed.everyMs }] } : { cronExpressions: [parsed.text] };
}

export function describeSchedule(parsed: ParsedSchedule): string {
  return parsed.kind === 'interval' ? `every ${formatDuration(parsed.everyMs)}` : `cron "${parsed.text}"`;
}

/** The web UI's summary of scheduled runs: which volumes and regions, as the configuration names them. */
export function scheduledRunSummary(config: Config): string {
  const matching = config.include.join(', ');
  const except = config.exclude.length ? ` except ${config.exclude.join(', ')}` : '';
  return `dosvob scheduled backup of volumes matching ${matching}${except} in ${config.regions.join(', ')}`;
}

export function scheduleOptions(config: Config, ids: RunIds): ScheduleOptions {
  const parsed = parseSchedule(config.schedule);
  return {
    scheduleId: ids.scheduleId,
    spec: scheduleSpec(parsed),
    action: {
      type: 'startWorkflow',
      workflowType: WORKFLOW_TYPE,
      workflowId: ids.scheduledWorkflowId,
      taskQueue: ids.taskQueue,
      args: [baseInput(ids)],
      staticSummary: scheduledRunSummary(config),
      staticDetails: `started by schedule ${ids.scheduleId} (${describeSchedule(parsed)}, from conf.json "schedule": "${parsed.text}")`,
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: CATCHUP_WINDOW, pauseOnFailure: false },
    state: { note: `created by dosvob schedule create: ${describeSchedule(parsed)}` },
  };
}
