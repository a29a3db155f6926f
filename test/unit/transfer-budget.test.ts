// The transfer's schedule-to-close bound: the data once at the slow rate, plus a floor per attempt.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { transferBudgetMs } from '../../workflows/transfer-budget';
import { DEFAULT_TIMINGS } from '../../workflows/types';

const GiB = 2 ** 30;
const hours = (ms: number) => ms / 3600_000;

void test('the default bound grows with the volume, from under 2 hours to days, never the 24 h x attempts of before', () => {
  const small = transferBudgetMs(DEFAULT_TIMINGS, 1 * GiB);
  const large = transferBudgetMs(DEFAULT_TIMINGS, 1024 * GiB);
  // 10 attempts x 10 min, + 1 GiB at 4 MiB/s (256 s)
  assert.equal(small, 10 * 600_000 + 256_000);
  assert.ok(hours(small) < 2, `${hours(small)} h`);
  assert.ok(hours(large) > 72 && hours(large) < 75, `${hours(large)} h`);
  assert.ok(large < DEFAULT_TIMINGS.transferMaximumAttempts * DEFAULT_TIMINGS.transferTimeoutMs);
});

void test('every input counts', () => {
  const t = {
    ...DEFAULT_TIMINGS,
    transferMaximumAttempts: 2,
    transferAttemptFloorMs: 1000,
    transferSlowBytesPerSecond: 1000,
  };
  assert.equal(transferBudgetMs(t, 5000), 2 * 1000 + 5000);
  assert.equal(transferBudgetMs(t, 0), 2000);
});
