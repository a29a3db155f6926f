// The names that tie one dosvob installation together on a Temporal namespace. The defaults suit one installation per
// namespace; a second installation sharing the namespace (or a test sharing a server) sets DOSVOB_TASK_QUEUE and
// DOSVOB_WORKFLOW_ID so that the two never pick up each other's work or block each other's runs.
import { BACKUP_WORKFLOW_ID, MAIN_TASK_QUEUE } from '../common/task-queues';
import type { BackupInput } from '../workflows/types';
import { UserError } from './errors';

export const WORKFLOW_TYPE = 'backupWorkflow';
/** `dosvob cleanup`'s workflow: it runs under the installation's run workflow id too, so never beside a backup. */
export const CLEANUP_WORKFLOW_TYPE = 'cleanupWorkflow';
/** `dosvob restore --to-volume`'s workflow: under the run workflow id too (it shares the ephemeral namespace). */
export const RESTORE_WORKFLOW_TYPE = 'restoreWorkflow';

export type RunKind = 'backup' | 'cleanup' | 'restore';

/** What a workflow under the installation's run workflow id is, by its type. */
export function runKind(workflowType: string): RunKind {
  if (workflowType === CLEANUP_WORKFLOW_TYPE) return 'cleanup';
  if (workflowType === RESTORE_WORKFLOW_TYPE) return 'restore';
  return 'backup';
}
export const SCHEDULE_ID = 'dosvob-schedule';
/** Schedules append the scheduled time to this id; the run itself then gets `workflowId` (see backupWorkflow). */
export const SCHEDULED_WORKFLOW_ID = 'dosvob-scheduled';

export interface RunIds {
  /** The main task queue: the workflow and the DigitalOcean activities. */
  taskQueue: string;
  /** The id every backup run has while it runs: what makes runs one at a time. */
  workflowId: string;
  scheduleId: string;
  /** The id prefix of the workflows the schedule starts. */
  scheduledWorkflowId: string;
}

const ID = /^[A-Za-z0-9._@:-]{1,200}$/;

function pick(env: NodeJS.ProcessEnv, name: string, fallback: string): string {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  if (!ID.test(value)) throw new UserError(`${name}="${value}" is not a valid id (letters, digits and . _ @ : - only)`);
  return value;
}

export function runIdsFromEnv(env: NodeJS.ProcessEnv = process.env): RunIds {
  return {
    taskQueue: pick(env, 'DOSVOB_TASK_QUEUE', MAIN_TASK_QUEUE),
    workflowId: pick(env, 'DOSVOB_WORKFLOW_ID', BACKUP_WORKFLOW_ID),
    scheduleId: pick(env, 'DOSVOB_SCHEDULE_ID', SCHEDULE_ID),
    scheduledWorkflowId: pick(env, 'DOSVOB_SCHEDULED_WORKFLOW_ID', SCHEDULED_WORKFLOW_ID),
  };
}

/**
 * The workflow input that makes a run use `ids`. Empty for the default id, so a schedule made by hand with
 * `--input '{}'` (README) and one made by `dosvob schedule create` start exactly the same workflow.
 */
export function baseInput(ids: RunIds): BackupInput {
  return ids.workflowId === BACKUP_WORKFLOW_ID ? {} : { singletonId: ids.workflowId };
}

/** A visibility-query string literal. */
export function quoteQuery(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}
