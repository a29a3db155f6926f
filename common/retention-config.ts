// conf.json's retention settings, in either of two forms, both parsed onto one RetentionPolicy:
// - `keep`: restic's `forget` options, snake_cased: {"last": 6, "daily": 7, "within": "2d", "within_daily": "1m", …}
// - `snapshot_retention`: the original dosvob's list, [{"last": 3}, {"frequency": "1 day", "duration": "1 month"}]
//   (glacier.py), where a frequency entry is restic's keep-within-<period>: the newest version of each calendar period
//   within the duration.
// The schemas are meant to sit in configSchema (common/config.ts), so zod's issue paths name the field
// (`keep.daily`, `snapshot_retention.1.frequency`) as every other config error does.
import { z } from 'zod';
import {
  DEFAULT_RETENTION_POLICY,
  isValidTimeZone,
  parseRetentionDuration,
  PERIODS,
  RetentionPolicyError,
  type Period,
  type RetentionCount,
  type RetentionDuration,
  type RetentionPolicy,
  type RetentionRule,
} from './retention';

const count = z.union([z.int().min(0), z.literal('unlimited')], {
  error: 'must be a whole number (0 or more) or "unlimited"',
});

const duration = z.string().transform((text, ctx): RetentionDuration => {
  try {
    return parseRetentionDuration(text);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

export const keepSchema = z
  .object({
    last: count.optional(),
    hourly: count.optional(),
    daily: count.optional(),
    weekly: count.optional(),
    monthly: count.optional(),
    yearly: count.optional(),
    within: duration.optional(),
    within_hourly: duration.optional(),
    within_daily: duration.optional(),
    within_weekly: duration.optional(),
    within_monthly: duration.optional(),
    within_yearly: duration.optional(),
    time_zone: z
      .string()
      .refine(isValidTimeZone, 'must be an IANA time zone such as "UTC" or "Europe/Berlin"')
      .optional(),
  })
  .strict()
  .transform((keep, ctx): RetentionPolicy => {
    const rules: RetentionRule[] = [];
    const counted = (c: RetentionCount | undefined) => c !== undefined && c !== 0;
    // 0 means "not set", as in restic.
    if (counted(keep.last)) rules.push({ kind: 'last', count: keep.last! });
    for (const period of PERIODS) {
      const c = keep[period];
      if (counted(c)) rules.push({ kind: 'period', period, count: c! });
    }
    if (keep.within) rules.push({ kind: 'within', duration: keep.within });
    for (const period of PERIODS) {
      const d = keep[`within_${period}`];
      if (d) rules.push({ kind: 'within-period', period, duration: d });
    }
    if (rules.length === 0) {
      ctx.addIssue({
        code: 'custom',
        message:
          'keeps nothing (an empty policy is refused): set at least one of last, hourly, daily, weekly, monthly, yearly, within, within_<period> above 0',
      });
      return z.NEVER;
    }
    return keep.time_zone ? { rules, timeZone: keep.time_zone } : { rules };
  });

export type KeepConfig = z.input<typeof keepSchema>;

// glacier.py's parse_duration units; its month is 30 days and its year 365, ours are calendar months and years.
const ORIGINAL_UNITS: Record<string, { period: Period; field: keyof RetentionDuration }> = {};
for (const [names, period, field] of [
  [['hour', 'hours', 'hr', 'h'], 'hourly', 'hours'],
  [['day', 'days', 'd'], 'daily', 'days'],
  [['week', 'weeks', 'w'], 'weekly', 'weeks'],
  [['month', 'months', 'mo'], 'monthly', 'months'],
  [['year', 'years', 'yr'], 'yearly', 'years'],
] as const) {
  for (const name of names) ORIGINAL_UNITS[name] = { period, field };
}
const UNIT_NAMES: Record<Period, string> = {
  hourly: 'hour',
  daily: 'day',
  weekly: 'week',
  monthly: 'month',
  yearly: 'year',
};

function parseOriginal(text: string): { n: number; period: Period; field: keyof RetentionDuration } | string {
  const match = /^\s*(\d+)\s*([a-zA-Z]+)\s*$/.exec(text);
  const unit = match && ORIGINAL_UNITS[match[2]!.toLowerCase()];
  if (!match || !unit) return `"${text}" is not a count and a unit such as "1 day" (hour, day, week, month, year)`;
  return { n: Number(match[1]), ...unit };
}

const entrySchema = z
  .object({
    last: z.int().min(1).optional(),
    frequency: z.string().optional(),
    duration: z.string().optional(),
  })
  .strict()
  .transform((entry, ctx): RetentionRule => {
    const fail = (message: string, path: string[] = []) => {
      ctx.addIssue({ code: 'custom', message, path });
      return z.NEVER;
    };
    if (entry.last !== undefined) {
      if (entry.frequency !== undefined || entry.duration !== undefined) {
        return fail('give either "last", or "frequency" and "duration", not both');
      }
      return { kind: 'last', count: entry.last };
    }
    if (entry.frequency === undefined || entry.duration === undefined) {
      return fail(
        'needs "last", or both "frequency" and "duration" (e.g. {"frequency": "1 day", "duration": "1 month"})',
      );
    }
    const frequency = parseOriginal(entry.frequency);
    if (typeof frequency === 'string') return fail(frequency, ['frequency']);
    if (frequency.n !== 1) {
      // The original thinned versions to one per N units; dosvob's rules are calendar periods (restic's), and
      // "2 days" has no honest calendar equivalent: say what would work rather than keep more or fewer than asked.
      const coarser = PERIODS[PERIODS.indexOf(frequency.period) + 1];
      const unit = UNIT_NAMES[frequency.period];
      const hint = coarser ? `"1 ${unit}" (keeps more) or "1 ${UNIT_NAMES[coarser]}" (keeps fewer)` : `"1 ${unit}"`;
      return fail(
        `"${entry.frequency}" is not supported: versions are kept per calendar hour, day, week, month or year; use ${hint}`,
        ['frequency'],
      );
    }
    const span = parseOriginal(entry.duration);
    if (typeof span === 'string') return fail(span, ['duration']);
    if (span.n === 0) return fail(`"${entry.duration}" is no time at all`, ['duration']);
    const d = { years: 0, months: 0, weeks: 0, days: 0, hours: 0, [span.field]: span.n };
    return { kind: 'within-period', period: frequency.period, duration: d };
  });

export const snapshotRetentionSchema = z
  .array(entrySchema)
  .min(1, 'must list at least one rule (an empty policy is refused)')
  .transform((rules): RetentionPolicy => ({ rules }));

export type SnapshotRetentionConfig = z.input<typeof snapshotRetentionSchema>;

/** To spread into configSchema's object: `...retentionConfigShape`. */
export const retentionConfigShape = {
  keep: keepSchema.optional(),
  snapshot_retention: snapshotRetentionSchema.optional(),
};

/** The policy of a parsed conf.json: `keep`, else `snapshot_retention`, else the default; never both. */
export function resolveRetentionPolicy(parsed: {
  readonly keep?: RetentionPolicy;
  readonly snapshot_retention?: RetentionPolicy;
}): RetentionPolicy {
  if (parsed.keep && parsed.snapshot_retention) {
    throw new RetentionPolicyError('keep, snapshot_retention: set one of them, not both');
  }
  return parsed.keep ?? parsed.snapshot_retention ?? DEFAULT_RETENTION_POLICY;
}
