// Shared Temporal fixtures for test files: the suite's dev server and its prebuilt workflow bundle.
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { randomUUID } from 'node:crypto';

export function temporalAddress(): string {
  const address = process.env.TEMPORAL_ADDRESS;
  if (!address) throw new Error('TEMPORAL_ADDRESS is not set: run the tests with `npm test`');
  return address;
}

export function workflowBundle(): { codePath: string } {
  const codePath = process.env.DOSVOB_TEST_WORKFLOW_BUNDLE;
  if (!codePath) throw new Error('DOSVOB_TEST_WORKFLOW_BUNDLE is not set: run the tests with `npm test`');
  return { codePath };
}

/** Connect to the suite's dev server, or to `address` (a test's own server). */
export async function connect(
  address = temporalAddress(),
): Promise<{ client: Client; connection: Connection; native: NativeConnection }> {
  const connection = await Connection.connect({ address });
  const native = await NativeConnection.connect({ address });
  return { client: new Client({ connection }), connection, native };
}

/** A task-queue / workflow-id suffix unique to one test, so tests sharing a server never meet. */
export function uniqueId(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}
