// DosvobVolumes lists the run's volumes for the web UI and `temporal workflow list --query`. The server
// limits each search attribute value (2 KiB by default): a run with hundreds of volumes must cap the list
// rather than have its workflow task fail, again and again, on the upsert. The run is cancelled once
// the attribute is set (backing up 500 volumes is not the point).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type WorkflowHandle } from '@temporalio/client';
import { DOSVOB_VOLUMES } from '../../common/search-attributes';
import { startHarness, type Harness } from '../support/harness';
import { assertEndsCancelled, assertNothingLeft } from '../support/run-checks';

const VOLUMES = 500;
const names = Array.from({ length: VOLUMES }, (_, i) => `archive-volume-${String(i).padStart(3, '0')}`);

type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;

const failedTasks = (history: History) =>
  (history.events ?? [])
    .filter((e) => e.workflowTaskFailedEventAttributes)
    .map((e) => e.workflowTaskFailedEventAttributes);

async function until(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((r) => setTimeout(r, 100));
}

describe('the DosvobVolumes search attribute', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ sim: { sshKeyListPerMinute: 100 } });
    for (const name of names) await h.sim.createVolume({ name, region: 'nyc3', sizeGigabytes: 1 });
  });
  after(async () => h?.close());

  it(`with ${VOLUMES} volumes: the first names and a count, and no failed workflow task`, async () => {
    const handle = await h.start();
    let listed: string[] | undefined;
    try {
      await until(async () => {
        listed = (await handle.describe()).typedSearchAttributes.get(DOSVOB_VOLUMES);
        return listed !== undefined || failedTasks(await handle.fetchHistory()).length > 0;
      });
      assert.deepEqual(failedTasks(await handle.fetchHistory()), [], 'no workflow task failed');
      await handle.cancel();
      await assertEndsCancelled(handle);
    } finally {
      await handle.terminate('test over').catch(() => undefined);
    }
    assert.ok(listed, 'the attribute was set');
    const more = /^\(\+(\d+) more\)$/.exec(listed[listed.length - 1] ?? '');
    assert.ok(more, `the last entry counts the rest: ${listed[listed.length - 1]}`);
    const shown = listed.slice(0, -1);
    assert.ok(shown.length >= 10, `some names are shown: ${shown.length}`);
    assert.deepEqual(shown, names.slice(0, shown.length), 'the first names, in order');
    assert.equal(shown.length + Number(more[1]), VOLUMES, 'names shown plus the count make every volume');
    assert.ok(Buffer.byteLength(JSON.stringify(listed)) <= 1024, 'well inside the 2 KiB limit');
    assert.deepEqual(failedTasks(await handle.fetchHistory()), [], 'no workflow task failed, to the end');
    assertNothingLeft(h.sim, names);
  });
});
