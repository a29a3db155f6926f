// SSH connection to the droplet, accepted only if it presents the pinned host key; the run's keys derived from the
// store worker's key_secret; a connection that is re-made after a drop; what the round trip says about the link.
import { createHash, timingSafeEqual } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { Client, utils, type ClientChannel, type ConnectConfig } from 'ssh2';
import { deriveRunKey } from '../run-keys.js';
import { ConnectionLostError, HostKeyMismatchError, KeySecretMismatchError, TransferError } from './errors.js';

export interface SshTarget {
  host: string;
  port: number;
  username: string;
  /** OpenSSH public key line of the droplet's host key ("ssh-ed25519 AAAA... comment"). */
  hostPublicKey: string;
  privateKey: string | Buffer;
}

export interface SshConnection {
  client: Client;
  socket: Socket;
  /** Bytes read from and written to the TCP connection so far. */
  wireBytes(): { read: number; written: number };
  close(): void;
}

export function fingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

export function publicKeyBlob(openSshLine: string): Buffer {
  const parsed = utils.parseKey(openSshLine.trim());
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error) {
    throw new TransferError(
      `cannot parse the pinned host key: ${key instanceof Error ? key.message : 'empty'}`,
      'BadHostKey',
      false,
    );
  }
  return key.getPublicSSH();
}

// Fast AEAD ciphers first (aes128-gcm runs ~660 MB/s with ssh2's native binding on AES-NI machines).
const CIPHERS: NonNullable<NonNullable<ConnectConfig['algorithms']>['cipher']> = [
  'aes128-gcm@openssh.com',
  'aes256-gcm@openssh.com',
  'chacha20-poly1305@openssh.com',
  'aes128-ctr',
  'aes256-ctr',
];

export async function connectSsh(target: SshTarget, signal?: AbortSignal, timeoutMs = 20_000): Promise<SshConnection> {
  const pinned = publicKeyBlob(target.hostPublicKey);
  let presented: Buffer | undefined;
  const socket = netConnect({ host: target.host, port: target.port });
  socket.setNoDelay(true);
  const client = new Client();
  const conn: SshConnection = {
    client,
    socket,
    wireBytes: () => ({ read: socket.bytesRead, written: socket.bytesWritten }),
    close: () => {
      client.end();
      socket.destroy();
    },
  };
  await new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      conn.close();
      reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const done = (err?: Error) => {
      signal?.removeEventListener('abort', onAbort);
      client.removeAllListeners('ready');
      if (err) {
        conn.close();
        reject(err);
      } else resolve();
    };
    client.once('ready', () => done());
    client.once('error', (err: Error) => {
      if (presented && !keysEqual(presented, pinned)) {
        done(new HostKeyMismatchError(`${target.host}:${target.port}`, fingerprint(pinned), fingerprint(presented)));
      } else
        done(
          new ConnectionLostError(`SSH connection to ${target.host}:${target.port} failed: ${err.message}`, {
            cause: err,
          }),
        );
    });
    client.once('close', () =>
      done(new ConnectionLostError(`SSH connection to ${target.host}:${target.port} closed during setup`)),
    );
    client.connect({
      sock: socket,
      username: target.username,
      privateKey: target.privateKey,
      readyTimeout: timeoutMs,
      keepaliveInterval: 10_000,
      keepaliveCountMax: 3,
      algorithms: { cipher: CIPHERS, compress: ['none'] },
      // Straight to the key: ssh2's default first tries "none", one more round trip before the session can start.
      authHandler: ['publickey'],
      hostVerifier: (key: Buffer) => {
        presented = Buffer.from(key);
        return keysEqual(presented, pinned);
      },
    });
  });
  client.on('error', () => undefined); // later errors surface through the channels
  return conn;
}

function keysEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export function execChannel(client: Client, command: string): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    client.exec(command, (err, channel) =>
      err ? reject(new ConnectionLostError(`exec failed: ${err.message}`, { cause: err })) : resolve(channel),
    );
  });
}

/** Where the droplet is and which run's keys to use: what a transfer's input says (no key in it). */
export interface RunSshInput {
  host: string;
  port: number;
  username: string;
  /** The run id the SSH keys are derived from. */
  keyRef: string;
  /** The run's client key as registered on the account (MD5 colon-hex; public). */
  clientKeyFingerprint?: string;
}

/**
 * The SSH target of a run, on the store worker: the client key it logs in with and the host key the droplet must
 * present, both derived from this worker's key_secret and the run id, so no workflow input can name a host of its own.
 * A worker whose key_secret derives another client key than the run registered fails at once (KeySecretMismatch).
 */
export function runSshTarget(keySecret: string, input: RunSshInput): SshTarget {
  const clientKey = deriveRunKey(keySecret, input.keyRef, 'client');
  if (input.clientKeyFingerprint && !sameFingerprint(input.clientKeyFingerprint, clientKey.fingerprint)) {
    throw new KeySecretMismatchError(input.clientKeyFingerprint, clientKey.fingerprint);
  }
  return {
    host: input.host,
    port: input.port,
    username: input.username,
    hostPublicKey: deriveRunKey(keySecret, input.keyRef, 'host').publicKey,
    privateKey: clientKey.privateKey,
  };
}

function sameFingerprint(a: string, b: string): boolean {
  const norm = (f: string) => f.trim().toLowerCase().replace(/^md5:/, '');
  return norm(a) === norm(b);
}

/**
 * A round trip under this many ms means a LAN: one SSH window (2 MiB) then carries >= 250 MB/s, a droplet's 2 Gbit/s,
 * and the link is faster than zlib.
 */
export const LAN_RTT_MS = 8;

/** Pings a link is given to show one round trip under LAN_RTT_MS (the first that does ends the measure). */
export const LAN_PINGS = 3;

/**
 * Whether the agent's link is a LAN, from warm round trips on its started session (AgentSession.ping): the fastest of
 * up to LAN_PINGS. Not the TCP handshake or the channel open: on a loaded machine those include the sshd's and the
 * agent's start-up work and pass the limit on loopback (which then got 4 stripes and a zlib sample per block), and a
 * TCP-terminating proxy hides the link's delay from the handshake.
 */
export async function isLan(ping: () => Promise<number>): Promise<boolean> {
  for (let k = 0; k < LAN_PINGS; k++) if ((await ping()) < LAN_RTT_MS) return true;
  return false;
}

/**
 * Compression unless the caller chose: never on a LAN (bench: compressing 5:1 text made a first sync 1.35x slower on
 * loopback), else auto (3.6x faster on 100 Mbit/s for the same text).
 */
export function defaultCompression<C extends string>(onLan: boolean, chosen: C | undefined): C | 'never' | 'auto' {
  return chosen ?? (onLan ? 'never' : 'auto');
}

/** One SSH connection for a transfer's stripes, made again after a drop (at most `maxReconnects` times per call). */
export class LinkManager {
  private conn: SshConnection | undefined;
  private connecting: Promise<SshConnection> | undefined;
  private closedWire = { read: 0, written: 0 };
  reconnects = 0;
  private connects = 0;

  constructor(
    private readonly target: SshTarget,
    private readonly maxReconnects: number,
    private readonly signal: AbortSignal,
  ) {}

  async get(): Promise<SshConnection> {
    if (this.conn) return this.conn;
    if (!this.connecting) {
      if (this.connects > 0) {
        if (this.reconnects >= this.maxReconnects) {
          throw new ConnectionLostError(`SSH connection lost ${this.reconnects + 1} times; giving up for this attempt`);
        }
        this.reconnects++;
      }
      this.connects++;
      this.connecting = connectSsh(this.target, this.signal).then(
        (c) => {
          this.conn = c;
          this.connecting = undefined;
          c.client.once('close', () => this.drop(c));
          return c;
        },
        (err: unknown) => {
          this.connecting = undefined;
          throw err;
        },
      );
    }
    return this.connecting;
  }

  isAlive(c: SshConnection): boolean {
    return this.conn === c && !c.socket.destroyed;
  }

  drop(c: SshConnection): void {
    if (this.conn !== c) return;
    this.conn = undefined;
    const w = c.wireBytes();
    this.closedWire.read += w.read;
    this.closedWire.written += w.written;
    c.close();
  }

  wire(): { read: number; written: number } {
    const w = this.conn?.wireBytes() ?? { read: 0, written: 0 };
    return { read: this.closedWire.read + w.read, written: this.closedWire.written + w.written };
  }

  close(): void {
    if (this.conn) this.drop(this.conn);
  }
}
