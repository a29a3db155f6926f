// Every saved history must replay against the current workflow code: a change that would break
// running workflows (non-determinism) fails here, before it is deployed. Record new histories with
// DOSVOB_RECORD_HISTORIES=1 npm test -- test/workflow/backup
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Worker } from '@temporalio/worker';
import { HISTORIES_DIR, workflowIdOfHistoryFile } from '../support/history';
import { workflowBundle } from '../support/temporal';

describe('replay of saved histories', () => {
  const files = readdirSync(HISTORIES_DIR).filter((f) => f.endsWith('.json'));

  it('has histories to replay', () => {
    assert.ok(files.length > 0, `no histories in ${HISTORIES_DIR}`);
  });

  for (const file of files) {
    it(`replays ${file} deterministically`, async () => {
      const history: unknown = JSON.parse(readFileSync(path.join(HISTORIES_DIR, file), 'utf8'));
      await Worker.runReplayHistory({ workflowBundle: workflowBundle() }, history, workflowIdOfHistoryFile(file));
    });
  }
});
