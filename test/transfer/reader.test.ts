// The stream reader's stall limit, on a clock of the test's own (node:test mock timers): only time spent waiting for
// bytes counts, every byte that arrives restarts it, and a read that needs more than the high-water mark still ends.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, test, type TestContext } from 'node:test';
import { TransferStalledError } from '../../activities/transfer/errors.js';
import { StreamReader } from '../../activities/transfer/reader.js';

/** Let stream events and promise continuations run (they are not timers, so the mock clock does not hold them). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

function mockClock(t: TestContext) {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  return (ms: number) => t.mock.timers.tick(ms);
}

void describe('StreamReader', () => {
  void test('a read that waits longer than the stall limit for a byte fails with TransferStalledError', async (t) => {
    const tick = mockClock(t);
    const stream = new PassThrough();
    const reader = new StreamReader(stream, { stallTimeoutMs: 1000 });
    let settled: unknown;
    reader.read(4).then(
      (b) => (settled = b),
      (err: unknown) => (settled = err),
    );
    const outcome = (): unknown => settled;
    await settle();
    tick(999);
    await settle();
    assert.equal(outcome(), undefined, 'still waiting before the limit');
    tick(1);
    await settle();
    const err = outcome();
    assert.ok(err instanceof TransferStalledError, String(err));
    assert.equal(err.retryable, true);
    // The reader stays failed: the session is given up.
    await assert.rejects(reader.read(1), TransferStalledError);
  });

  void test('every byte that arrives restarts the limit', async (t) => {
    const tick = mockClock(t);
    const stream = new PassThrough();
    const reader = new StreamReader(stream, { stallTimeoutMs: 1000 });
    const reading = reader.read(5);
    for (let i = 0; i < 4; i++) {
      await settle();
      tick(900);
      stream.write(Buffer.from([i]));
    }
    await settle();
    tick(900);
    stream.write(Buffer.from([4]));
    assert.deepEqual([...(await reading)], [0, 1, 2, 3, 4]);
  });

  void test('time the consumer spends elsewhere does not count, however long', async (t) => {
    const tick = mockClock(t);
    const stream = new PassThrough();
    const reader = new StreamReader(stream, { stallTimeoutMs: 1000 });
    stream.write(Buffer.alloc(8));
    await settle();
    tick(60_000); // e.g. a slow local disk between two reads; nothing was waiting
    assert.equal((await reader.read(8)).length, 8);
    const next = reader.read(1);
    await settle();
    stream.write(Buffer.from([7]));
    assert.deepEqual([...(await next)], [7]);
  });

  void test('a read larger than the high-water mark is not held back by the pause', async () => {
    const stream = new PassThrough();
    const reader = new StreamReader(stream, { highWater: 1024, stallTimeoutMs: 60_000 });
    const reading = reader.read(4096);
    for (let i = 0; i < 8; i++) {
      stream.write(Buffer.alloc(512, i));
      await settle();
    }
    const b = await reading;
    assert.equal(b.length, 4096);
    assert.equal(b[4095], 7);
  });
});
