// Everything a run has created, recorded before each create so that teardown can find it by its
// deterministic name even if the worker died before the create returned an id.
// Workflow-side state: deterministic, no I/O.
import type { ResourceRef } from '../activities/digitalocean/activities';
import type { ResourceSeconds } from '../common/pricing';

interface Entry {
  ref: ResourceRef;
  sizeGib: number;
  createdAt: number;
  deletedAt?: number;
  /** Not torn down with the run's resources (a restore's target volume: its workflow decides). */
  keptApart?: boolean;
}

export interface Attachment {
  volumeId: string;
  dropletId: string;
  region: string;
}

/** A handle to one ledger entry. */
export type LedgerKey = number;

export class Ledger {
  private readonly entries: Entry[] = [];
  private readonly attached: Attachment[] = [];
  private readonly inFlight = new Set<Promise<void>>();

  /**
   * A create that is under way. Teardown waits for it to settle (`settled`): a resource that appears
   * after teardown looked it up by name would be left behind until the next run's sweep.
   */
  creating<T>(create: Promise<T>): Promise<T> {
    const settled = create.then(
      () => undefined,
      () => undefined,
    );
    this.inFlight.add(settled);
    void settled.then(() => this.inFlight.delete(settled));
    return create;
  }

  /** Resolves once no create is in flight (including ones started while waiting). */
  async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /**
   * Record a resource before it is created. `keptApart`: counted in the run's cost, but never in `live()`, so teardown
   * leaves it to the workflow (a restore's target volume is deleted only when it is certainly the run's own).
   */
  record(ref: ResourceRef, sizeGib: number, options: { keptApart?: boolean } = {}): LedgerKey {
    this.entries.push({
      ref: { ...ref },
      sizeGib,
      createdAt: Date.now(),
      ...(options.keptApart ? { keptApart: true } : {}),
    });
    return this.entries.length - 1;
  }

  /**
   * `sizeGib`: what it is billed by, when only the create's answer says (a snapshot's stored size). `requestedAtMs`:
   * when the activity sent the create, which is when billing starts; without it, the time of `record()` stands (a
   * little early: it includes the activity's scheduling).
   */
  created(key: LedgerKey, id: string, sizeGib?: number, requestedAtMs?: number): void {
    const entry = this.entry(key);
    entry.ref.id = id;
    if (sizeGib !== undefined) entry.sizeGib = sizeGib;
    if (requestedAtMs !== undefined && requestedAtMs >= entry.createdAt) entry.createdAt = requestedAtMs;
  }

  deleted(key: LedgerKey | ResourceRef, at: number): void {
    const entry = typeof key === 'number' ? this.entry(key) : this.entries.find((e) => e.ref === key);
    if (entry && entry.deletedAt === undefined) entry.deletedAt = at;
  }

  ref(key: LedgerKey): ResourceRef {
    return this.entry(key).ref;
  }

  /** Resources not yet deleted, as references (the same objects, so `deleted(ref)` marks them). */
  live(): ResourceRef[] {
    return this.entries.filter((e) => e.deletedAt === undefined && !e.keptApart).map((e) => e.ref);
  }

  attach(a: Attachment): void {
    this.attached.push(a);
  }

  detached(a: Attachment): void {
    const i = this.attached.indexOf(a);
    if (i >= 0) this.attached.splice(i, 1);
  }

  attachments(): Attachment[] {
    return [...this.attached];
  }

  /** Resource-seconds for the cost estimate, from workflow time (deterministic). */
  resourceSeconds(now: number): ResourceSeconds {
    const usage: ResourceSeconds = { dropletSeconds: 0, volumeGibSeconds: 0, snapshotGibSeconds: 0 };
    for (const e of this.entries) {
      if (e.ref.id === undefined) continue;
      const seconds = ((e.deletedAt ?? now) - e.createdAt) / 1000;
      if (e.ref.kind === 'droplet') usage.dropletSeconds += seconds;
      if (e.ref.kind === 'volume') usage.volumeGibSeconds += seconds * e.sizeGib;
      if (e.ref.kind === 'snapshot') usage.snapshotGibSeconds += seconds * e.sizeGib;
    }
    return usage;
  }

  private entry(key: LedgerKey): Entry {
    const entry = this.entries[key];
    if (!entry) throw new Error(`no ledger entry ${key}`);
    return entry;
  }
}
