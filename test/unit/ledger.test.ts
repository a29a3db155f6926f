// The run's cost comes from the ledger: each resource's life from when its create went out to when its delete was
// answered, as the activities saw them, not the workflow's bracketing of the activities (which adds their scheduling
// at both ends).
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { Ledger } from '../../workflows/ledger';
import { deletionOf } from '../../workflows/deletion';

describe('ledger resource-seconds', () => {
  beforeEach(() => mock.timers.enable({ apis: ['Date'], now: 1_000_000 }));
  afterEach(() => mock.timers.reset());

  it('bills from the create request and to the delete answer the activities report', () => {
    const ledger = new Ledger();
    const key = ledger.record({ kind: 'volume', name: 'copy', region: 'nyc3' }, 100); // at 1,000,000
    ledger.created(key, 'vol-1', undefined, 1_000_400); // the activity's POST went out 0.4 s later
    mock.timers.tick(10_000);
    ledger.deleted(key, deletionOf({ outcome: 'deleted', answeredAtMs: 1_009_500 }, Date.now()).answeredAtMs);
    assert.equal(ledger.resourceSeconds(Date.now()).volumeGibSeconds, 100 * 9.1);
  });

  it("falls back to the workflow's own times when an activity does not say (an older worker, or a retry that found it)", () => {
    const ledger = new Ledger();
    const key = ledger.record({ kind: 'droplet', name: 'd', region: 'nyc3' }, 0);
    ledger.created(key, '7');
    mock.timers.tick(5_000);
    ledger.deleted(key, deletionOf('deleted', Date.now()).answeredAtMs);
    assert.equal(ledger.resourceSeconds(Date.now()).dropletSeconds, 5);
  });

  it("never counts less than the workflow's bracket allows: a worker clock behind or ahead is clamped", () => {
    const ledger = new Ledger();
    const key = ledger.record({ kind: 'snapshot', name: 's' }, 10);
    ledger.created(key, 's-1', 2, 999_000); // a worker clock behind the workflow's: ignored
    mock.timers.tick(3_000);
    const gone = deletionOf({ outcome: 'absent', answeredAtMs: 1_010_000 }, Date.now()); // ahead: clamped to now
    assert.deepEqual(gone, { outcome: 'absent', answeredAtMs: 1_003_000 });
    ledger.deleted(key, gone.answeredAtMs);
    assert.equal(ledger.resourceSeconds(Date.now()).snapshotGibSeconds, 2 * 3);
  });

  it('a resource whose id was never learned costs nothing (it was never created)', () => {
    const ledger = new Ledger();
    ledger.record({ kind: 'volume', name: 'never', region: 'nyc3' }, 50);
    mock.timers.tick(60_000);
    assert.equal(ledger.resourceSeconds(Date.now()).volumeGibSeconds, 0);
  });
});
