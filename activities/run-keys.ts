// Per-run SSH keys derived from dosvob's configured secret and the run id.
// Deriving (rather than generating and storing) keeps every private key out of workflow history
// while letting any worker that shares the secret resume the run.
import { createHash, createHmac, createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface SshKeyPair {
  /** OpenSSH private key ("-----BEGIN OPENSSH PRIVATE KEY-----"). */
  privateKey: string;
  /** "ssh-ed25519 AAAA... comment" */
  publicKey: string;
  /** MD5 colon-hex of the public key blob, as DigitalOcean reports it. */
  fingerprint: string;
}

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function sshString(data: Buffer | string): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data) : data;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** An ed25519 key pair in OpenSSH format from a 32-byte seed (encoded here: ssh2's own generator emits a key it cannot
 * parse again about once in 300 tries). */
export function ed25519FromSeed(seed: Buffer, comment: string): SshKeyPair {
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  const pub = Buffer.from(jwk.x ?? '', 'base64url');
  const pubBlob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
  const check = uint32(seed.readUInt32BE(0));
  let priv = Buffer.concat([
    check,
    check,
    sshString('ssh-ed25519'),
    sshString(pub),
    sshString(Buffer.concat([seed, pub])),
    sshString(comment),
  ]);
  const pad: number[] = [];
  for (let i = 1; (priv.length + pad.length) % 8 !== 0; i++) pad.push(i);
  priv = Buffer.concat([priv, Buffer.from(pad)]);
  const body = Buffer.concat([
    Buffer.from('openssh-key-v1\0'),
    sshString('none'),
    sshString('none'),
    sshString(''),
    uint32(1),
    sshString(pubBlob),
    sshString(priv),
  ]);
  const b64 =
    body
      .toString('base64')
      .match(/.{1,70}/g)
      ?.join('\n') ?? '';
  const md5 = createHash('md5').update(pubBlob).digest('hex');
  return {
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}\n-----END OPENSSH PRIVATE KEY-----\n`,
    publicKey: `ssh-ed25519 ${pubBlob.toString('base64')} ${comment}`,
    fingerprint: md5.match(/../g)?.join(':') ?? md5,
  };
}

export type KeyRole = 'client' | 'host';

/** The run's client key (registered on the account) or the droplet's host key (pinned). */
export function deriveRunKey(secret: string, runId: string, role: KeyRole): SshKeyPair {
  const seed = createHmac('sha256', secret).update(`dosvob/ssh-${role}-key/v1/${runId}`).digest();
  return ed25519FromSeed(seed, `dosvob-${role}-${runId.slice(0, 8)}`);
}

/** The secret from conf.json / DOSVOB_KEY_SECRET, or one generated once and kept in dosvob's data directory. */
export function loadOrCreateKeySecret(configured: string | undefined, dataDir: string): string {
  if (configured) return configured;
  const file = path.join(dataDir, 'key-secret');
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const secret = randomBytes(32).toString('hex');
    writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    return readFileSync(file, 'utf8').trim();
  }
}
