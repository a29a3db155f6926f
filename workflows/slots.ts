// A counting semaphore for workflow code: deterministic (promises only, granted in the order asked) and cancellable
// (a waiter whose scope is cancelled leaves the queue with the cancellation, and is never granted a slot it would
// never give back).
import { CancellationScope } from '@temporalio/workflow';

export class Slots {
  /** Highest priority first; in the order asked within one priority. */
  private readonly waiting: Array<{ grant: () => void; priority: number }> = [];

  constructor(private free: number) {}

  /**
   * Resolves with the function that gives the slot back (calling it twice gives it back once). A waiter of a higher
   * `priority` is served before those of a lower one.
   */
  acquire(priority = 0): Promise<() => void> {
    const scope = CancellationScope.current();
    return new Promise((resolve, reject) => {
      const grant = () => resolve(this.releaser());
      if (this.free > 0) {
        this.free--;
        grant();
        return;
      }
      const waiter = { grant, priority };
      const at = this.waiting.findIndex((w) => w.priority < priority);
      this.waiting.splice(at < 0 ? this.waiting.length : at, 0, waiter);
      scope.cancelRequested.catch((err: unknown) => {
        const i = this.waiting.indexOf(waiter);
        if (i < 0) return; // granted already: its holder gives it back
        this.waiting.splice(i, 1);
        reject(err);
      });
    });
  }

  /** `fn` while holding a slot. */
  async using<T>(fn: () => Promise<T>, priority = 0): Promise<T> {
    const release = await this.acquire(priority);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next.grant();
      else this.free++;
    };
  }
}
