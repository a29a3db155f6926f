// A small real SSH server (ssh2's server) that runs exec requests as local processes.
// Test infrastructure: the DigitalOcean simulator's droplets and the transfer tests/bench stand on it.
import { spawn } from 'node:child_process';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Server, utils, type Connection, type ParsedKey } from 'ssh2';
import { ed25519FromSeed } from '../../activities/run-keys';

export interface SpawnSpec {
  file: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
}

export interface ExecSshServerOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Private host key (OpenSSH or PEM). */
  hostKey: string | Buffer;
  /** Public keys (OpenSSH "ssh-ed25519 AAAA..." lines) allowed to log in; read on every attempt. */
  authorizedKeys: () => readonly string[];
  /** How to run an exec request; default `sh -c <command>`. */
  spawnCommand?: (command: string) => SpawnSpec;
  /** Fault injection: drop the whole connection after this many bytes of stdout were sent. */
  dropAfterBytes?: () => number | undefined;
  /** Called when `dropAfterBytes` dropped a connection (e.g. to make the fault one-shot). */
  onDrop?: () => void;
  /**
   * Fault injection: stop sending stdout after this many bytes, the process and the connection staying up, until the
   * channel closes: a transfer caught mid-way on any machine, however fast.
   */
  stallAfterBytes?: () => number | undefined;
  /** Called when `stallAfterBytes` stalled an exec (e.g. to make the fault one-shot). */
  onStall?: () => void;
  /**
   * Fault injection: stop reading stdin after this many bytes (the SSH window then fills and the client's writes
   * block), the process and the connection staying up, until the channel closes: a restore caught mid-write.
   */
  stallInputAfterBytes?: () => number | undefined;
  onInputStall?: () => void;
  /** Run each exec in its own process group and kill the whole group when the channel closes. */
  killProcessGroup?: boolean;
}

function parsePublicKey(line: string): ParsedKey | undefined {
  const parsed = utils.parseKey(line);
  if (parsed instanceof Error) return undefined;
  return Array.isArray(parsed) ? parsed[0] : parsed;
}

function sameKey(a: ParsedKey, algo: string, data: Buffer): boolean {
  const pub = a.getPublicSSH();
  return a.type === algo && pub.length === data.length && timingSafeEqual(pub, data);
}

export class ExecSshServer {
  private readonly server: Server;
  private readonly connections = new Set<Connection>();
  private address: AddressInfo | undefined;

  constructor(private readonly options: ExecSshServerOptions) {
    this.server = new Server({ hostKeys: [options.hostKey] }, (client) => this.onClient(client));
  }

  async listen(): Promise<{ host: string; port: number }> {
    const host = this.options.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port ?? 0, host, () => resolve());
    });
    this.address = this.server.address() as AddressInfo;
    return { host, port: this.address.port };
  }

  get port(): number {
    if (!this.address) throw new Error('server not listening');
    return this.address.port;
  }

  /** Close every open connection (as a deleted droplet does). */
  dropAll(): void {
    for (const c of this.connections) c.end();
    this.connections.clear();
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onClient(client: Connection): void {
    this.connections.add(client);
    client.on('close', () => this.connections.delete(client));
    client.on('error', () => this.connections.delete(client));
    client.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
      const allowed = this.options
        .authorizedKeys()
        .map(parsePublicKey)
        .find((k): k is ParsedKey => k !== undefined && sameKey(k, ctx.key.algo, ctx.key.data));
      if (!allowed) return ctx.reject(['publickey']);
      if (!ctx.signature) return ctx.accept(); // the client asks whether this key would do
      if (ctx.blob && allowed.verify(ctx.blob, ctx.signature, ctx.hashAlgo) === true) return ctx.accept();
      return ctx.reject(['publickey']);
    });
    client.on('ready', () => {
      client.on('session', (acceptSession) => {
        const session = acceptSession();
        session.on('exec', (accept, _reject, info) => {
          const stream = accept();
          const spec = this.options.spawnCommand?.(info.command) ?? { file: 'sh', args: ['-c', info.command] };
          const group = this.options.killProcessGroup === true;
          const child = spawn(spec.file, spec.args, {
            env: spec.env ?? process.env,
            stdio: ['pipe', 'pipe', 'pipe'],
            detached: group,
          });
          const kill = (): void => {
            try {
              if (group && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
              else child.kill('SIGKILL');
            } catch {
              // already gone
            }
          };
          const limit = this.options.dropAfterBytes?.();
          const stallAt = this.options.stallAfterBytes?.();
          let sent = 0;
          let dropped = false;
          let stalled = false;
          child.stdout.on('data', (chunk: Buffer) => {
            if (dropped || stalled) return;
            sent += chunk.length;
            if (limit !== undefined && sent > limit) {
              dropped = true;
              kill();
              client.end();
              this.options.onDrop?.();
              return;
            }
            if (stallAt !== undefined && sent > stallAt) {
              stalled = true;
              child.stdout.pause(); // never resumed: the agent blocks on its next write
              stream.write(chunk.subarray(0, chunk.length - (sent - stallAt)));
              this.options.onStall?.();
              return;
            }
            if (!stream.write(chunk)) {
              child.stdout.pause();
              stream.once('drain', () => {
                if (!stalled) child.stdout.resume();
              });
            }
          });
          child.stderr.pipe(stream.stderr);
          const inputStallAt = this.options.stallInputAfterBytes?.();
          if (inputStallAt === undefined) stream.pipe(child.stdin);
          else {
            let received = 0;
            const forward = (chunk: Buffer): void => {
              received += chunk.length;
              if (received <= inputStallAt) {
                if (!child.stdin.write(chunk)) {
                  stream.pause();
                  child.stdin.once('drain', () => received <= inputStallAt && stream.resume());
                }
                return;
              }
              child.stdin.write(chunk.subarray(0, chunk.length - (received - inputStallAt)));
              stream.off('data', forward);
              stream.pause(); // never resumed: the client's window fills
              this.options.onInputStall?.();
            };
            stream.on('data', forward);
            stream.on('end', () => received <= inputStallAt && child.stdin.end());
          }
          child.stdin.on('error', () => undefined); // the remote may exit before reading all input
          stream.on('close', kill);
          // A stream paused by a fault never emits 'close': the connection's end still kills what it runs.
          client.once('close', kill);
          child.on('close', (code, signal) => {
            if (signal) stream.exit(signal.replace(/^SIG/, ''), false, '');
            else stream.exit(code ?? 0);
            stream.end();
          });
          child.on('error', (err) => {
            stream.stderr.write(`exec failed: ${err.message}\n`);
            stream.exit(127);
            stream.end();
          });
        });
      });
    });
  }
}

/**
 * A fresh ed25519 key pair in OpenSSH format. Not ssh2's utils.generateKeyPairSync: about 1 key in 300 it makes cannot
 * be parsed back ("Malformed OpenSSH private key"), which made tests fail at random.
 */
export function generateEd25519(): { privateKey: string; publicKey: string } {
  const { privateKey, publicKey } = ed25519FromSeed(randomBytes(32), 'dosvob-test');
  return { privateKey, publicKey };
}
