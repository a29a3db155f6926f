// Workflows over the kept versions, each one activity on the store's task queue (the store may be on another machine
// than the one asking): list them, restore one to a file there, verify everything.
import { proxyActivities, setCurrentDetails } from '@temporalio/workflow';
import type { SettingsActivities } from '../activities/settings';
import type { StoreOpsActivities } from '../activities/store-ops/activities';
import type { RestoreFileRequest, RestoreFileResult } from '../activities/store-ops/restore-file';
import type { StoreVerifyReport, Subset } from '../activities/store-ops/verify';
import type { VersionsReport } from '../activities/store-ops/versions-report';

const { resolveRunSettings } = proxyActivities<SettingsActivities>({
  startToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 5 },
});

// Wrapped in an object: an async function that returned the proxy itself would have `await` look up its `then`,
// which a proxy answers with an activity named "then".
async function storeActivities(): Promise<{ store: ReturnType<typeof proxyActivities<StoreOpsActivities>> }> {
  const { storeTaskQueue } = await resolveRunSettings({});
  const store = proxyActivities<StoreOpsActivities>({
    taskQueue: storeTaskQueue,
    // Reading a large image or chunk store takes a while; heartbeats (per block) show it is alive and carry
    // cancellation. A listing reads manifests only.
    startToCloseTimeout: '24 hours',
    heartbeatTimeout: '1 minute',
    retry: { maximumAttempts: 3 },
  });
  return { store };
}

export async function versionsWorkflow(input: { volume?: string } = {}): Promise<VersionsReport> {
  const { store } = await storeActivities();
  return await store.listStoreVersions.executeWithOptions(
    { summary: `list versions of ${input.volume ?? 'every volume'}` },
    [{ volume: input.volume }],
  );
}

export async function restoreFileWorkflow(input: RestoreFileRequest): Promise<RestoreFileResult> {
  const { store } = await storeActivities();
  const which = input.versionId ?? (input.at ? `the newest at or before ${input.at}` : 'the newest version');
  setCurrentDetails(`restoring ${input.volume} (${which}) to ${input.toFile} on the store's machine`);
  const result = await store.restoreVersionToFile.executeWithOptions(
    { summary: `restore ${input.volume} to ${input.toFile}` },
    [input],
  );
  setCurrentDetails(
    `restored ${result.key} version ${result.versionId} (${result.time}) to ${result.toFile}: ` +
      `${result.blocksFromImage} blocks from the image, ${result.blocksFromChunks} from saved chunks` +
      (result.reflinked ? ', reflinked' : ''),
  );
  return result;
}

export async function verifyStoreWorkflow(input: { subset?: Subset } = {}): Promise<StoreVerifyReport> {
  const { store } = await storeActivities();
  const slice = input.subset ? ` (slice ${input.subset.n}/${input.subset.of})` : '';
  const report = await store.verifyStore.executeWithOptions({ summary: `verify images, chunks and versions${slice}` }, [
    { subset: input.subset },
  ]);
  setCurrentDetails(
    `${report.images.length} image(s), ${report.chunks.checked} chunk(s) checked${slice}: ` +
      (report.exitCode === 0
        ? 'all sound'
        : `${report.images.filter((i) => i.state !== 'ok').length} image(s) not ok, ${report.chunks.bad.length} bad chunk(s), ` +
          `${report.chunks.brokenVersions.length} broken version(s)`),
  );
  return report;
}
