// Every saved history must replay against the current workflow code: a change that would break
// running workflows (non-determinism) fails here, before it is deployed. The saved runs cover the
// paths a change can break: successful runs, a failed one (a volume failed and was cleaned up at
// once), a cancelled one (cancelled during a create) and one whose worker was killed mid-transfer.
// Record them again with
//   DOSVOB_RECORD_HISTORIES=1 npm test -- test/workflow/backup test/workflow/failed-volume-cleanup \
//     test/workflow/cancel-mid-create test/workflow/worker-killed-replay test/workflow/restore.test \
//     test/workflow/freeze-hooks test/workflow/volume-children test/workflow/pipelined
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Worker } from '@temporalio/worker';
import { HISTORIES_DIR, workflowIdOfHistoryFile } from '../support/history';
import { workflowBundle } from '../support/temporal';

/** The exported JSON form (`historyToJSON`): event types are enum names. */
interface SavedHistory {
  events?: Array<{
    eventType?: string;
    activityTaskStartedEventAttributes?: { attempt?: number; lastFailure?: { timeoutFailureInfo?: unknown } };
  }>;
}

function load(file: string): SavedHistory {
  return JSON.parse(readFileSync(path.join(HISTORIES_DIR, file), 'utf8')) as SavedHistory;
}

const closedAs = (h: SavedHistory) =>
  h.events
    ?.map((e) => e.eventType ?? '')
    .find((t) => /^EVENT_TYPE_WORKFLOW_EXECUTION_(COMPLETED|FAILED|CANCELED)$/.test(t));

/** An activity retried after its worker died: a later attempt whose previous one timed out. */
const retriedAfterTimeout = (h: SavedHistory) =>
  (h.events ?? []).some((e) => {
    const started = e.activityTaskStartedEventAttributes;
    return (started?.attempt ?? 1) > 1 && started?.lastFailure?.timeoutFailureInfo !== undefined;
  });

describe('replay of saved histories', () => {
  const files = readdirSync(HISTORIES_DIR).filter((f) => f.endsWith('.json'));

  it('has histories of successful, failed, cancelled and worker-killed runs', () => {
    const histories = files.map(load);
    const kinds = new Set(histories.map(closedAs));
    for (const kind of ['COMPLETED', 'FAILED', 'CANCELED']) {
      assert.ok(kinds.has(`EVENT_TYPE_WORKFLOW_EXECUTION_${kind}`), `a ${kind.toLowerCase()} run in ${HISTORIES_DIR}`);
    }
    assert.ok(histories.some(retriedAfterTimeout), `a run retried after its worker died, in ${HISTORIES_DIR}`);
  });

  for (const file of files) {
    it(`replays ${file} deterministically`, async () => {
      const history: unknown = JSON.parse(readFileSync(path.join(HISTORIES_DIR, file), 'utf8'));
      await Worker.runReplayHistory({ workflowBundle: workflowBundle() }, history, workflowIdOfHistoryFile(file));
    });
  }
});
