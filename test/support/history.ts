// Workflow histories: checked for secrets, and saved for the replay tests.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';

export const HISTORIES_DIR = path.resolve(__dirname, '..', 'histories');

export async function historyJson(handle: WorkflowHandle): Promise<string> {
  return historyToJSON(await handle.fetchHistory());
}

/** The history holds no token, no key secret and no private key, in any encoding we might leak. */
export function assertNoSecrets(history: string, secrets: readonly string[]): void {
  assert.doesNotMatch(history, /PRIVATE KEY/, 'no private key in the history');
  for (const secret of secrets) {
    for (const form of [secret, Buffer.from(secret).toString('base64').slice(0, 24)]) {
      assert.ok(!history.includes(form), 'a secret appears in the history');
    }
  }
}

/**
 * With DOSVOB_RECORD_HISTORIES=1, save a history for the replay tests as test/histories/NAME@WORKFLOW-ID.json
 * (the workflow id is not part of a history, and the workflow's behaviour depends on it).
 */
export function maybeRecordHistory(name: string, workflowId: string, history: string): void {
  if (process.env.DOSVOB_RECORD_HISTORIES !== '1') return;
  writeFileSync(path.join(HISTORIES_DIR, `${name}@${workflowId}.json`), history);
}

export function workflowIdOfHistoryFile(file: string): string {
  return path.basename(file, '.json').split('@').pop() ?? file;
}
