import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import {
  applyRetention,
  DEFAULT_RETENTION_POLICY,
  describePolicy,
  formatRetentionDuration,
  isoWeek,
  parseRetentionDuration,
  periodBucket,
  RetentionPolicyError,
  type ApplyRetentionOptions,
  type RetentionPolicy,
  type RetentionResult,
  type RetentionRule,
  type RetentionVersion,
} from '../../common/retention';
import {
  keepSchema,
  resolveRetentionPolicy,
  retentionConfigShape,
  snapshotRetentionSchema,
} from '../../common/retention-config';
import { TWELVE_SYNCS, TWELVE_SYNCS_KEEP, TWELVE_SYNCS_KEPT } from '../support/retention-timeline';

type Version = RetentionVersion;

/** Versions named by their time (`11-30T04`), so a failing assertion reads as a timeline. */
function versions(...times: string[]): Version[] {
  return times.map((time) => ({ id: time, time }));
}

/** id → reasons' texts, for kept versions only, newest first. */
function kept(result: RetentionResult): Record<string, string[]> {
  return Object.fromEntries(
    result.decisions.filter((d) => d.keep).map((d) => [d.version.id, d.reasons.map((r) => r.text)]),
  );
}

function keptIds(list: readonly Version[], policy: RetentionPolicy, options?: ApplyRetentionOptions): string[] {
  return applyRetention(list, policy, options).keep.map((v) => v.id);
}

const rules = (...r: RetentionRule[]): RetentionPolicy => ({ rules: r });
const last = (count: number): RetentionRule => ({ kind: 'last', count });
const daily = (count: number | 'unlimited'): RetentionRule => ({ kind: 'period', period: 'daily', count });
const weekly = (count: number): RetentionRule => ({ kind: 'period', period: 'weekly', count });
const within = (text: string): RetentionRule => ({ kind: 'within', duration: parseRetentionDuration(text) });

/** Daily at `hour` UTC from `from` for `days` days (ISO dates). */
function dailyTimeline(from: string, days: number, hour = '04:00'): string[] {
  const start = Date.parse(`${from}T${hour}:00Z`);
  return Array.from({ length: days }, (_, i) => new Date(start + i * 86_400_000).toISOString().replace('.000Z', 'Z'));
}

/** A zod-issue list as config.ts's formatIssues prints it, for "the message names the field" checks. */
function issues(schema: z.ZodType, input: unknown): string {
  const parsed = schema.safeParse(input);
  assert.equal(parsed.success, false, 'expected a validation error');
  return parsed.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n');
}

describe('retention durations (restic syntax, plus weeks)', () => {
  it('parses y m w d h in any order and prints them back', () => {
    assert.deepEqual(parseRetentionDuration('1y2m'), { years: 1, months: 2, weeks: 0, days: 0, hours: 0 });
    assert.deepEqual(parseRetentionDuration('3d1w'), { years: 0, months: 0, weeks: 1, days: 3, hours: 0 });
    assert.equal(formatRetentionDuration(parseRetentionDuration('12h2d')), '2d12h');
  });

  it('refuses what is not a duration, a unit twice, and zero', () => {
    for (const bad of ['', '2', 'd', '2x', '1 d', '1D', '-1d', '1.5d']) {
      assert.throws(() => parseRetentionDuration(bad), /not a duration/, bad);
    }
    assert.throws(() => parseRetentionDuration('1d2d'), /unit "d" twice/);
    assert.throws(() => parseRetentionDuration('0d0h'), /no time at all/);
  });
});

describe('retention periods', () => {
  it('labels hours, days, ISO weeks, months and years', () => {
    const t = Date.parse('2026-11-30T14:05:00Z');
    assert.equal(periodBucket('hourly', t), '2026-11-30 14:00');
    assert.equal(periodBucket('daily', t), '2026-11-30');
    assert.equal(periodBucket('weekly', t), '2026-W49');
    assert.equal(periodBucket('monthly', t), '2026-11');
    assert.equal(periodBucket('yearly', t), '2026');
  });

  it('uses the ISO week-year across a year change', () => {
    // 2026 starts on a Thursday, so it has a week 53 that runs into 2027; 30 December 2024 is in 2025's week 1.
    assert.deepEqual(isoWeek(2027, 1, 3), { year: 2026, week: 53 });
    assert.deepEqual(isoWeek(2027, 1, 4), { year: 2027, week: 1 });
    assert.deepEqual(isoWeek(2024, 12, 29), { year: 2024, week: 52 });
    assert.deepEqual(isoWeek(2024, 12, 30), { year: 2025, week: 1 });
    assert.deepEqual(isoWeek(2021, 1, 3), { year: 2020, week: 53 });
  });
});

describe('retention rules, each alone', () => {
  const list = versions(...dailyTimeline('2026-11-01', 10));

  it('last N keeps the N newest, and all of them when there are fewer', () => {
    const r = applyRetention(list, rules(last(3)));
    assert.deepEqual(kept(r), {
      '2026-11-10T04:00:00Z': ['last 1', 'newest'],
      '2026-11-09T04:00:00Z': ['last 2'],
      '2026-11-08T04:00:00Z': ['last 3'],
    });
    assert.equal(r.remove.length, 7);
    assert.equal(keptIds(list, rules(last(50))).length, 10);
  });

  it('hourly keeps the newest version of each hour', () => {
    const r = applyRetention(
      versions('2026-11-30T10:05:00Z', '2026-11-30T10:50:00Z', '2026-11-30T11:10:00Z', '2026-11-30T12:59:59Z'),
      rules({ kind: 'period', period: 'hourly', count: 2 }),
    );
    assert.deepEqual(kept(r), {
      '2026-11-30T12:59:59Z': ['hourly 2026-11-30 12:00', 'newest'],
      '2026-11-30T11:10:00Z': ['hourly 2026-11-30 11:00'],
    });
  });

  it('daily keeps the newest of each day: of three in one day, the last one', () => {
    const r = applyRetention(
      versions('2026-11-29T04:00:00Z', '2026-11-30T00:00:00Z', '2026-11-30T12:00:00Z', '2026-11-30T23:59:59Z'),
      rules(daily(1)),
    );
    assert.deepEqual(kept(r), { '2026-11-30T23:59:59Z': ['daily 2026-11-30', 'newest'] });
  });

  it('counts only periods that have a version: a gap of days costs no slot', () => {
    const ids = keptIds(
      versions('2026-11-01T04:00:00Z', '2026-11-10T04:00:00Z', '2026-11-20T04:00:00Z'),
      rules(daily(2)),
    );
    assert.deepEqual(ids, ['2026-11-20T04:00:00Z', '2026-11-10T04:00:00Z']);
  });

  it('a rule with slots left at the end keeps the oldest version too (restic >= 0.16.0)', () => {
    // Three days, two versions on the first: daily 5 keeps one per day, and with slots left the oldest as well.
    const r = applyRetention(
      versions('2026-11-01T04:00:00Z', '2026-11-01T16:00:00Z', '2026-11-02T04:00:00Z', '2026-11-03T04:00:00Z'),
      rules(daily(5)),
    );
    assert.deepEqual(kept(r), {
      '2026-11-03T04:00:00Z': ['daily 2026-11-03', 'newest'],
      '2026-11-02T04:00:00Z': ['daily 2026-11-02'],
      '2026-11-01T16:00:00Z': ['daily 2026-11-01'],
      '2026-11-01T04:00:00Z': ['oldest daily 2026-11-01'],
    });
    // No slot left: the oldest goes.
    assert.deepEqual(
      keptIds(versions('2026-11-01T04:00:00Z', '2026-11-01T16:00:00Z', '2026-11-02T04:00:00Z'), rules(daily(2))),
      ['2026-11-02T04:00:00Z', '2026-11-01T16:00:00Z'],
    );
  });

  it('weekly uses ISO weeks across a year change', () => {
    const r = applyRetention(
      versions(
        '2026-12-27T04:00:00Z', // Sunday, 2026-W52
        '2026-12-31T04:00:00Z', // 2026-W53
        '2027-01-02T04:00:00Z', // Saturday, still 2026-W53
        '2027-01-04T04:00:00Z', // Monday, 2027-W01
      ),
      rules(weekly(3)),
    );
    assert.deepEqual(kept(r), {
      '2027-01-04T04:00:00Z': ['weekly 2027-W01', 'newest'],
      '2027-01-02T04:00:00Z': ['weekly 2026-W53'],
      '2026-12-27T04:00:00Z': ['weekly 2026-W52'],
    });
  });

  it('monthly and yearly keep the newest of each month and year', () => {
    const list2 = versions(
      '2024-06-01T00:00:00Z',
      '2025-02-10T00:00:00Z',
      '2025-12-31T23:00:00Z',
      '2026-01-01T01:00:00Z',
    );
    assert.deepEqual(kept(applyRetention(list2, rules({ kind: 'period', period: 'monthly', count: 2 }))), {
      '2026-01-01T01:00:00Z': ['monthly 2026-01', 'newest'],
      '2025-12-31T23:00:00Z': ['monthly 2025-12'],
    });
    assert.deepEqual(kept(applyRetention(list2, rules({ kind: 'period', period: 'yearly', count: 2 }))), {
      '2026-01-01T01:00:00Z': ['yearly 2026', 'newest'],
      '2025-12-31T23:00:00Z': ['yearly 2025'],
    });
  });

  it('"unlimited" keeps the newest of every period, and the oldest', () => {
    const ids = keptIds(
      versions('2026-11-01T04:00:00Z', '2026-11-01T16:00:00Z', '2026-11-02T03:00:00Z', '2026-11-02T04:00:00Z'),
      rules(daily('unlimited')),
    );
    assert.deepEqual(ids, ['2026-11-02T04:00:00Z', '2026-11-01T16:00:00Z', '2026-11-01T04:00:00Z']);
  });

  it('within keeps everything newer than the duration before the newest version, not before now', () => {
    // The backups stalled on 20 January; retention runs months later and still keeps the last 7 days of history.
    const stalled = versions(...dailyTimeline('2026-01-01', 20));
    const r = applyRetention(stalled, rules(within('7d')), { now: '2026-06-01T00:00:00Z' });
    assert.deepEqual(
      r.keep.map((v) => v.id),
      dailyTimeline('2026-01-14', 7).reverse(),
      'exactly 7 days before the newest is outside (strictly newer, as restic)',
    );
    assert.ok(r.decisions[1]!.reasons.some((x) => x.text === 'within 7d'));
  });

  it('within steps months as Go AddDate does (31 March - 1 month = 3 March)', () => {
    const ids = keptIds(
      versions('2026-03-02T12:00:00Z', '2026-03-03T12:00:01Z', '2026-03-31T12:00:00Z'),
      rules(within('1m')),
    );
    assert.deepEqual(ids, ['2026-03-31T12:00:00Z', '2026-03-03T12:00:01Z']);
  });

  it('within-daily keeps the newest per day for the days within the duration of the newest version', () => {
    const list2 = versions(
      ...dailyTimeline('2026-10-20', 42), // 20 October … 30 November, 04:00
      '2026-11-29T18:00:00Z',
    );
    const r = applyRetention(
      list2,
      rules({ kind: 'within-period', period: 'daily', duration: parseRetentionDuration('1m') }),
    );
    const ids = r.keep.map((v) => v.id);
    // 30 November 04:00 minus one month = 30 October 04:00; strictly newer: 31 October … 30 November, one per day.
    assert.equal(ids.length, 31);
    assert.equal(ids.at(-1), '2026-10-31T04:00:00Z');
    assert.ok(ids.includes('2026-11-29T18:00:00Z') && !ids.includes('2026-11-29T04:00:00Z'));
    assert.deepEqual(kept(r)['2026-11-29T18:00:00Z'], ['within-daily 1m 2026-11-29']);
  });

  it("a future-dated version (a wrong clock) is not the newest that 'within' measures from when now is given", () => {
    const list2 = versions('2026-11-20T04:00:00Z', '2026-11-29T04:00:00Z', '2030-01-01T00:00:00Z');
    const policy = rules(within('2d'));
    assert.deepEqual(keptIds(list2, policy), ['2030-01-01T00:00:00Z']);
    assert.deepEqual(keptIds(list2, policy, { now: '2026-11-30T00:00:00Z' }), [
      '2030-01-01T00:00:00Z',
      '2026-11-29T04:00:00Z',
    ]);
  });
});

describe('retention rules combined', () => {
  it("matches restic's documented example: a backup every Sunday for 12 weeks, keep-daily 4", () => {
    const sundays = Array.from({ length: 12 }, (_, i) =>
      new Date(Date.parse('2019-09-01T11:00:00Z') + i * 7 * 86_400_000).toISOString().replace('.000Z', 'Z'),
    );
    assert.deepEqual(keptIds(versions(...sundays), rules(daily(4))), sundays.slice(8).reverse());
  });

  it('a version kept by several rules lists every reason; any one rule keeps it', () => {
    const r = applyRetention(
      versions(...dailyTimeline('2026-11-20', 11)),
      rules(last(2), daily(3), weekly(2), within('1d')),
    );
    assert.deepEqual(kept(r), {
      '2026-11-30T04:00:00Z': ['last 1', 'daily 2026-11-30', 'weekly 2026-W49', 'within 1d', 'newest'],
      '2026-11-29T04:00:00Z': ['last 2', 'daily 2026-11-29', 'weekly 2026-W48'],
      '2026-11-28T04:00:00Z': ['daily 2026-11-28'],
    });
  });

  it('versions with the same time are ordered by id, whatever order they are listed in', () => {
    const a = { id: 'a', time: '2026-11-30T04:00:00Z' };
    const b = { id: 'b', time: '2026-11-30T04:00:00Z' };
    assert.deepEqual(keptIds([a, b], rules(last(1))), ['b']);
    assert.deepEqual(keptIds([b, a], rules(last(1))), ['b']);
    assert.deepEqual(keptIds([a, b], rules(daily(5))), ['b', 'a'], 'the oldest slot takes the other');
  });

  it('keeps nothing and removes nothing when there are no versions', () => {
    assert.deepEqual(applyRetention([], DEFAULT_RETENTION_POLICY), { decisions: [], keep: [], remove: [] });
  });
});

describe('retention in a time zone', () => {
  it('cuts days at local midnight, a 25-hour day when Berlin leaves summer time being one day', () => {
    // 25 October 2026, 03:00 CEST -> 02:00 CET.
    const list = versions(
      '2026-10-24T21:30:00Z', // 24 Oct 23:30 CEST
      '2026-10-24T22:30:00Z', // 25 Oct 00:30 CEST
      '2026-10-25T22:30:00Z', // 25 Oct 23:30 CET (UTC: 25 Oct)
      '2026-10-25T23:30:00Z', // 26 Oct 00:30 CET
    );
    const berlin = applyRetention(list, { rules: [daily(10)], timeZone: 'Europe/Berlin' });
    assert.deepEqual(kept(berlin), {
      '2026-10-25T23:30:00Z': ['daily 2026-10-26', 'newest'],
      '2026-10-25T22:30:00Z': ['daily 2026-10-25'],
      '2026-10-24T21:30:00Z': ['daily 2026-10-24'],
    });
    assert.equal(berlin.remove[0]!.id, '2026-10-24T22:30:00Z', 'the first of the long day goes');
    const utc = applyRetention(list, rules(daily(10)));
    assert.deepEqual(
      utc.keep.map((v) => v.id),
      ['2026-10-25T23:30:00Z', '2026-10-24T22:30:00Z', '2026-10-24T21:30:00Z'],
      'in UTC the days fall elsewhere',
    );
  });

  it('the repeated hour when clocks go back is one hourly period (local hours, as restic)', () => {
    const r = applyRetention(
      versions('2026-10-25T00:10:00Z', '2026-10-25T01:10:00Z'), // 02:10 CEST, then 02:10 CET
      { rules: [{ kind: 'period', period: 'hourly', count: 1 }], timeZone: 'Europe/Berlin' },
    );
    assert.deepEqual(kept(r), { '2026-10-25T01:10:00Z': ['hourly 2026-10-25 02:00', 'newest'] });
  });

  it('within 1d over the change keeps the same wall-clock time a day earlier: 25 hours', () => {
    const list = versions('2026-10-24T11:30:00Z', '2026-10-25T12:00:00Z'); // 13:30 CEST; 13:00 CET
    assert.equal(keptIds(list, { rules: [within('1d')], timeZone: 'Europe/Berlin' }).length, 2);
    assert.equal(keptIds(list, rules(within('1d'))).length, 1);
    assert.equal(keptIds(list, { rules: [within('24h')], timeZone: 'Europe/Berlin' }).length, 1, 'hours are elapsed');
  });

  it('puts weeks and months in the zone too', () => {
    // Sunday 2026-11-29 23:30 UTC is Monday 30 November 08:30 in Tokyo.
    const t = Date.parse('2026-11-29T23:30:00Z');
    assert.equal(periodBucket('weekly', t, 'Asia/Tokyo'), '2026-W49');
    assert.equal(periodBucket('weekly', t), '2026-W48');
    assert.equal(periodBucket('monthly', Date.parse('2026-11-30T23:30:00Z'), 'Asia/Tokyo'), '2026-12');
  });
});

describe('retention safety', () => {
  it('always keeps the newest version', () => {
    const r = applyRetention(versions('2026-01-01T00:00:00Z', '2026-11-30T04:00:00Z'), rules(within('1h')));
    assert.deepEqual(kept(r), { '2026-11-30T04:00:00Z': ['within 1h', 'newest'] });
    // Suspect and kept by no rule: still kept, it is the image itself.
    const alone = applyRetention([{ id: 'x', time: '2026-11-30T04:00:00Z', suspect: true }], rules(last(1)));
    assert.deepEqual(kept(alone), { x: ['newest'] });
  });

  it('keeps a protected version whatever the rules say, and protecting one changes nothing else', () => {
    const list = versions(...dailyTimeline('2026-11-01', 30));
    const policy = rules(last(2), weekly(2));
    const before = keptIds(list, policy);
    const withProtected = list.map((v) =>
      v.id === '2026-11-03T04:00:00Z' || v.id === '2026-11-30T04:00:00Z' ? { ...v, protected: true } : v,
    );
    const r = applyRetention(withProtected, policy);
    assert.deepEqual(kept(r)['2026-11-03T04:00:00Z'], ['protected']);
    assert.deepEqual(kept(r)['2026-11-30T04:00:00Z'], ['last 1', 'weekly 2026-W49', 'newest', 'protected']);
    assert.deepEqual(
      r.keep.map((v) => v.id),
      [...before, '2026-11-03T04:00:00Z'],
    );
  });

  it('suspect versions fill no slot: each day keeps its newest passing version, and the newest passing is kept', () => {
    // Each evening's version failed its check; the morning's passed.
    const list: Version[] = dailyTimeline('2026-11-24', 7).flatMap((morning) => [
      { id: morning, time: morning },
      { id: morning.replace('04:00', '20:00'), time: morning.replace('04:00', '20:00'), suspect: true },
    ]);
    const r = applyRetention(list, rules(last(2), daily(3)));
    assert.deepEqual(kept(r), {
      '2026-11-30T20:00:00Z': ['newest'],
      '2026-11-30T04:00:00Z': ['last 1', 'daily 2026-11-30', 'newest passing'],
      '2026-11-29T04:00:00Z': ['last 2', 'daily 2026-11-29'],
      '2026-11-28T04:00:00Z': ['daily 2026-11-28'],
    });
  });

  it('a run of bad versions never prunes the last good one', () => {
    const list: Version[] = [
      { id: 'good', time: '2026-11-01T04:00:00Z' },
      ...dailyTimeline('2026-11-02', 29).map((time) => ({ id: time, time, suspect: true })),
    ];
    const r = applyRetention(list, DEFAULT_RETENTION_POLICY);
    assert.deepEqual(kept(r), {
      '2026-11-30T04:00:00Z': ['newest'],
      good: ['last 1', 'daily 2026-11-01', 'weekly 2026-W44', 'monthly 2026-11', 'newest passing'],
    });
  });

  it('the oldest slot goes to the oldest passing version', () => {
    const list: Version[] = [
      { id: 'old-bad', time: '2026-11-01T04:00:00Z', suspect: true },
      { id: 'old-good', time: '2026-11-02T04:00:00Z' },
      { id: 'new', time: '2026-11-02T05:00:00Z' },
    ];
    assert.deepEqual(kept(applyRetention(list, rules(daily(5)))), {
      new: ['daily 2026-11-02', 'newest'],
      'old-good': ['oldest daily 2026-11-02'],
    });
  });

  it('within keeps suspect versions too (it keeps everything in its window)', () => {
    const list: Version[] = [
      { id: 'bad', time: '2026-11-29T04:00:00Z', suspect: true },
      { id: 'good', time: '2026-11-30T04:00:00Z' },
    ];
    assert.deepEqual(kept(applyRetention(list, rules(within('2d')))), {
      good: ['within 2d', 'newest'],
      bad: ['within 2d'],
    });
  });
});

describe('retention refuses what it cannot honour, naming the field', () => {
  const list = versions('2026-11-30T04:00:00Z');

  it('refuses an empty policy', () => {
    assert.throws(
      () => applyRetention(list, rules()),
      (err: unknown) => {
        assert.ok(err instanceof RetentionPolicyError);
        assert.match(err.message, /policy is empty/);
        return true;
      },
    );
  });

  it('refuses bad counts, durations, periods and zones', () => {
    assert.throws(() => applyRetention(list, rules(daily(0))), /rules\[0\]\.count/);
    assert.throws(() => applyRetention(list, rules(last(1), { kind: 'last', count: 1.5 })), /rules\[1\]\.count/);
    assert.throws(
      () =>
        applyRetention(list, rules({ kind: 'within', duration: { years: 0, months: 0, weeks: 0, days: 0, hours: 0 } })),
      /rules\[0\]\.duration/,
    );
    assert.throws(
      () => applyRetention(list, rules({ kind: 'period', period: 'fortnightly' as 'daily', count: 1 })),
      /rules\[0\]\.period/,
    );
    assert.throws(
      () => applyRetention(list, { rules: [last(1)], timeZone: 'Mars/Olympus' }),
      /timeZone: "Mars\/Olympus"/,
    );
  });

  it('refuses duplicate ids and times without a zone', () => {
    assert.throws(() => applyRetention([...list, ...list], rules(last(1))), /versions\[1\]\.id/);
    assert.throws(() => applyRetention([{ id: 'a', time: '2026-11-30 04:00' }], rules(last(1))), /versions\[0\]\.time/);
    assert.throws(() => applyRetention([{ id: 'a', time: '2026-11-30T04:00:00' }], rules(last(1))), /not an ISO time/);
    assert.throws(() => applyRetention(list, rules(last(1)), { now: 'yesterday' }), /now:/);
  });
});

describe('conf.json keep', () => {
  it('maps restic-style options onto rules, 0 meaning unset', () => {
    const policy = keepSchema.parse({ last: 2, daily: 0, weekly: 'unlimited', within: '2d', within_daily: '1m' });
    assert.deepEqual(policy.rules, [
      { kind: 'last', count: 2 },
      { kind: 'period', period: 'weekly', count: 'unlimited' },
      { kind: 'within', duration: parseRetentionDuration('2d') },
      { kind: 'within-period', period: 'daily', duration: parseRetentionDuration('1m') },
    ]);
    assert.equal(describePolicy(policy), 'last 2, weekly unlimited, within 2d, within-daily 1m');
    assert.equal(
      describePolicy(keepSchema.parse({ daily: 7, time_zone: 'Europe/Berlin' })),
      'daily 7 (periods in Europe/Berlin)',
    );
  });

  it('describes the default: last 6, daily 7, weekly 4, monthly 6', () => {
    assert.equal(describePolicy(resolveRetentionPolicy({})), 'last 6, daily 7, weekly 4, monthly 6');
  });

  it('refuses a policy that keeps nothing', () => {
    assert.match(issues(keepSchema, {}), /^: keeps nothing/);
    assert.match(issues(keepSchema, { last: 0, daily: 0 }), /keeps nothing/);
    assert.match(issues(z.object(retentionConfigShape), { keep: { daily: 0 } }), /^keep: keeps nothing/);
  });

  it('names every bad field', () => {
    const config = z.object(retentionConfigShape).strict();
    const message = issues(config, {
      keep: { daily: -1, weekly: 'lots', within: '2 days', within_weekly: '1d1d', time_zone: 'Nowhere', extra: 1 },
    });
    for (const field of ['keep.daily', 'keep.weekly', 'keep.within', 'keep.within_weekly', 'keep.time_zone']) {
      assert.match(message, new RegExp(`^${field.replace('.', '\\.')}: `, 'm'), `names ${field}`);
    }
    assert.match(message, /extra/);
    assert.match(message, /keep\.within: "2 days" is not a duration/);
  });
});

describe("conf.json snapshot_retention (the original dosvob's list)", () => {
  it('maps {"last": N} and {"frequency": "1 day", "duration": "1 month"} (= keep last N, within_daily 1m)', () => {
    const policy = snapshotRetentionSchema.parse([
      { last: 3 },
      { frequency: '1 day', duration: '1 month' },
      { frequency: '1 hour', duration: '2 days' },
      { frequency: '1 week', duration: '1 year' },
    ]);
    assert.equal(describePolicy(policy), 'last 3, within-daily 1m, within-hourly 2d, within-weekly 1y');
    const list = versions(...dailyTimeline('2026-09-01', 91), '2026-11-30T05:00:00Z');
    const same = keepSchema.parse({ last: 3, within_hourly: '2d', within_daily: '1m', within_weekly: '1y' });
    assert.deepEqual(keptIds(list, policy), keptIds(list, same));
  });

  it("accepts the original's unit spellings", () => {
    const policy = snapshotRetentionSchema.parse([
      { frequency: '1 hr', duration: '36 h' },
      { frequency: '1 Days', duration: '2 weeks' },
      { frequency: '1 mo', duration: '1 yr' },
      { frequency: '1 year', duration: '10 years' },
    ]);
    assert.equal(describePolicy(policy), 'within-hourly 36h, within-daily 2w, within-monthly 1y, within-yearly 10y');
  });

  it('refuses a frequency other than one unit, saying what would work', () => {
    const message = issues(z.object(retentionConfigShape), {
      snapshot_retention: [{ last: 1 }, { frequency: '2 days', duration: '1 month' }],
    });
    assert.match(message, /^snapshot_retention\.1\.frequency: "2 days" is not supported/);
    assert.match(message, /use "1 day" \(keeps more\) or "1 week" \(keeps fewer\)/);
    assert.match(issues(snapshotRetentionSchema, [{ frequency: '3 years', duration: '9 years' }]), /use "1 year"$/);
  });

  it('names the bad entry and field', () => {
    const config = z.object(retentionConfigShape);
    const message = issues(config, {
      snapshot_retention: [
        { last: 0 },
        { frequency: '1 fortnight', duration: '1 month' },
        { frequency: '1 day', duration: 'forever' },
        { frequency: '1 day' },
        { last: 2, frequency: '1 day', duration: '1 month' },
        { keep: 2 },
      ],
    });
    assert.match(message, /^snapshot_retention\.0\.last: /m);
    assert.match(message, /^snapshot_retention\.1\.frequency: "1 fortnight" is not a count and a unit/m);
    assert.match(message, /^snapshot_retention\.2\.duration: "forever"/m);
    assert.match(message, /^snapshot_retention\.3: needs "last", or both "frequency" and "duration"/m);
    assert.match(message, /^snapshot_retention\.4: give either "last"/m);
    assert.match(message, /^snapshot_retention\.5: .*keep/m);
    assert.match(issues(snapshotRetentionSchema, []), /at least one rule/);
  });

  it('is refused together with keep', () => {
    const parsed = z.object(retentionConfigShape).parse({ keep: { last: 1 }, snapshot_retention: [{ last: 1 }] });
    assert.throws(() => resolveRetentionPolicy(parsed), /keep, snapshot_retention: set one of them, not both/);
    assert.deepEqual(resolveRetentionPolicy({ snapshot_retention: parsed.snapshot_retention }).rules, [last(1)]);
  });
});

describe('retention timelines', () => {
  it('issue 10: a volume synced 12 times keeps exactly syncs 12, 11, 10, 9, 6, 4, 2, 1 (last 3, daily 3, weekly 3, monthly 4)', () => {
    const list = TWELVE_SYNCS.map((time, i) => ({ id: String(i + 1), time }));
    const r = applyRetention(list, keepSchema.parse(TWELVE_SYNCS_KEEP));
    assert.deepEqual(kept(r), Object.fromEntries(Object.entries(TWELVE_SYNCS_KEPT).map(([n, why]) => [n, [...why]])));
    assert.deepEqual(
      r.remove.map((v) => v.id),
      ['8', '7', '5', '3'],
    );
  });

  it("README's worked example: daily backups for three weeks plus an extra one, the default policy", () => {
    // 21 daily runs at 04:00 UTC (10-30 November 2026) and a manual one on 25 November at 16:30: 22 versions.
    const list = versions(...dailyTimeline('2026-11-10', 21), '2026-11-25T16:30:00Z');
    const r = applyRetention(list, resolveRetentionPolicy({}));
    assert.equal(retentionTable(r), WORKED_EXAMPLE);
  });
});

/** The table `dosvob prune --dry-run` could print; pasted into the README (see /work/notes/retention-example.md). */
function retentionTable(r: RetentionResult): string {
  const day = (iso: string) => {
    const t = new Date(iso);
    return `${iso.slice(0, 10)} ${['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][t.getUTCDay()]} ${iso.slice(11, 16)}`;
  };
  return r.decisions
    .map((d) =>
      `${day(d.version.time)}  ${d.keep ? 'keep  ' : 'remove'}  ${d.reasons.map((x) => x.text).join(', ')}`.trimEnd(),
    )
    .join('\n');
}

const WORKED_EXAMPLE = `\
2026-11-30 Mon 04:00  keep    last 1, daily 2026-11-30, weekly 2026-W49, monthly 2026-11, newest
2026-11-29 Sun 04:00  keep    last 2, daily 2026-11-29, weekly 2026-W48
2026-11-28 Sat 04:00  keep    last 3, daily 2026-11-28
2026-11-27 Fri 04:00  keep    last 4, daily 2026-11-27
2026-11-26 Thu 04:00  keep    last 5, daily 2026-11-26
2026-11-25 Wed 16:30  keep    last 6, daily 2026-11-25
2026-11-25 Wed 04:00  remove
2026-11-24 Tue 04:00  keep    daily 2026-11-24
2026-11-23 Mon 04:00  remove
2026-11-22 Sun 04:00  keep    weekly 2026-W47
2026-11-21 Sat 04:00  remove
2026-11-20 Fri 04:00  remove
2026-11-19 Thu 04:00  remove
2026-11-18 Wed 04:00  remove
2026-11-17 Tue 04:00  remove
2026-11-16 Mon 04:00  remove
2026-11-15 Sun 04:00  keep    weekly 2026-W46
2026-11-14 Sat 04:00  remove
2026-11-13 Fri 04:00  remove
2026-11-12 Thu 04:00  remove
2026-11-11 Wed 04:00  remove
2026-11-10 Tue 04:00  keep    oldest monthly 2026-11`;
