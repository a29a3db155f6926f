// user_data for the ephemeral droplet: cloud-init installs the run's host key, so the first
// SSH connection can be pinned to a key dosvob knows in advance (no trust-on-first-use).
import type { SshKeyPair } from '../run-keys';

export function cloudConfigWithHostKey(hostKey: SshKeyPair): string {
  const indented = hostKey.privateKey
    .trimEnd()
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n');
  return [
    '#cloud-config',
    'ssh_deletekeys: true',
    'ssh_genkeytypes: []',
    'ssh_keys:',
    '  ed25519_private: |',
    indented,
    `  ed25519_public: ${hostKey.publicKey}`,
    '',
  ].join('\n');
}
