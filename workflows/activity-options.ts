// Activity option pieces every workflow builds its proxies from, so that a backup and a cleanup retry alike.
import type { Timings } from './types';

export const ms = (n: number) => `${Math.max(1, Math.round(n))}ms`;

export function retryPolicy(t: Timings, maximumAttempts: number) {
  return {
    initialInterval: ms(t.retryInitialIntervalMs),
    maximumInterval: ms(t.retryMaximumIntervalMs),
    backoffCoefficient: 2,
    maximumAttempts,
  };
}
