// Checks shared by the end-to-end tests: secrets in histories, retries and activity results in
// histories, leftovers in the simulator.
import assert from 'node:assert/strict';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { CancelledFailure, defaultPayloadConverter } from '@temporalio/common';
import { deriveRunKey } from '../../activities/run-keys';
import type { Simulator } from '../simulator';
import { assertNoSecrets, historyJson } from './history';

type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;

/** Every form of a private key that could leak: its PEM armour and each line of its base64 body. */
function privateKeyForms(privateKey: string): string[] {
  return privateKey
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length >= 16 && !l.startsWith('-----'));
}

export interface Secrets {
  token: string;
  keySecret: string | undefined;
  extra?: readonly string[];
}

/**
 * `text` (an exported history of run `runId`) holds neither the token, nor the key secret, nor any
 * private key: not the PEM armour of any key, nor any line of the run's derived client and host keys.
 */
export function assertTextHasNoSecrets(text: string, runId: string, secrets: Secrets): void {
  const plain = [secrets.token, ...(secrets.keySecret ? [secrets.keySecret] : []), ...(secrets.extra ?? [])];
  assertNoSecrets(text, plain);
  if (!secrets.keySecret) return;
  assert.ok(text.includes(runId), 'the run id is in the history (the keys are derived from the right run)');
  for (const role of ['client', 'host'] as const) {
    const key = deriveRunKey(secrets.keySecret, runId, role);
    for (const line of privateKeyForms(key.privateKey)) {
      assert.ok(!text.includes(line), `no line of the run's ${role} private key in the history`);
    }
  }
}

/** The run's history as the SDK exports it (`historyToJSON`) holds no secret (see above). Failed runs too. */
export async function assertHistoryHasNoSecrets(handle: WorkflowHandle, secrets: Secrets): Promise<string> {
  const history = await historyJson(handle);
  assert.ok(history.length > 1000, 'the history was exported');
  assertTextHasNoSecrets(history, (await handle.describe()).runId, secrets);
  return history;
}

export interface ActivityAttempt {
  type: string;
  attempt: number;
  lastFailure: string | undefined;
}

/** The attempt of each finished activity (ActivityTaskStarted is written once, for the last attempt). */
export function activityAttempts(history: History): ActivityAttempt[] {
  const types = new Map<string, string>();
  const out: ActivityAttempt[] = [];
  for (const e of history.events ?? []) {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) types.set(String(e.eventId), scheduled.activityType?.name ?? '?');
    const started = e.activityTaskStartedEventAttributes;
    if (started) {
      out.push({
        type: types.get(String(started.scheduledEventId)) ?? '?',
        attempt: started.attempt ?? 1,
        lastFailure: started.lastFailure?.message ?? undefined,
      });
    }
  }
  return out;
}

/** The decoded results of the completed activities of one type, in history order. */
export function activityResults<T>(history: History, type: string): T[] {
  const types = new Map<string, string>();
  const out: T[] = [];
  for (const e of history.events ?? []) {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) types.set(String(e.eventId), scheduled.activityType?.name ?? '?');
    const completed = e.activityTaskCompletedEventAttributes;
    if (completed && types.get(String(completed.scheduledEventId)) === type) {
      const payload = completed.result?.payloads?.[0];
      if (payload) out.push(defaultPayloadConverter.fromPayload<T>(payload));
    }
  }
  return out;
}

/** Nothing of dosvob's is left: no droplet, snapshot, SSH key or volume but the sources. */
export function assertNothingLeft(sim: Simulator, sourceVolumes: readonly string[]): void {
  const live = sim.liveResources();
  assert.deepEqual(
    live.droplets.map((d) => d.name),
    [],
    'no droplets left',
  );
  assert.deepEqual(
    live.snapshots.map((s) => s.name),
    [],
    'no snapshots left',
  );
  assert.deepEqual(
    live.sshKeys.map((k) => k.name),
    [],
    'no SSH keys left',
  );
  assert.deepEqual(
    live.volumes.map((v) => v.name).sort(),
    [...sourceVolumes].sort(),
    'no volumes left but the sources',
  );
  assert.deepEqual(live.pendingActions, [], 'no action in progress');
}

/** The run ended as cancelled: a workflow failure whose cause is the cancellation, not any other failure. */
export async function assertEndsCancelled(handle: Pick<WorkflowHandle, 'result'>): Promise<void> {
  await assert.rejects(handle.result(), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError, String(err));
    assert.ok(err.cause instanceof CancelledFailure, `cancelled, not ${err.cause?.message}`);
    return true;
  });
}
