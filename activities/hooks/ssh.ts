// SSH to the user's droplet for a hook: the host key is checked against conf.json's pin (by its SHA-256 fingerprint,
// so a known_hosts line and a fingerprint pin alike), and refused — before any command runs — when it differs.
import { ApplicationFailure } from '@temporalio/common';
import { Client, utils, type ConnectConfig } from 'ssh2';
import { sha256Fingerprint } from '../../common/hooks-config';
import { execChannel } from '../transfer/ssh';
import { outputForError } from './redact';
import { HookFailureTypes } from './types';

export interface HookSshTarget {
  /** For messages: "droplet db-1 (203.0.113.7)". */
  what: string;
  host: string;
  port: number;
  username: string;
  privateKey: string;
  hostKeyFingerprint: string;
  /** The pinned key's type, if known: only that type is asked for. */
  hostKeyType?: string;
  /** Cut out of every message. */
  secrets: readonly string[];
}

export interface ExecResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

/** Refuse a key ssh2 cannot use before connecting (a passphrase-protected key, a public key given as private). */
export function checkPrivateKey(privateKey: string, source: string): void {
  const parsed = utils.parseKey(privateKey);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error || !key.isPrivateKey()) {
    const why = key instanceof Error ? key.message.replace(/\s+/g, ' ') : 'not a private key';
    throw ApplicationFailure.nonRetryable(
      `${source} cannot be used as an SSH private key (${why}); an unencrypted OpenSSH or PEM key is needed`,
      HookFailureTypes.refused,
    );
  }
}

/** The host key algorithms that present a key of this type (an RSA key signs with SHA-2 first). */
function hostKeyAlgorithms(type: string): NonNullable<NonNullable<ConnectConfig['algorithms']>['serverHostKey']> {
  if (type === 'ssh-rsa') return ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];
  return [type as 'ssh-ed25519'];
}

function connect(t: HookSshTarget, timeoutMs: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let presented: string | undefined;
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      client.end();
      reject(err);
    };
    client.once('ready', () => {
      settled = true;
      client.on('error', () => undefined); // later errors surface through the exec
      resolve(client);
    });
    client.once('error', (err: Error) => {
      if (presented !== undefined && presented !== t.hostKeyFingerprint) {
        fail(
          ApplicationFailure.nonRetryable(
            `refusing ${t.what}: it presented host key ${presented}, but conf.json pins ${t.hostKeyFingerprint} ` +
              `(hooks: ssh.host_key). If the droplet was rebuilt, check its new key (ssh-keyscan) and update the pin.`,
            HookFailureTypes.hostKeyMismatch,
          ),
        );
        return;
      }
      const message = outputForError(err.message, t.secrets);
      if (t.hostKeyType && /no matching host ?key/i.test(message)) {
        fail(
          ApplicationFailure.nonRetryable(
            `refusing ${t.what}: it offers no ${t.hostKeyType} host key, the type conf.json pins (hooks: ssh.host_key)`,
            HookFailureTypes.hostKeyMismatch,
          ),
        );
        return;
      }
      if (/authentication methods failed/i.test(message)) {
        fail(
          ApplicationFailure.nonRetryable(
            `${t.what} refused the hook's SSH key for user ${t.username} (is its public key in authorized_keys?)`,
            HookFailureTypes.refused,
          ),
        );
        return;
      }
      fail(ApplicationFailure.retryable(`cannot reach ${t.what} over SSH: ${message}`, HookFailureTypes.failed));
    });
    client.once('close', () =>
      fail(ApplicationFailure.retryable(`SSH connection to ${t.what} closed during setup`, HookFailureTypes.failed)),
    );
    client.connect({
      host: t.host,
      port: t.port,
      username: t.username,
      privateKey: t.privateKey,
      readyTimeout: timeoutMs,
      authHandler: ['publickey'],
      ...(t.hostKeyType ? { algorithms: { serverHostKey: hostKeyAlgorithms(t.hostKeyType) } } : {}),
      hostVerifier: (key: Buffer) => {
        presented = sha256Fingerprint(key);
        return presented === t.hostKeyFingerprint;
      },
    });
  });
}

/**
 * Run one command on the droplet and collect its output. The connection is closed when it ends, fails, times out or
 * `signal` aborts. Only a refusal (host key, login) is non-retryable.
 */
export async function runOnDroplet(
  t: HookSshTarget,
  command: string,
  options: { timeoutMs: number; connectTimeoutMs?: number; signal?: AbortSignal },
): Promise<ExecResult> {
  const client = await connect(t, options.connectTimeoutMs ?? 20_000);
  try {
    const channel = await execChannel(client, command);
    return await new Promise<ExecResult>((resolve, reject) => {
      let stdout = '';
      let stderr = '';
      let exitCode: number | null = null;
      const timer = setTimeout(
        () => reject(ApplicationFailure.retryable(`${t.what}: the hook did not finish in ${options.timeoutMs} ms`)),
        options.timeoutMs,
      );
      const onAbort = () => reject(ApplicationFailure.retryable(`${t.what}: the hook was cancelled`));
      options.signal?.addEventListener('abort', onAbort, { once: true });
      channel.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
      channel.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
      channel.on('exit', (code: number | null) => (exitCode = code));
      channel.on('close', () => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        resolve({ exitCode, stdout, stderr });
      });
      channel.end();
    });
  } finally {
    client.end();
  }
}
