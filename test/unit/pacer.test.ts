// The pacer's arithmetic, on an injected clock: no request is sent and no time passes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  Pacer,
  parseRateHeaders,
  parseRetryAfterMs,
  spacingMs,
  type PacerOptions,
  type RateObservation,
} from '../../activities/digitalocean/pacer';

const OPTS = { perMinute: 250, windowMs: 60_000, reserveFraction: 0.05 } as const;

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

/** Milliseconds to the microsecond: the slots are sums of floats. */
const round = (ms: number): number => Math.round(ms * 1000) / 1000;

function headers(o: RateObservation): Record<string, string> {
  return {
    'ratelimit-limit': String(o.limit),
    'ratelimit-remaining': String(o.remaining),
    'ratelimit-reset': String(o.resetAtMs / 1000),
  };
}

function pacer(c: { now: () => number }, extra: Partial<PacerOptions> = {}): Pacer {
  return new Pacer({ ...OPTS, now: c.now, sleep: () => Promise.resolve(), ...extra });
}

describe('pacer arithmetic', () => {
  it('parses the three headers and retry-after in seconds or as a date', () => {
    assert.deepEqual(
      parseRateHeaders({ 'ratelimit-limit': '5000', 'ratelimit-remaining': 4999, 'ratelimit-reset': '1700000000' }),
      {
        limit: 5000,
        remaining: 4999,
        resetAtMs: 1_700_000_000_000,
      },
    );
    assert.equal(parseRateHeaders({ 'ratelimit-limit': '5000' }), undefined);
    assert.equal(parseRetryAfterMs({ 'retry-after': '7' }, 0), 7000);
    assert.equal(parseRetryAfterMs({ 'retry-after': new Date(10_000).toUTCString() }, 4_000), 6_000);
    assert.equal(parseRetryAfterMs({}, 0), undefined);
  });

  it('spreads a large (hourly) budget over the time to the reset, less the reserve', () => {
    const now = 0;
    // 4,750 usable (5,000 less 5 %... capped at the minute's 250) over an hour.
    const gap = spacingMs({ limit: 5000, remaining: 5000, resetAtMs: 3_600_000 }, 0, now, OPTS);
    assert.equal(gap, 3_600_000 / (5000 - 250));
    // Half the hour gone, the same budget: twice as fast, but never faster than dosvob's own minute floor.
    assert.equal(spacingMs({ limit: 5000, remaining: 5000, resetAtMs: 1_800_000 }, 0, now, OPTS), 1_800_000 / 4750);
    assert.equal(spacingMs({ limit: 5000, remaining: 5000, resetAtMs: 1000 }, 0, now, OPTS), 60_000 / (250 - 13));
    // An hourly limit beyond sixty minutes of 250 is not DigitalOcean's: no floor from the assumed burst limit.
    const huge = { limit: 1e9, remaining: 1e9, resetAtMs: 3_600_000 };
    assert.equal(spacingMs(huge, 0, now, OPTS), 3_600_000 / (1e9 - 250));
  });

  it('spreads a small budget (at most a minute worth) over the minute window', () => {
    const seen = { limit: 5000, remaining: 53, resetAtMs: 3_600_000 };
    assert.equal(spacingMs(seen, 0, 0, OPTS), 60_000 / (53 - 13));
    // Requests already sent and not yet counted come off the budget.
    assert.equal(spacingMs(seen, 20, 0, OPTS), 60_000 / (33 - 13));
    // dosvob's own requests in the window come back to it as they expire: 20 of them, 60 a minute in all.
    assert.equal(spacingMs(seen, 0, 0, OPTS, 20), 60_000 / (53 + 20 - 13));
    // Nothing usable: wait a whole window, by when the oldest requests of the minute have expired.
    assert.equal(spacingMs({ ...seen, remaining: 5 }, 0, 0, OPTS), 60_000);
    assert.equal(spacingMs({ ...seen, remaining: 0 }, 3, 0, OPTS), 60_000);
  });

  it('hands out slots one spacing apart, in order, so concurrent callers queue', () => {
    const c = clock();
    const p = pacer(c, { perMinute: 60 });
    // No answer seen yet: nothing to pace by.
    assert.equal(p.reserve(), 0);
    p.observe(200, headers({ limit: 5000, remaining: 33, resetAtMs: c.now() + 3_600_000 }));
    // reserve 3 of 60; 33 seen plus dosvob's one in the window: 31 a minute. Requests not yet answered are both
    // off the budget and dosvob's own in the window: the spacing stays.
    const gap = 60_000 / 31;
    const waits = [p.reserve(), p.reserve(), p.reserve()];
    assert.deepEqual(waits.map(round), [0, gap, 2 * gap].map(round));
    c.advance(1_000);
    assert.equal(round(p.reserve()), round(3 * gap - 1_000));
    // A thinner budget seen in an answer widens the next gap: 10 seen, 2 answered of 5 in the window.
    p.observe(200, headers({ limit: 5000, remaining: 10, resetAtMs: c.now() + 3_600_000 }));
    p.observe(200, headers({ limit: 5000, remaining: 10, resetAtMs: c.now() + 3_600_000 }));
    const before = p.state().nextSlotAt;
    p.reserve();
    assert.equal(round(p.state().nextSlotAt - before), round(60_000 / (10 - 2 + 5 - 3)));
  });

  it('an answer to an older request than the last seen does not pace by its stale budget', () => {
    const c = clock();
    const p = pacer(c, { perMinute: 60 });
    const remaining = () => p.state().seen?.remaining;
    // Sent at +50 s, answered now: the freshest budget so far.
    p.observe(200, headers({ limit: 5000, remaining: 5, resetAtMs: c.now() + 3_600_000 }), c.now() + 50_000);
    // Sent at 0 and answered only now (a slow snapshot's POST): the budget it carries is a minute old.
    p.observe(200, headers({ limit: 5000, remaining: 50, resetAtMs: c.now() + 3_600_000 }), c.now());
    assert.equal(remaining(), 5, 'the stale, larger budget is not taken');
    p.observe(200, headers({ limit: 5000, remaining: 40, resetAtMs: c.now() + 3_600_000 }), c.now() + 60_000);
    assert.equal(remaining(), 40, 'a fresher answer is');
    p.observe(200, headers({ limit: 5000, remaining: 30, resetAtMs: c.now() + 3_600_000 }));
    assert.equal(remaining(), 30, 'an answer whose send time is unknown is taken as it comes');
  });

  it('a 429 stops every caller until its retry-after has passed', () => {
    const c = clock();
    const p = pacer(c);
    p.reserve();
    p.observe(429, { ...headers({ limit: 5000, remaining: 0, resetAtMs: c.now() + 3_600_000 }), 'retry-after': '12' });
    assert.equal(p.reserve(), 12_000);
    c.advance(12_000);
    // After the block: the window rule (nothing usable) still spaces the next.
    assert.equal(p.reserve(), 60_000);
  });

  it('a 429 without retry-after waits for the reset', () => {
    const c = clock(0);
    const p = pacer(c);
    p.reserve();
    p.observe(429, headers({ limit: 5000, remaining: 0, resetAtMs: 30_000 }));
    assert.equal(p.reserve(), 30_000);
  });

  it('an abandoned request frees its place in the count', () => {
    const c = clock(0);
    const p = pacer(c, { perMinute: 60 });
    p.reserve();
    p.observe(200, headers({ limit: 5000, remaining: 13, resetAtMs: 3_600_000 }));
    p.reserve();
    assert.equal(p.state().inFlight, 1);
    p.abandon();
    assert.equal(p.state().inFlight, 0);
    // 13 seen, 2 of dosvob's own in the window, 3 reserve: 12 a minute (11 had the abandoned one stayed in flight).
    const first = p.reserve();
    const second = p.reserve();
    assert.equal(round(second - first), round(60_000 / 12));
  });
});
