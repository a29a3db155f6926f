// `dosvob cleanup`: find (and delete) what earlier runs left behind, now, from this process: resources that carry
// both dosvob's ephemeral tag and name prefix (SSH keys: the prefix). Refused while a run is in progress, since the
// running run's own resources look exactly like leftovers.
import { ApplicationFailure } from '@temporalio/common';
import { msToNumber } from '@temporalio/common/lib/time';
import type { ResourceRef } from '../../activities/digitalocean/activities';
import type { Config } from '../../common/config';
import { UserError } from '../errors';
import type { Output } from '../output';
import { directDigitalOcean, explainDigitalOceanFailure } from '../preflight';
import { runningRunId } from '../run-state';
import type { Session } from '../session';

export interface CleanupOutcome {
  dryRun: boolean;
  leftovers: Array<ResourceRef & { deleted: boolean; error?: string }>;
}

/** DigitalOcean's order: droplets (which detaches), then volumes, snapshots, keys. */
const ORDER: readonly ResourceRef['kind'][] = ['droplet', 'volume', 'snapshot', 'ssh_key'];

export function describeRef(r: ResourceRef): string {
  return `${r.kind.replace('_', ' ')} ${r.name || r.id}${r.region ? ` (${r.region})` : ''}`;
}

/**
 * Retry what the activities mark retryable (a volume answers 409 until its droplet's deletion has detached it; 429s
 * name their wait), the way the workflow's retry policy would.
 */
async function withRetries<T>(fn: () => Promise<T>, attempts: number, initialDelayMs: number): Promise<T> {
  let delay = initialDelayMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const retryable = err instanceof ApplicationFailure && !err.nonRetryable;
      if (!retryable || attempt >= attempts) throw err;
      const wait = err.nextRetryDelay ? msToNumber(err.nextRetryDelay) : delay;
      await new Promise((r) => setTimeout(r, wait));
      delay = Math.min(delay * 2, 15_000);
    }
  }
}

export async function cleanup(
  session: Session,
  config: Config,
  out: Output,
  options: { dryRun?: boolean; retryDelayMs?: number } = {},
): Promise<CleanupOutcome> {
  const runId = await runningRunId(session.client, session.ids.workflowId);
  if (runId) {
    throw new UserError(
      `backup run ${runId} is in progress: its own resources look like leftovers; wait for it, or \`dosvob cancel\` it (its cleanup then runs)`,
    );
  }
  const digitalOcean = directDigitalOcean(config);
  let found: ResourceRef[];
  try {
    found = await withRetries(() => digitalOcean.findLeftovers({}), 5, options.retryDelayMs ?? 1000);
  } catch (err) {
    throw explainDigitalOceanFailure(err, 'listing leftovers', config.apiUrl);
  }
  const leftovers = [...found]
    .sort((a, b) => ORDER.indexOf(a.kind) - ORDER.indexOf(b.kind) || a.name.localeCompare(b.name))
    .map((r) => ({ ...r, deleted: false as boolean, error: undefined as string | undefined }));
  const outcome: CleanupOutcome = { dryRun: options.dryRun === true, leftovers };
  if (leftovers.length === 0) out.line('no leftovers of earlier runs');
  else if (options.dryRun) {
    out.line(`${leftovers.length} leftover(s) of earlier runs (not deleted: --dry-run):`);
    for (const r of leftovers) out.line(`  ${describeRef(r)}`);
  } else {
    for (const kind of ORDER) {
      await Promise.all(
        leftovers
          .filter((r) => r.kind === kind)
          .map(async (r) => {
            const { deleted: _deleted, error: _error, ...ref } = r;
            try {
              await withRetries(() => digitalOcean.deleteResource(ref), 8, options.retryDelayMs ?? 1000);
              r.deleted = true;
              out.line(`  deleted ${describeRef(r)}`);
            } catch (err) {
              r.error = err instanceof Error ? err.message : String(err);
              out.note(`dosvob: could not delete ${describeRef(r)}: ${r.error}`);
            }
          }),
      );
    }
  }
  out.json(outcome);
  const failed = leftovers.filter((r) => r.error !== undefined);
  if (failed.length > 0) throw new UserError(`${failed.length} leftover(s) could not be deleted (see above)`, 1);
  return outcome;
}
