// healthchecks.io pings, as the original dosvob sent them: `/start` when a run begins, the URL
// itself on success, `/fail` on failure. A failing ping is logged and never fails a backup.
import { log } from '@temporalio/activity';

export type HealthSignal = 'start' | 'success' | 'fail';

export function healthcheckUrl(base: string, signal: HealthSignal): string {
  const url = base.replace(/\/+$/, '');
  return signal === 'success' ? url : `${url}/${signal}`;
}

export function createHealthcheckActivities(config: { healthchecks: string | undefined }) {
  return {
    async pingHealthcheck(input: { signal: HealthSignal; message?: string }): Promise<{ pinged: boolean }> {
      if (!config.healthchecks) return { pinged: false };
      const url = healthcheckUrl(config.healthchecks, input.signal);
      try {
        const res = await fetch(url, {
          method: 'POST',
          body: input.message?.slice(0, 10_000) ?? '',
          signal: AbortSignal.timeout(10_000),
        });
        if (!res.ok) log.warn('healthchecks ping was refused', { signal: input.signal, status: res.status });
        return { pinged: res.ok };
      } catch (err) {
        log.warn('healthchecks ping failed', { signal: input.signal, error: (err as Error).message });
        return { pinged: false };
      }
    },
  };
}

export type HealthcheckActivities = ReturnType<typeof createHealthcheckActivities>;
