// What the freeze-hook tests share: a client key in a key file the hook names, the user droplet's host key, and a hook
// for a volume glob whose freeze and thaw are `fsfreeze` of a mount point on the droplet.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pinnedFingerprint, type HookConfig } from '../../common/hooks-config';
import { generateEd25519 } from '../support/exec-ssh-server';

export interface HookKeys {
  clientKey: { privateKey: string; publicKey: string };
  hostKey: { privateKey: string; publicKey: string };
  keyDir: string;
  keyFile: string;
  /** A hook with these keys; `changes` override any field. */
  hook(volumes: string, mount: string, maxFreezeSeconds: number, changes?: Partial<HookConfig>): HookConfig;
  remove(): void;
}

export function hookKeys(): HookKeys {
  const clientKey = generateEd25519();
  const hostKey = generateEd25519();
  const keyDir = mkdtempSync(path.join(tmpdir(), 'dosvob-hook-key-'));
  const keyFile = path.join(keyDir, 'id_ed25519');
  writeFileSync(keyFile, clientKey.privateKey, { mode: 0o600 });
  return {
    clientKey,
    hostKey,
    keyDir,
    keyFile,
    hook: (volumes, mount, maxFreezeSeconds, changes = {}) => ({
      volumes,
      droplet: 'db-host',
      ssh: {
        user: 'root',
        port: 22,
        privateKeyFile: keyFile,
        // A known_hosts line, as `ssh-keyscan` prints it.
        hostKeyFingerprint: pinnedFingerprint(`db-host,127.0.0.1 ${hostKey.publicKey}`) ?? '',
      },
      freeze: `fsfreeze -f ${mount}`,
      thaw: `fsfreeze -u ${mount}`,
      maxFreezeSeconds,
      hooksRequired: true,
      ...changes,
    }),
    remove: () => rmSync(keyDir, { recursive: true, force: true }),
  };
}
