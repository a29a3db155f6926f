// Heartbeats for the DigitalOcean activities. A step is given a heartbeat timeout so that a dead
// worker is noticed in a minute rather than at the step's own timeout; but one DigitalOcean answer
// may legitimately take longer than that. So every activity heartbeats on an interval for as long as
// it runs (repeating its last details), and a slow answer stays bounded by the request timeout and
// the step's start-to-close timeout instead of being taken for a dead worker.
import { Context } from '@temporalio/activity';

const lastDetails = new WeakMap<Context, unknown>();

/** The current activity's context, or undefined when called outside one (the CLI calls some directly). */
function currentContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

/** Heartbeat with `details`; the interval keeps repeating them until the next call. */
export function heartbeat(details?: unknown): void {
  const ctx = currentContext();
  if (!ctx) return;
  lastDetails.set(ctx, details);
  ctx.heartbeat(details);
}

/**
 * Each function of `activities`, heartbeating every quarter of its heartbeat timeout while it runs.
 * (The SDK throttles what it sends to the server; sending more often than that costs nothing.)
 */
export function heartbeating<A extends object>(activities: A): A {
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(activities)) {
    if (typeof fn !== 'function') {
      wrapped[name] = fn;
      continue;
    }
    const activity = fn as (...args: unknown[]) => Promise<unknown>;
    wrapped[name] = async (...args: unknown[]) => {
      const ctx = currentContext();
      const timeoutMs = ctx?.info.heartbeatTimeoutMs;
      if (!ctx || !timeoutMs) return activity(...args);
      const timer = setInterval(() => ctx.heartbeat(lastDetails.get(ctx)), Math.max(50, timeoutMs / 4));
      try {
        return await activity(...args);
      } finally {
        clearInterval(timer);
      }
    };
  }
  return wrapped as A;
}
