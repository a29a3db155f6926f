// Fault decisions, drawn from a seeded generator so a test run is reproducible.
import { Rng } from './rng';
import type { Faults } from './types';

export interface BeforeFault {
  kind: 'server_error' | 'rate_limit_burst';
  status: number;
  retryAfterSeconds?: number;
}

export interface AfterFault {
  /** Answer this 5xx status although the operation was done. */
  lostStatus?: number;
  /** Delay the answer. */
  slowMs?: number;
}

export class FaultInjector {
  private faults: Faults = {};
  private readonly rng: Rng;
  private burstCounter = 0;

  constructor(seed: number) {
    this.rng = new Rng(seed ^ 0x5eed);
  }

  set(faults: Faults): void {
    this.faults = structuredClone(faults);
    this.burstCounter = 0;
    if (faults.seed !== undefined) this.rng.reseed(faults.seed);
  }

  /** The current faults, with one-shot counters as they stand now. */
  get(): Faults {
    return structuredClone(this.faults);
  }

  private matches(routeKey: string): boolean {
    const only = this.faults.only;
    return !only || only.length === 0 || only.includes(routeKey);
  }

  /** Decided before the operation runs: a 5xx or a 429 burst instead of doing anything. */
  before(routeKey: string): BeforeFault | undefined {
    if (!this.matches(routeKey)) return undefined;
    const f = this.faults;
    const status = f.serverErrorStatus ?? 500;
    const burst = f.rateLimitBurst;
    if (burst && burst.every >= 0 && burst.length > 0) {
      const i = this.burstCounter++;
      if (i % (burst.every + burst.length) >= burst.every) {
        return { kind: 'rate_limit_burst', status: 429, retryAfterSeconds: burst.retryAfterSeconds ?? 1 };
      }
    }
    if (f.failNextRequests && f.failNextRequests > 0) {
      f.failNextRequests--;
      return { kind: 'server_error', status };
    }
    if (this.rng.chance(f.serverErrorRate)) return { kind: 'server_error', status };
    return undefined;
  }

  /** Decided after the operation ran: lose the answer, or answer late. */
  after(routeKey: string): AfterFault {
    if (!this.matches(routeKey)) return {};
    const f = this.faults;
    const result: AfterFault = {};
    if (this.rng.chance(f.lostResponseRate)) result.lostStatus = f.serverErrorStatus ?? 500;
    if (this.rng.chance(f.slowRate)) result.slowMs = f.slowMs ?? 30_000;
    return result;
  }

  actionShouldError(): boolean {
    const f = this.faults;
    if (f.failNextActions && f.failNextActions > 0) {
      f.failNextActions--;
      return true;
    }
    return this.rng.chance(f.actionErrorRate);
  }

  dropletShouldStick(): boolean {
    const f = this.faults;
    if (f.stuckDroplets && f.stuckDroplets > 0) {
      f.stuckDroplets--;
      return true;
    }
    return this.rng.chance(f.dropletStuckRate);
  }

  sshDropAfterBytes(): number | undefined {
    return this.faults.sshDropAfterBytes;
  }

  /** The SSH drop fired: it is one-shot unless `sshDropTimes` asks for more (counted here, not re-armed by a test). */
  sshDropped(): void {
    const f = this.faults;
    if (f.sshDropTimes !== undefined && f.sshDropTimes > 1) {
      f.sshDropTimes--;
      return;
    }
    delete f.sshDropAfterBytes;
    delete f.sshDropTimes;
  }

  /** Whether the snapshot just taken is to be torn (`tornSnapshots`, counted down). */
  snapshotShouldTear(): boolean {
    const f = this.faults;
    if (f.tornSnapshots && f.tornSnapshots > 0) {
      f.tornSnapshots--;
      return true;
    }
    return false;
  }

  /** An SSH exec stalled: one-shot, so the next exec (a retry) goes through. */
  sshStalled(): void {
    delete this.faults.sshStallAfterBytes;
  }

  sshInputStalled(): void {
    delete this.faults.sshStallInputAfterBytes;
  }
}
