// dosvob's workers in a process of their own, so a test can SIGKILL them mid-step.
// Spec (config + task queue) comes from DOSVOB_TEST_WORKER; it prints "ready" once polling.
import { NativeConnection } from '@temporalio/worker';
import type { Config } from '../../common/config';
import { createWorkers, installLogger, runWorkers, type WorkerSetup } from '../../worker/worker';
import { temporalAddress, workflowBundle } from './temporal';

export interface WorkerProcessSpec {
  config: Config;
  taskQueue: string;
  transferOptions?: WorkerSetup['transferOptions'];
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.env.DOSVOB_TEST_WORKER ?? '') as WorkerProcessSpec;
  installLogger(process.env.DOSVOB_LOG_LEVEL ?? 'ERROR');
  const connection = await NativeConnection.connect({ address: temporalAddress() });
  const workers = await createWorkers({
    connection,
    namespace: 'default',
    config: spec.config,
    taskQueue: spec.taskQueue,
    workflowBundle: workflowBundle(),
    // A replacement worker should get the workflow's tasks quickly after this one dies.
    options: { shutdownGraceTime: '0s', stickyQueueScheduleToStartTimeout: '1s' },
    transferOptions: spec.transferOptions,
  });
  const running = runWorkers(workers);
  console.log('ready');
  await running;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
