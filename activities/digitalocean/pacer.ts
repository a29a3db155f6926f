// Paces DigitalOcean requests from the rate-limit headers every answer carries, so that dosvob leaves
// its share of the token's budget to the user's other tools instead of finding the limit by a 429.
//
// DigitalOcean counts each request for a minute (250 a minute, the burst limit) and for an hour (5,000);
// `ratelimit-remaining` is what is left, `ratelimit-reset` (epoch seconds) when the oldest counted request
// expires. Which window `remaining` describes is not said: DigitalOcean documents it for the hour, the
// simulator reports the smaller of the two. So a small `remaining` (at most a minute's worth) is spread
// over the minute window, and a large one over the time to the reset; either way a reserve is left over.
// (Read as the minute's, a nearly spent hour is spent sooner than its reset: the 429 that may then come
// stops every request of the token for its `retry-after`, and DigitalOcean's hour is rarely that close.)
// A 429's `retry-after` stops every request of the token until it has passed.
import { createHash } from 'node:crypto';

export interface PacerOptions {
  /** The token's burst limit, requests a minute; DigitalOcean's is 250. */
  perMinute: number;
  /** Length of the burst window; a minute at DigitalOcean. */
  windowMs: number;
  /** Share of each limit left to other clients. */
  reserveFraction: number;
  /** The clock, for tests. */
  now: () => number;
  /** Waits `ms`; for tests. */
  sleep: (ms: number) => Promise<void>;
}

export const DEFAULT_PACER_OPTIONS: Readonly<PacerOptions> = {
  perMinute: 250,
  windowMs: 60_000,
  reserveFraction: 0.05,
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** The rate-limit headers of one answer. */
export interface RateObservation {
  limit: number;
  remaining: number;
  /** Epoch milliseconds. */
  resetAtMs: number;
}

/** One answer's headers, when they carry the three rate-limit fields. */
export function parseRateHeaders(headers: Readonly<Record<string, unknown>>): RateObservation | undefined {
  const num = (name: string): number | undefined => {
    const raw = headers[name];
    const value = typeof raw === 'string' || typeof raw === 'number' ? Number(raw) : NaN;
    return Number.isFinite(value) ? value : undefined;
  };
  const limit = num('ratelimit-limit');
  const remaining = num('ratelimit-remaining');
  const reset = num('ratelimit-reset');
  if (limit === undefined || remaining === undefined || reset === undefined) return undefined;
  return { limit, remaining, resetAtMs: reset * 1000 };
}

/** `retry-after` in milliseconds (seconds or an HTTP date), if the answer has one. */
export function parseRetryAfterMs(headers: Readonly<Record<string, unknown>>, now: number): number | undefined {
  const raw = headers['retry-after'];
  if (typeof raw !== 'string' && typeof raw !== 'number') return undefined;
  const seconds = Number(raw);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(String(raw));
  return Number.isFinite(date) ? Math.max(0, date - now) : undefined;
}

/**
 * The gap to leave between two requests, given what the last answer said, how many requests have been
 * sent since that the answer did not count yet, and how many of dosvob's own are in the burst window.
 * Pure arithmetic, for tests.
 */
export function spacingMs(
  seen: RateObservation,
  uncounted: number,
  now: number,
  options: Pick<PacerOptions, 'perMinute' | 'windowMs' | 'reserveFraction'>,
  ownInWindow = 0,
): number {
  const minuteReserve = Math.max(1, Math.ceil(options.reserveFraction * options.perMinute));
  const hourReserve = Math.min(options.perMinute, Math.max(1, Math.ceil(options.reserveFraction * seen.limit)));
  // What dosvob itself may send in one window, whatever the headers say: DigitalOcean does not report the
  // burst window when `remaining` is the hour's. An hourly limit above sixty windows' worth is not DigitalOcean's
  // (a raised account limit, a test's simulator): the burst limit assumed here is then not the server's either.
  const burstApplies = seen.limit <= 60 * options.perMinute;
  const ownFloor = burstApplies ? options.windowMs / Math.max(1, options.perMinute - minuteReserve) : 0;
  const remaining = seen.remaining - uncounted;
  const minuteBound = remaining <= options.perMinute;
  const horizon = minuteBound ? options.windowMs : Math.max(options.windowMs, seen.resetAtMs - now);
  // Within the burst window, dosvob's own counted requests expire within a window and their places are
  // dosvob's again: the target is the window's free places plus its own, less the reserve. (Spreading only
  // the free places would settle at half of them.)
  const usable = minuteBound ? remaining + ownInWindow - minuteReserve : remaining - hourReserve;
  // With nothing usable left, wait out a whole horizon: the oldest counted requests expire by then.
  const spread = usable >= 1 ? horizon / usable : horizon;
  return Math.max(ownFloor, spread);
}

/** One token's pacer: every request of the process on that token takes a slot from it. */
export class Pacer {
  private readonly options: PacerOptions;
  private seen: RateObservation | undefined;
  /** When the request whose answer gave `seen` was sent. */
  private seenSentAt = -Infinity;
  /** Requests given a slot and not yet answered: the newest answer cannot have counted them all. */
  private inFlight = 0;
  private nextSlotAt = 0;
  private blockedUntil = 0;
  /** Slot times of dosvob's requests in the last burst window, oldest first. */
  private readonly recent: number[] = [];

  constructor(options: Partial<PacerOptions> = {}) {
    this.options = { ...DEFAULT_PACER_OPTIONS, ...options };
  }

  /**
   * Takes the next slot and says how long to wait for it (0: send now). Slots are handed out in order,
   * one spacing apart, so concurrent activities queue rather than burst.
   */
  reserve(): number {
    const now = this.options.now();
    while (this.recent.length > 0 && (this.recent[0] ?? 0) <= now - this.options.windowMs) this.recent.shift();
    const gap = this.seen ? spacingMs(this.seen, this.inFlight, now, this.options, this.recent.length) : 0;
    const at = Math.max(now, this.blockedUntil, this.nextSlotAt);
    this.nextSlotAt = at + gap;
    this.inFlight++;
    this.recent.push(at);
    return at - now;
  }

  /** Waits for this request's slot. */
  async acquire(): Promise<void> {
    const wait = this.reserve();
    if (wait > 0) await this.options.sleep(wait);
  }

  /**
   * An answer arrived: learn from its headers (and its `retry-after`, on a 429). `sentAt`: when its request was
   * sent. The server counts a request when it arrives, so a slow answer (a snapshot's, up to a minute) carries the
   * budget of then: an answer to a request older than the one `seen` came from is stale, and teaches nothing.
   */
  observe(status: number | undefined, headers: Readonly<Record<string, unknown>>, sentAt?: number): void {
    const now = this.options.now();
    this.inFlight = Math.max(0, this.inFlight - 1);
    const seen = parseRateHeaders(headers);
    if (seen && (sentAt === undefined || sentAt >= this.seenSentAt)) {
      this.seen = seen;
      if (sentAt !== undefined) this.seenSentAt = sentAt;
    }
    if (status === 429) {
      const after = parseRetryAfterMs(headers, now) ?? (seen ? Math.max(1000, seen.resetAtMs - now) : 1000);
      this.blockedUntil = Math.max(this.blockedUntil, now + after);
    }
  }

  /** The request failed without an answer (a timeout, a reset connection). */
  abandon(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
  }

  /** For tests and logs. */
  state(): { seen: RateObservation | undefined; inFlight: number; nextSlotAt: number; blockedUntil: number } {
    return { seen: this.seen, inFlight: this.inFlight, nextSlotAt: this.nextSlotAt, blockedUntil: this.blockedUntil };
  }
}

const pacers = new Map<string, Pacer>();
let defaults: Partial<PacerOptions> = {};

/** The process's pacer for `token` (keyed by a digest: the map never holds the token itself). */
export function pacerFor(token: string): Pacer {
  const key = createHash('sha256').update(token).digest('hex');
  let pacer = pacers.get(key);
  if (!pacer) {
    pacer = new Pacer(defaults);
    pacers.set(key, pacer);
  }
  return pacer;
}

/**
 * Options for pacers made from now on, and forget the existing ones: a test or bench whose simulator has
 * a limit other than DigitalOcean's says so here.
 */
export function setPacerDefaults(options: Partial<PacerOptions>): void {
  defaults = { ...options };
  pacers.clear();
}
