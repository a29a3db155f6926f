// Wait until a droplet answers SSH with exactly the pinned host key. A different key is never
// trusted: it fails the activity at once (non-retryable), since retrying cannot make it right.
import { ApplicationFailure } from '@temporalio/common';
import { Client, utils } from 'ssh2';
import { setTimeout as delay } from 'node:timers/promises';
import { FailureTypes } from './errors';

export function publicKeyBlob(openSshLine: string): Buffer {
  const parsed = utils.parseKey(openSshLine);
  if (parsed instanceof Error) throw new Error(`invalid public key: ${parsed.message}`);
  return (Array.isArray(parsed) ? parsed[0] : parsed).getPublicSSH();
}

export class HostKeyMismatchError extends Error {
  override readonly name = 'HostKeyMismatchError';
}

/** One SSH login that runs `true`; resolves on success, rejects with the reason. */
export function probeSsh(options: {
  host: string;
  port: number;
  hostPublicKey: string;
  privateKey: string;
  timeoutMs: number;
}): Promise<void> {
  const expected = publicKeyBlob(options.hostPublicKey);
  return new Promise((resolve, reject) => {
    const client = new Client();
    let mismatch = false;
    let settled = false;
    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      client.end();
      if (err) reject(err);
      else resolve();
    };
    client
      .on('ready', () => {
        client.exec('true', (err, stream) => {
          if (err) return settle(err);
          stream.on('close', () => settle());
          stream.resume();
        });
      })
      .on('error', (err) => {
        settle(mismatch ? new HostKeyMismatchError('the droplet presented a host key other than the pinned one') : err);
      })
      // A server that goes away mid-handshake closes without an error: that must end the probe too.
      .on('close', () => settle(new Error('the connection closed before SSH was ready')))
      .connect({
        host: options.host,
        port: options.port,
        username: 'root',
        privateKey: options.privateKey,
        readyTimeout: options.timeoutMs,
        hostVerifier: (key: Buffer) => {
          mismatch = !key.equals(expected);
          return !mismatch;
        },
      });
  });
}

export async function waitForPinnedSsh(options: {
  host: string;
  port: number;
  hostPublicKey: string;
  privateKey: string;
  pollIntervalMs: number;
  onAttempt: (attempt: number) => void;
  signal: AbortSignal;
}): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    options.onAttempt(attempt);
    try {
      await probeSsh({ ...options, timeoutMs: Math.max(5_000, options.pollIntervalMs * 4) });
      return;
    } catch (err) {
      if (err instanceof HostKeyMismatchError) {
        throw ApplicationFailure.nonRetryable(
          `${options.host}:${options.port} presented a host key other than the run's pinned key; refusing to connect`,
          FailureTypes.hostKeyMismatch,
        );
      }
      // Not up yet (connection refused, sshd starting): the activity's own deadline bounds this loop.
      await delay(options.pollIntervalMs, undefined, { signal: options.signal });
    }
  }
}
