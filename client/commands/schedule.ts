// `dosvob schedule create | show | pause | resume | trigger | delete`: the Temporal Schedule of backups.
import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  type ScheduleDescription,
  type ScheduleHandle,
} from '@temporalio/client';
import type { Config } from '../../common/config';
import { UserError } from '../errors';
import { formatDuration, formatTime, type Output } from '../output';
import { describeSchedule, parseSchedule, scheduleOptions } from '../schedule';
import type { Session } from '../session';

export interface ScheduleView {
  scheduleId: string;
  spec: { intervalsMs: number[]; calendars: number };
  paused: boolean;
  note: string | undefined;
  overlap: string;
  catchupWindowMs: number;
  workflowType: string | undefined;
  workflowId: string | undefined;
  taskQueue: string | undefined;
  summary: string | undefined;
  details: string | undefined;
  nextActionTimes: string[];
  recentActions: Array<{ scheduledAt: string; takenAt: string; workflowId: string; runId: string }>;
  running: string[];
}

async function describe(handle: ScheduleHandle, scheduleId: string): Promise<ScheduleDescription> {
  try {
    return await handle.describe();
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) {
      throw new UserError(`there is no schedule "${scheduleId}": create it with \`dosvob schedule create\``);
    }
    throw err;
  }
}

export function scheduleView(d: ScheduleDescription): ScheduleView {
  const action = d.action.type === 'startWorkflow' ? d.action : undefined;
  return {
    scheduleId: d.scheduleId,
    spec: { intervalsMs: (d.spec.intervals ?? []).map((i) => i.every), calendars: (d.spec.calendars ?? []).length },
    paused: d.state.paused,
    note: d.state.note,
    overlap: d.policies.overlap ?? 'SKIP',
    catchupWindowMs: d.policies.catchupWindow,
    workflowType: action?.workflowType,
    workflowId: action?.workflowId,
    taskQueue: action?.taskQueue,
    summary: action?.staticSummary,
    details: action?.staticDetails,
    nextActionTimes: d.info.nextActionTimes.map((t) => t.toISOString()),
    recentActions: d.info.recentActions.map((a) => ({
      scheduledAt: a.scheduledAt.toISOString(),
      takenAt: a.takenAt.toISOString(),
      workflowId: a.action.workflow.workflowId,
      runId: a.action.workflow.firstExecutionRunId,
    })),
    running: d.info.runningActions.map((a) => a.workflow.workflowId),
  };
}

function printView(v: ScheduleView, out: Output): void {
  const when = [
    ...v.spec.intervalsMs.map((ms) => `every ${formatDuration(ms)}`),
    ...(v.spec.calendars ? [`${v.spec.calendars} calendar spec(s)`] : []),
  ].join(', ');
  out.line(`schedule ${v.scheduleId}: ${when || 'no times'}${v.paused ? ' — PAUSED' : ''}`);
  if (v.note) out.line(`  note: ${v.note}`);
  out.line(`  starts ${v.workflowType} as ${v.workflowId}-<time> on task queue ${v.taskQueue}`);
  out.line(`  overlap: ${v.overlap.toLowerCase()}, catch-up window ${formatDuration(v.catchupWindowMs)}`);
  if (v.summary) out.line(`  summary: ${v.summary}`);
  if (v.details) out.line(`  ${v.details}`);
  if (!v.paused && v.nextActionTimes.length) {
    out.line(
      `  next: ${v.nextActionTimes
        .slice(0, 3)
        .map((t) => formatTime(new Date(t)))
        .join(', ')}`,
    );
  }
  for (const a of v.recentActions.slice(-5)) out.line(`  took ${formatTime(new Date(a.takenAt))}: ${a.workflowId}`);
  if (v.running.length) out.line(`  running: ${v.running.join(', ')}`);
}

export async function scheduleCreate(session: Session, config: Config, out: Output): Promise<ScheduleView> {
  const options = scheduleOptions(config, session.ids);
  const parsed = parseSchedule(config.schedule);
  let verb = 'created';
  let handle: ScheduleHandle;
  try {
    handle = await session.client.schedule.create(options);
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    // Idempotent, so the Docker stack's one-shot service can run it on every start: bring the schedule in line with
    // conf.json, keeping its paused state.
    handle = session.client.schedule.getHandle(options.scheduleId);
    await handle.update((previous) => ({
      spec: options.spec,
      action: options.action,
      policies: options.policies,
      state: { paused: previous.state.paused, note: previous.state.note },
    }));
    verb = 'updated';
  }
  const view = scheduleView(await handle.describe());
  out.line(`schedule ${options.scheduleId} ${verb}: backups ${describeSchedule(parsed)}`);
  printView(view, out);
  out.json(view);
  return view;
}

export async function scheduleShow(session: Session, out: Output): Promise<ScheduleView> {
  const { scheduleId } = session.ids;
  const view = scheduleView(await describe(session.client.schedule.getHandle(scheduleId), scheduleId));
  printView(view, out);
  out.json(view);
  return view;
}

export type ScheduleAction = 'pause' | 'resume' | 'trigger' | 'delete';

export async function scheduleAct(session: Session, out: Output, action: ScheduleAction): Promise<void> {
  const { scheduleId } = session.ids;
  const handle = session.client.schedule.getHandle(scheduleId);
  await describe(handle, scheduleId); // a clear "no such schedule" rather than a gRPC NOT_FOUND
  const note = `dosvob schedule ${action}`;
  switch (action) {
    case 'pause':
      await handle.pause(note);
      out.line(`schedule ${scheduleId} paused`);
      break;
    case 'resume':
      await handle.unpause(note);
      out.line(`schedule ${scheduleId} resumed`);
      break;
    case 'trigger':
      // Through the schedule, so its overlap policy and the one-run-at-a-time rule apply as to any scheduled run.
      await handle.trigger();
      out.line(`schedule ${scheduleId} triggered: a run starts now unless one is in progress`);
      break;
    case 'delete':
      await handle.delete();
      out.line(`schedule ${scheduleId} deleted (runs in progress continue)`);
      break;
  }
}
