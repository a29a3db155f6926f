// `dosvob verify`: a kept version of one volume (or of each) checked on demand on the store's worker, by its blocks'
// hashes or by its filesystem's own checker (through a temporary restore when it is not the newest). The verdict is
// recorded in the version's checks, so a failed one is suspect for retention from then on.
import { proxyActivities, setCurrentDetails } from '@temporalio/workflow';
import type { SettingsActivities } from '../activities/settings';
import type { VerifyActivities, VerifyVersionsReport, VerifyVersionsRequest } from '../activities/verify/activities';

const { resolveRunSettings } = proxyActivities<SettingsActivities>({
  startToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 5 },
});

export async function verifyVersionWorkflow(request: VerifyVersionsRequest): Promise<VerifyVersionsReport> {
  const { storeTaskQueue } = await resolveRunSettings({});
  const store = proxyActivities<VerifyActivities>({
    taskQueue: storeTaskQueue,
    // A large old version is restored, then read by the checker: heartbeats show it is alive and carry cancellation.
    startToCloseTimeout: '24 hours',
    heartbeatTimeout: '1 minute',
    retry: { maximumAttempts: 3 },
  });
  const what = request.fsck ? 'filesystem check' : 'hash check';
  const which = request.versionId ?? (request.at ? `the newest at or before ${request.at}` : 'the newest version');
  setCurrentDetails(`${what} of ${request.volume ?? 'every volume'} (${which}) on the store's machine`);
  const report = await store.verifyVersions.executeWithOptions(
    { summary: `${what} of ${request.volume ?? 'every volume'}` },
    [request],
  );
  setCurrentDetails(
    report.results.length === 0
      ? 'no versions to check'
      : report.results
          .map((r) => `- ${r.key} version ${r.versionId}${r.result === 'failed' ? ' **SUSPECT**' : ''}: ${r.summary}`)
          .join('\n'),
  );
  return report;
}
