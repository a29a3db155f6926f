// A region's droplets, for a run that has several there (backup.ts, PIPELINED_VOLUMES): a volume takes the ready
// droplet with the fewest volumes on it, so no volume waits for a droplet that boots slowly while another is up, and
// gives it back at its detach. A droplet that never comes up is passed over; only when all have failed does a taker
// fail, with the first one's error. Workflow code: deterministic, promises only.
import type { ReadyDroplet } from './ephemeral';

interface Member {
  ready?: ReadyDroplet;
  failed?: { error: unknown };
  /** Volumes that took it and have not given it back. */
  load: number;
  settled: Promise<void>;
}

export class DropletPool {
  private readonly members: Member[];

  constructor(droplets: readonly Promise<ReadyDroplet>[]) {
    this.members = droplets.map((p) => {
      const m: Member = { load: 0, settled: Promise.resolve() };
      m.settled = p.then(
        (d) => void (m.ready = d),
        (error: unknown) => void (m.failed = { error }),
      );
      return m;
    });
  }

  async take(): Promise<ReadyDroplet> {
    for (;;) {
      const ready = this.members.filter((m) => m.ready);
      if (ready.length > 0) {
        const m = ready.reduce((a, b) => (b.load < a.load ? b : a));
        m.load++;
        return m.ready as ReadyDroplet;
      }
      const pending = this.members.filter((m) => m.failed === undefined);
      if (pending.length === 0) throw this.members[0]?.failed?.error;
      await Promise.race(pending.map((m) => m.settled));
    }
  }

  give(dropletId: string): void {
    const m = this.members.find((x) => x.ready?.dropletId === dropletId);
    if (m && m.load > 0) m.load--;
  }
}
