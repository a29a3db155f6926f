// Which versions of a volume retention keeps: restic's `forget` policy (which users know), applied to dosvob's versions.
// Pure functions (no Node built-ins, no I/O, no clock): the store's prune activity and workflow code both use them,
// and `dosvob prune --dry-run` prints the reasons they return.
//
// The algorithm is restic's internal/restic/snapshot_policy.go (ApplyPolicy), including the rule added in restic
// 0.16.0 (issue #3624, PR #4366; labelled "oldest" since PR #5039): a counted rule that still has slots left when it
// reaches the oldest version keeps that version too, so a young store keeps its whole history. Where dosvob differs:
// - `w` (7 days) is accepted in durations; restic knows only y m d h.
// - Periods are computed in one configured time zone (default UTC) rather than each snapshot's own.
// - Suspect versions (issue 12: a version whose check failed) are invisible to counted and per-period rules; see
//   applyRetention.
// - The newest version is always kept (it is the plain image itself), as is the newest passing one, and protected ones.

export const PERIODS = ['hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
export type Period = (typeof PERIODS)[number];

/** restic's duration (`1y2m`, `7d`, `12h`) plus weeks. Months and years are calendar steps, as Go's AddDate. */
export interface RetentionDuration {
  readonly years: number;
  readonly months: number;
  readonly weeks: number;
  readonly days: number;
  readonly hours: number;
}

/** `unlimited`: every period that has a version (restic's `--keep-daily unlimited`). */
export type RetentionCount = number | 'unlimited';

export type RetentionRule =
  | { readonly kind: 'last'; readonly count: RetentionCount }
  | { readonly kind: 'period'; readonly period: Period; readonly count: RetentionCount }
  | { readonly kind: 'within'; readonly duration: RetentionDuration }
  | { readonly kind: 'within-period'; readonly period: Period; readonly duration: RetentionDuration };

export interface RetentionPolicy {
  /** A version kept by any rule is kept. Never empty (an empty policy is refused). */
  readonly rules: readonly RetentionRule[];
  /** IANA zone the periods' boundaries are computed in; default UTC. */
  readonly timeZone?: string;
}

export const DEFAULT_RETENTION_POLICY: RetentionPolicy = {
  rules: [
    { kind: 'last', count: 6 },
    { kind: 'period', period: 'daily', count: 7 },
    { kind: 'period', period: 'weekly', count: 4 },
    { kind: 'period', period: 'monthly', count: 6 },
  ],
};

export interface RetentionVersion {
  readonly id: string;
  /** ISO 8601 time of the version (the manifest's commit time). */
  readonly time: string;
  /** Never removed (`dosvob versions protect`). */
  readonly protected?: boolean;
  /** Its check failed (issue 12): it fills no rule's slot. */
  readonly suspect?: boolean;
}

export type KeepRuleName = 'last' | Period | 'within' | `within-${Period}` | 'newest' | 'newest passing' | 'protected';

export interface KeepReason {
  readonly rule: KeepRuleName;
  /** The period the version stands for (`2026-11-30`, `2026-W49`, …); for `last`, its rank (`1` is the newest). */
  readonly bucket?: string;
  /** Kept because a counted rule had slots left at the oldest version, not as the newest of its period. */
  readonly oldest?: true;
  /** For people: `daily 2026-11-30`, `oldest monthly 2026-11`, `within 2d`, `within-daily 1m 2026-11-30`. */
  readonly text: string;
}

export interface RetentionDecision<V extends RetentionVersion = RetentionVersion> {
  readonly version: V;
  readonly keep: boolean;
  /** Every reason it is kept, in the policy's order; empty when it is removed. */
  readonly reasons: readonly KeepReason[];
}

export interface RetentionResult<V extends RetentionVersion = RetentionVersion> {
  /** Newest first. */
  readonly decisions: readonly RetentionDecision<V>[];
  readonly keep: readonly V[];
  readonly remove: readonly V[];
}

export interface ApplyRetentionOptions {
  /**
   * The present (ISO time). When given, a version dated after it (a clock that was wrong) is not taken as the newest
   * that `within` rules measure from, as restic ignores future snapshots there. It is still kept by those rules.
   */
  readonly now?: string;
}

/** A policy or an input that cannot be applied; the message names the field. */
export class RetentionPolicyError extends Error {
  override readonly name = 'RetentionPolicyError';
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const DURATION_UNITS = [
  ['y', 'years'],
  ['m', 'months'],
  ['w', 'weeks'],
  ['d', 'days'],
  ['h', 'hours'],
] as const;
const DURATION_PATTERN = /^(?:\d+[ymwdh])+$/;

/** `1y2m`, `1w3d`, `36h`, in any order, each unit at most once. Throws a message without a field name. */
export function parseRetentionDuration(text: string): RetentionDuration {
  if (!DURATION_PATTERN.test(text)) {
    throw new RetentionPolicyError(
      `"${text}" is not a duration such as "7d", "1w3d", "1y2m" or "36h" (units y m w d h)`,
    );
  }
  const parsed = { years: 0, months: 0, weeks: 0, days: 0, hours: 0 };
  const seen = new Set<string>();
  for (const [, digits, unit] of text.matchAll(/(\d+)([ymwdh])/g)) {
    if (seen.has(unit!)) throw new RetentionPolicyError(`"${text}" gives the unit "${unit}" twice`);
    seen.add(unit!);
    const field = DURATION_UNITS.find(([u]) => u === unit)![1];
    parsed[field] = Number(digits);
  }
  if (isZeroDuration(parsed)) throw new RetentionPolicyError(`"${text}" is no time at all`);
  return parsed;
}

export function formatRetentionDuration(d: RetentionDuration): string {
  return DURATION_UNITS.map(([unit, field]) => (d[field] ? `${d[field]}${unit}` : '')).join('') || '0h';
}

function isZeroDuration(d: RetentionDuration): boolean {
  return DURATION_UNITS.every(([, field]) => d[field] === 0);
}

export function describeRule(rule: RetentionRule): string {
  switch (rule.kind) {
    case 'last':
      return `last ${rule.count}`;
    case 'period':
      return `${rule.period} ${rule.count}`;
    case 'within':
      return `within ${formatRetentionDuration(rule.duration)}`;
    case 'within-period':
      return `within-${rule.period} ${formatRetentionDuration(rule.duration)}`;
  }
}

/** `last 6, daily 7, weekly 4, monthly 6` (and the zone when it is not UTC), for `dosvob prune`'s header. */
export function describePolicy(policy: RetentionPolicy): string {
  const rules = policy.rules.map(describeRule).join(', ');
  return policy.timeZone && policy.timeZone !== 'UTC' ? `${rules} (periods in ${policy.timeZone})` : rules;
}

/** Refuses what applyRetention cannot honour; the messages name the field (`rules[2].count`, `timeZone`). */
export function validateRetentionPolicy(policy: RetentionPolicy): void {
  if (policy.rules.length === 0) {
    throw new RetentionPolicyError(
      'the retention policy is empty: it would decide nothing; keep at least one of last, hourly, daily, weekly, monthly, yearly or within',
    );
  }
  policy.rules.forEach((rule, i) => {
    if (rule.kind === 'last' || rule.kind === 'period') {
      if (rule.count !== 'unlimited' && !(Number.isInteger(rule.count) && rule.count >= 1)) {
        throw new RetentionPolicyError(`rules[${i}].count: must be a whole number of at least 1 or "unlimited"`);
      }
    } else {
      const d = rule.duration;
      const bad = DURATION_UNITS.some(([, f]) => !(Number.isInteger(d[f]) && d[f] >= 0));
      if (bad || isZeroDuration(d)) throw new RetentionPolicyError(`rules[${i}].duration: must be a positive duration`);
    }
    if ((rule.kind === 'period' || rule.kind === 'within-period') && !PERIODS.includes(rule.period)) {
      throw new RetentionPolicyError(`rules[${i}].period: must be one of ${PERIODS.join(', ')}`);
    }
  });
  if (policy.timeZone !== undefined && !isValidTimeZone(policy.timeZone)) {
    throw new RetentionPolicyError(`timeZone: "${policy.timeZone}" is not an IANA time zone such as "Europe/Berlin"`);
  }
}

export function isValidTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

interface Dated<V> {
  readonly version: V;
  readonly ms: number;
}

/**
 * Decides, for every version of one volume lineage, keep or remove and why.
 *
 * Suspect versions (a failed check, issue 12) neither fill nor are kept by the counted rules (`last`, hourly … yearly)
 * or the `within-<period>` rules: those rules pick the newest *passing* version of each period instead. Otherwise a
 * run of bad snapshots at the end of each day would push the good versions of those days out, which is the failure
 * the check exists to prevent. A suspect version stays only when it is the newest (the image itself), protected, or
 * inside a `within` window (which keeps everything, by design). The newest passing version is always kept.
 *
 * Protected versions take part in the rules like any other, so protecting one keeps exactly that one more version and
 * changes nothing else.
 *
 * Versions with the same time are ordered by id (the greater id counts as newer), so the result never depends on the
 * order the store lists them in.
 */
export function applyRetention<V extends RetentionVersion>(
  versions: readonly V[],
  policy: RetentionPolicy,
  options: ApplyRetentionOptions = {},
): RetentionResult<V> {
  validateRetentionPolicy(policy);
  const zone = policy.timeZone ?? 'UTC';
  const ids = new Set<string>();
  const dated: Dated<V>[] = versions.map((version, i) => {
    if (ids.has(version.id)) throw new RetentionPolicyError(`versions[${i}].id: "${version.id}" appears twice`);
    ids.add(version.id);
    return { version, ms: parseTime(version.time, `versions[${i}].time`) };
  });
  dated.sort((a, b) => b.ms - a.ms || (a.version.id < b.version.id ? 1 : a.version.id > b.version.id ? -1 : 0));
  const reasons = new Map<V, KeepReason[]>(dated.map((d) => [d.version, []]));
  const add = (d: Dated<V>, reason: KeepReason) => reasons.get(d.version)!.push(reason);
  const passing = dated.filter((d) => !d.version.suspect);

  const newest = dated[0];
  if (newest) {
    const nowMs = options.now === undefined ? undefined : parseTime(options.now, 'now');
    // restic's findLatestTimestamp: the newest version that is not in the future.
    const reference = nowMs === undefined ? newest.ms : (dated.find((d) => d.ms <= nowMs)?.ms ?? nowMs);
    for (const rule of policy.rules) applyRule(rule, dated, passing, reference, zone, add);
    add(newest, { rule: 'newest', text: 'newest' });
    const newestPassing = passing[0];
    if (newestPassing && newestPassing !== newest)
      add(newestPassing, { rule: 'newest passing', text: 'newest passing' });
    for (const d of dated) if (d.version.protected) add(d, { rule: 'protected', text: 'protected' });
  }

  const decisions = dated.map((d) => {
    const why = reasons.get(d.version)!;
    return { version: d.version, keep: why.length > 0, reasons: why };
  });
  return {
    decisions,
    keep: decisions.filter((d) => d.keep).map((d) => d.version),
    remove: decisions.filter((d) => !d.keep).map((d) => d.version),
  };
}

function applyRule<V extends RetentionVersion>(
  rule: RetentionRule,
  all: readonly Dated<V>[],
  passing: readonly Dated<V>[],
  reference: number,
  zone: string,
  add: (d: Dated<V>, reason: KeepReason) => void,
): void {
  switch (rule.kind) {
    case 'last': {
      const n = rule.count === 'unlimited' ? passing.length : Math.min(rule.count, passing.length);
      for (let i = 0; i < n; i++) add(passing[i]!, { rule: 'last', bucket: String(i + 1), text: `last ${i + 1}` });
      return;
    }
    case 'period': {
      let left = rule.count === 'unlimited' ? Infinity : rule.count;
      let previous: string | undefined;
      passing.forEach((d, i) => {
        if (left === 0) return;
        const bucket = periodBucket(rule.period, d.ms, zone);
        if (bucket !== previous) {
          add(d, { rule: rule.period, bucket, text: `${rule.period} ${bucket}` });
        } else if (i === passing.length - 1) {
          add(d, { rule: rule.period, bucket, oldest: true, text: `oldest ${rule.period} ${bucket}` });
        } else {
          return;
        }
        previous = bucket;
        left--;
      });
      return;
    }
    case 'within': {
      const cutoff = subtractDuration(reference, rule.duration, zone);
      const text = `within ${formatRetentionDuration(rule.duration)}`;
      for (const d of all) if (d.ms > cutoff) add(d, { rule: 'within', text });
      return;
    }
    case 'within-period': {
      const cutoff = subtractDuration(reference, rule.duration, zone);
      const name = `within-${rule.period}` as const;
      const label = `${name} ${formatRetentionDuration(rule.duration)}`;
      let previous: string | undefined;
      for (const d of passing) {
        if (d.ms <= cutoff) break;
        const bucket = periodBucket(rule.period, d.ms, zone);
        if (bucket !== previous) add(d, { rule: name, bucket, text: `${label} ${bucket}` });
        previous = bucket;
      }
      return;
    }
  }
}

function parseTime(text: string, field: string): number {
  // Date.parse reads any string somehow; a version's time must say which instant it is.
  const ms = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(ms)) throw new RetentionPolicyError(`${field}: "${text}" is not an ISO time with a zone`);
  return ms;
}

interface WallClock {
  readonly year: number;
  readonly month: number; // 1-12
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function wallClock(ms: number, zone: string): WallClock {
  if (zone === 'UTC') {
    const d = new Date(ms);
    return {
      year: d.getUTCFullYear(),
      month: d.getUTCMonth() + 1,
      day: d.getUTCDate(),
      hour: d.getUTCHours(),
      minute: d.getUTCMinutes(),
      second: d.getUTCSeconds(),
    };
  }
  let format = formatters.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(zone, format);
  }
  const part = (parts: Intl.DateTimeFormatPart[], type: Intl.DateTimeFormatPartTypes) =>
    Number(parts.find((p) => p.type === type)?.value);
  const parts = format.formatToParts(new Date(ms));
  return {
    year: part(parts, 'year'),
    month: part(parts, 'month'),
    day: part(parts, 'day'),
    hour: part(parts, 'hour'),
    minute: part(parts, 'minute'),
    second: part(parts, 'second'),
  };
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** The calendar period a time falls in, as a sortable label: local wall-clock boundaries, ISO weeks. */
export function periodBucket(period: Period, ms: number, zone = 'UTC'): string {
  const t = wallClock(ms, zone);
  const day = `${pad(t.year, 4)}-${pad(t.month)}-${pad(t.day)}`;
  switch (period) {
    case 'hourly':
      // restic's ymdh: the local hour, so the repeated hour when clocks go back is one period.
      return `${day} ${pad(t.hour)}:00`;
    case 'daily':
      return day;
    case 'weekly': {
      const { year, week } = isoWeek(t.year, t.month, t.day);
      return `${pad(year, 4)}-W${pad(week)}`;
    }
    case 'monthly':
      return `${pad(t.year, 4)}-${pad(t.month)}`;
    case 'yearly':
      return pad(t.year, 4);
  }
}

/** ISO 8601 week: weeks start on Monday, week 1 holds the year's first Thursday (Go's time.ISOWeek). */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const date = Date.UTC(year, month - 1, day);
  const mondayBased = (new Date(date).getUTCDay() + 6) % 7;
  const thursday = date + (3 - mondayBased) * DAY_MS;
  const weekYear = new Date(thursday).getUTCFullYear();
  return { year: weekYear, week: Math.floor((thursday - Date.UTC(weekYear, 0, 1)) / DAY_MS / 7) + 1 };
}

/**
 * `reference` minus `d` as restic computes it (AddDate, then hours): years, months, weeks and days step the local
 * calendar, keeping the wall-clock time across a DST change; hours are elapsed time. Month ends overflow as Go's
 * AddDate does (31 March minus 1 month is 3 March).
 */
function subtractDuration(reference: number, d: RetentionDuration, zone: string): number {
  const t = wallClock(reference, zone);
  const subSecond = ((reference % 1000) + 1000) % 1000;
  const local =
    Date.UTC(t.year - d.years, t.month - 1 - d.months, t.day - 7 * d.weeks - d.days, t.hour, t.minute, t.second) +
    subSecond;
  return localToInstant(local, zone) - d.hours * HOUR_MS;
}

/** The instant whose wall clock in `zone` reads `local` (a wall-clock time written as if it were UTC). */
function localToInstant(local: number, zone: string): number {
  if (zone === 'UTC') return local;
  const offsetAt = (ms: number) => {
    const t = wallClock(ms, zone);
    return Date.UTC(t.year, t.month - 1, t.day, t.hour, t.minute, t.second) - (ms - (((ms % 1000) + 1000) % 1000));
  };
  const guess = local - offsetAt(local);
  return local - offsetAt(guess);
}
