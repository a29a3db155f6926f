// User droplets: the droplets a user's volumes are mounted on (not dosvob's), for the freeze-hook tests. Their SSH
// exec is a recorded-command shell, which works on every machine (no loop device, no root needed):
//   - every exec is recorded with its start and end times (ms, the host's clock: the simulator's snapshot
//     created_at uses the same one), so a test proves the order and timing of freeze, snapshot and thaw;
//   - `fsfreeze -f|-u MOUNTPOINT` is answered by a shim first on PATH that records the frozen interval, and fails as
//     the real one does (freezing a frozen filesystem: EBUSY; thawing a thawed one: EINVAL);
//   - commands really run (sh, coreutils): a background `sleep N; thaw` started by a freeze really sleeps and really
//     thaws, through the same shim, after the SSH session and even the client's process are gone.
// Each droplet has its own TMPDIR, so droplets of one simulator never share a freeze's token directory.
//
// Where the kernel allows it (root, loop devices: loopMountsAvailable()), a user droplet can also mount a volume's
// bytes for real: its file is attached to a loop device (once, for the droplet's life), and every exec mounts that
// device — one ext4 superblock, however many execs — in its private mount namespace, over a private tmpfs on /mnt so
// the host's /mnt is never touched. `fsfreeze` is then the real one (still recorded): writers on the droplet really
// block, and a snapshot of the frozen filesystem really is clean. The mount lives as long as some process of the
// droplet uses it (a background writer, a freeze's timer); ext4 keeps a frozen superblock alive by itself.
import { execFileSync } from 'node:child_process';
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { namespacesAvailable } from './droplet-ssh';
import type { SpawnSpec } from '../support/exec-ssh-server';

export interface RecordedCommand {
  seq: number;
  command: string;
  startedAt: number;
  /** Absent while it runs (or if its process was killed before it could say). */
  endedAt?: number;
  exitCode?: number;
}

export interface FreezeEvent {
  kind: 'freeze' | 'thaw';
  mountPoint: string;
  /** A freeze is recorded once in effect, a thaw just before it takes effect: the interval is never overstated. */
  at: number;
}

export interface FrozenInterval {
  mountPoint: string;
  from: number;
  /** Absent: still frozen. */
  to?: number;
}

const FSFREEZE_SHIM = `#!/bin/sh
# The simulator's fsfreeze: records when a mount point is frozen and thawed (in $DOSIM_LOG).
op=\${1:-}; mp=\${2:-}
if [ -z "$mp" ]; then echo "fsfreeze: no mount point specified" >&2; exit 1; fi
if [ -n "\${DOSIM_REAL_FSFREEZE:-}" ]; then
  # A real filesystem: the real fsfreeze, recorded on the safe side (a freeze once in effect, a thaw's time before).
  case "$op" in
    -f|--freeze) "$DOSIM_REAL_FSFREEZE" -f "$mp" || exit $?; echo "freeze $(date +%s%3N) $mp" >> "$DOSIM_LOG" ;;
    -u|--unfreeze) t=$(date +%s%3N); "$DOSIM_REAL_FSFREEZE" -u "$mp" || exit $?; echo "thaw $t $mp" >> "$DOSIM_LOG" ;;
    *) "$DOSIM_REAL_FSFREEZE" "$@" ;;
  esac
  exit
fi
st="$DOSIM_STATE/$(printf '%s' "$mp" | tr '/' '_')"
case "$op" in
  -f|--freeze)
    if [ -e "$st" ]; then echo "fsfreeze: $mp: freeze failed: Device or resource busy" >&2; exit 1; fi
    : > "$st"
    echo "freeze $(date +%s%3N) $mp" >> "$DOSIM_LOG" ;;
  -u|--unfreeze)
    if [ ! -e "$st" ]; then echo "fsfreeze: $mp: thaw failed: Invalid argument" >&2; exit 1; fi
    echo "thaw $(date +%s%3N) $mp" >> "$DOSIM_LOG"
    rm -f "$st" ;;
  *) echo "fsfreeze: unknown option $op" >&2; exit 1 ;;
esac
`;

/** A volume a user droplet mounts for real (loop mode). */
export interface LoopMount {
  /** The loop device its file is attached to. */
  device: string;
  /** Where every exec sees it mounted: under /mnt. */
  at: string;
}

/** Whether user droplets can mount volumes for real: root (for the exec namespaces), loop devices, losetup. */
export function loopMountsAvailable(): boolean {
  if (!namespacesAvailable() || !existsSync('/dev/loop-control')) return false;
  try {
    execFileSync('losetup', ['--version'], { stdio: 'ignore' });
    execFileSync('fsfreeze', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Attach a file to a free loop device; returns the device. */
export function attachLoop(file: string): string {
  return execFileSync('losetup', ['--find', '--show', file], { encoding: 'utf8' }).trim();
}

export function detachLoop(device: string): void {
  try {
    execFileSync('losetup', ['-d', device], { stdio: 'ignore' });
  } catch {
    // already detached
  }
}

export class UserDropletShell {
  private readonly log: string;
  private readonly bin: string;
  private readonly state: string;
  readonly tmpDir: string;
  private readonly started: RecordedCommand[] = [];

  constructor(
    readonly dir: string,
    readonly mounts: readonly LoopMount[] = [],
  ) {
    for (const m of mounts) {
      if (!/^\/mnt\/[A-Za-z0-9._-]+$/.test(m.at)) throw new Error(`mount point ${m.at}: a directory right under /mnt`);
    }
    this.bin = path.join(dir, 'bin');
    this.state = path.join(dir, 'frozen');
    this.tmpDir = path.join(dir, 'tmp');
    this.log = path.join(dir, 'events.log');
    for (const d of [this.bin, this.state, this.tmpDir]) mkdirSync(d, { recursive: true });
    writeFileSync(this.log, '');
    writeFileSync(path.join(this.bin, 'fsfreeze'), FSFREEZE_SHIM);
    chmodSync(path.join(this.bin, 'fsfreeze'), 0o755);
  }

  /** The exec of `command`, recorded: its end (and exit code) is appended to the log by the shell itself. */
  wrap(command: string): { command: string; env: NodeJS.ProcessEnv } {
    const seq = this.started.length + 1;
    this.started.push({ seq, command, startedAt: Date.now() });
    const quoted = `'${command.replace(/'/g, `'\\''`)}'`;
    // Loop mode: this exec's namespace gets its own /mnt, with the droplet's volumes mounted in it.
    const mount =
      this.mounts.length === 0
        ? ''
        : [
            'mount -t tmpfs -o mode=755,size=1m dosim-mnt /mnt',
            ...this.mounts.map((m) => `mkdir -p ${m.at} && mount ${m.device} ${m.at}`),
          ].join(' && ') + ' || exit 90; ';
    return {
      command: `${mount}sh -c ${quoted}; rc=$?; echo "end $(date +%s%3N) ${seq} $rc" >> "$DOSIM_LOG"; exit $rc`,
      env: {
        ...process.env,
        PATH: `${this.bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
        TMPDIR: this.tmpDir,
        DOSIM_LOG: this.log,
        DOSIM_STATE: this.state,
        ...(this.mounts.length > 0 ? { DOSIM_REAL_FSFREEZE: realFsfreeze() } : {}),
      },
    };
  }

  private lines(): string[][] {
    return readFileSync(this.log, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' '));
  }

  commands(): RecordedCommand[] {
    const ends = new Map<number, { at: number; rc: number }>();
    for (const [kind, at, seq, rc] of this.lines()) {
      if (kind === 'end') ends.set(Number(seq), { at: Number(at), rc: Number(rc) });
    }
    return this.started.map((c) => {
      const end = ends.get(c.seq);
      return end ? { ...c, endedAt: end.at, exitCode: end.rc } : { ...c };
    });
  }

  freezeEvents(): FreezeEvent[] {
    return this.lines()
      .filter(([kind]) => kind === 'freeze' || kind === 'thaw')
      .map(([kind, at, ...mp]) => ({ kind: kind as FreezeEvent['kind'], at: Number(at), mountPoint: mp.join(' ') }));
  }

  frozenIntervals(): FrozenInterval[] {
    const out: FrozenInterval[] = [];
    const open = new Map<string, FrozenInterval>();
    for (const e of this.freezeEvents()) {
      if (e.kind === 'freeze') {
        const i: FrozenInterval = { mountPoint: e.mountPoint, from: e.at };
        open.set(e.mountPoint, i);
        out.push(i);
      } else {
        const i = open.get(e.mountPoint);
        if (i) i.to = e.at;
        open.delete(e.mountPoint);
      }
    }
    return out;
  }

  /** Whether the mount point is frozen right now. */
  isFrozen(mountPoint: string): boolean {
    return this.frozenIntervals().some((i) => i.mountPoint === mountPoint && i.to === undefined);
  }

  /** A test's note in the same timeline (e.g. "worker killed"). */
  mark(text: string): void {
    appendFileSync(this.log, `mark ${Date.now()} ${text}\n`);
  }
}

function realFsfreeze(): string {
  return execFileSync('sh', ['-c', 'command -v fsfreeze'], { encoding: 'utf8' }).trim();
}

/** The user droplets of one simulator, by droplet id. */
export class UserDropletShells {
  private readonly shells = new Map<number, UserDropletShell>();

  constructor(private readonly root: string) {}

  create(dropletId: number, mounts: readonly LoopMount[] = []): UserDropletShell {
    const shell = new UserDropletShell(path.join(this.root, String(dropletId)), mounts);
    this.shells.set(dropletId, shell);
    return shell;
  }

  /** Detach every loop device (the simulator closes). Mounts left in exec namespaces hold their device until then. */
  close(): void {
    for (const shell of this.shells.values()) for (const m of shell.mounts) detachLoop(m.device);
  }

  get(dropletId: number): UserDropletShell | undefined {
    return this.shells.get(dropletId);
  }

  /** The exec spec of a droplet, recorded when it is a user droplet. */
  spawn(dropletId: number, command: string, base: (command: string) => SpawnSpec): SpawnSpec {
    const shell = this.shells.get(dropletId);
    if (!shell) return base(command);
    const wrapped = shell.wrap(command);
    return { ...base(wrapped.command), env: wrapped.env };
  }
}
