// Per-token sliding-window rate limits, as DigitalOcean describes them: each request counts for a full
// minute (burst limit) and a full hour; `ratelimit-reset` is when the oldest counted request expires.

export interface RateDecision {
  allowed: boolean;
  headers: Record<string, string>;
  retryAfterSeconds?: number;
}

const MINUTE = 60_000;
const HOUR = 3_600_000;

export interface Limits {
  perMinute: number;
  perHour: number;
}

export class RateLimiter {
  private readonly hits = new Map<string, number[]>();
  private readonly keyListHits = new Map<string, number[]>();

  private window(map: Map<string, number[]>, token: string, now: number, span: number): number[] {
    const list = (map.get(token) ?? []).filter((t) => t > now - span);
    map.set(token, list);
    return list;
  }

  /** Count a request (if allowed) and give the headers every answer carries. */
  take(token: string, now: number, limits: Limits): RateDecision {
    const hour = this.window(this.hits, token, now, HOUR);
    const minuteCount = hour.filter((t) => t > now - MINUTE).length;
    const headersFor = (hourCount: number, minCount: number, oldest: number | undefined): Record<string, string> => ({
      'ratelimit-limit': String(limits.perHour),
      'ratelimit-remaining': String(Math.max(0, Math.min(limits.perHour - hourCount, limits.perMinute - minCount))),
      'ratelimit-reset': String(Math.ceil(((oldest ?? now) + HOUR) / 1000)),
    });
    if (minuteCount >= limits.perMinute) {
      const oldestInMinute = hour.find((t) => t > now - MINUTE) ?? now;
      return {
        allowed: false,
        headers: headersFor(hour.length, minuteCount, hour[0]),
        retryAfterSeconds: Math.max(1, Math.ceil((oldestInMinute + MINUTE - now) / 1000)),
      };
    }
    if (hour.length >= limits.perHour) {
      return { allowed: false, headers: headersFor(hour.length, minuteCount, hour[0]) };
    }
    hour.push(now);
    return { allowed: true, headers: headersFor(hour.length, minuteCount + 1, hour[0]) };
  }

  /** The special limit on listing SSH keys: `perMinute` GETs of /v2/account/keys a minute. */
  takeKeyList(token: string, now: number, perMinute: number): { allowed: boolean; retryAfterSeconds: number } {
    const list = this.window(this.keyListHits, token, now, MINUTE);
    if (list.length >= perMinute) {
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(((list[0] ?? now) + MINUTE - now) / 1000)) };
    }
    list.push(now);
    return { allowed: true, retryAfterSeconds: 0 };
  }
}
