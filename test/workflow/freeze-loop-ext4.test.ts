// Freeze hooks on a real filesystem: the user droplet mounts two ext4 volumes for real (loop devices, where the
// kernel allows: root), each with a writer busy on it. The volume with a hook is snapshotted frozen, and its backup
// image is a clean ext4 (the freeze flushed the journal: no recovery needed, e2fsck finds nothing); the volume without
// one is snapshotted as a power cut would leave it (its journal needs recovery). Skipped, saying why, elsewhere.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { HookConfig } from '../../common/hooks-config';
import { hookKeys } from './freeze-support';
import { startHarness, type Harness } from '../support/harness';
import { loopMountsAvailable, type UserDropletShell } from '../simulator/user-droplet';
import { sshExec } from '../simulator/test-helpers';

const available = loopMountsAvailable();

function features(image: string): string {
  const out = execFileSync('dumpe2fs', ['-h', image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return /^Filesystem features:\s*(.*)$/m.exec(out)?.[1] ?? '';
}

describe(
  'freeze hooks on a loop-mounted ext4',
  { skip: available ? false : 'needs root, loop devices, losetup and fsfreeze' },
  () => {
    const keys = hookKeys();
    const { clientKey, hostKey } = keys;
    // The fingerprint of the droplet's host key (the hook's pin).
    const hook: HookConfig = keys.hook('fs-frozen', '/mnt/db', 120);
    let h: Harness;
    let shell: UserDropletShell;
    const writers: number[] = [];

    before(async () => {
      h = await startHarness({ config: { hooks: [hook] } });
      const frozen = await h.sim.createVolume({ name: 'fs-frozen', region: 'nyc3', sizeGigabytes: 1 });
      const plain = await h.sim.createVolume({ name: 'fs-plain', region: 'nyc3', sizeGigabytes: 1 });
      const user = await h.sim.createUserDroplet({
        name: 'db-host',
        region: 'nyc3',
        hostKey,
        authorizedKeys: [clientKey.publicKey],
        mounts: [
          { volumeId: frozen.id, at: '/mnt/db', format: 'ext4' },
          { volumeId: plain.id, at: '/mnt/plain', format: 'ext4' },
        ],
      });
      shell = user.shell;
      const { ip, port } = user.ssh;
      // A writer busy on each filesystem, for the whole run: it also keeps both mounted.
      for (const dir of ['/mnt/db', '/mnt/plain']) {
        const loop = `while :; do date >> ${dir}/log; sleep 0.05; done`;
        const r = await sshExec(
          ip,
          port,
          clientKey.privateKey,
          `setsid sh -c '${loop}' </dev/null >/dev/null 2>&1 & echo $!`,
        );
        assert.equal(r.code, 0, r.stderr);
        writers.push(Number(r.stdout.toString().trim()));
      }
    });
    after(async () => {
      for (const pid of writers) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      await h?.close();
      keys.remove();
    });

    it('backs up the frozen volume as a clean ext4, the other as after a power cut', async () => {
      const result = await h.run({ include: ['fs-frozen', 'fs-plain'] });
      const frozen = result.volumes.find((v) => v.name === 'fs-frozen');
      const plain = result.volumes.find((v) => v.name === 'fs-plain');
      assert.equal(frozen?.ok, true, frozen?.error);
      assert.equal(frozen.frozen, true, frozen.consistency);
      assert.equal(plain?.ok, true, plain?.error);
      assert.equal(plain.frozen, undefined);
      const [window] = shell.frozenIntervals();
      assert.ok(window?.to !== undefined, 'frozen for real, then thawed');

      const frozenImage = path.join(h.backupsDir, 'fs-frozen.img');
      const plainImage = path.join(h.backupsDir, 'fs-plain.img');
      assert.doesNotMatch(features(frozenImage), /needs_recovery/, 'the frozen snapshot needs no journal recovery');
      const fsck = spawnSync('e2fsck', ['-fn', frozenImage], { encoding: 'utf8' });
      assert.equal(fsck.status, 0, `e2fsck -fn finds the frozen snapshot clean: ${fsck.stdout}${fsck.stderr}`);
      assert.match(features(plainImage), /needs_recovery/, 'the unfrozen snapshot of a mounted ext4 needs recovery');
    });
  },
);
