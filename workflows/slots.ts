// A counting semaphore for workflow code: deterministic (promises only, granted in the order asked) and cancellable
// (a waiter whose scope is cancelled leaves the queue with the cancellation, and is never granted a slot it would
// never give back).
import { CancellationScope } from '@temporalio/workflow';

export class Slots {
  private readonly waiting: Array<() => void> = [];

  constructor(private free: number) {}

  /** Resolves with the function that gives the slot back (calling it twice gives it back once). */
  acquire(): Promise<() => void> {
    const scope = CancellationScope.current();
    return new Promise((resolve, reject) => {
      const grant = () => resolve(this.releaser());
      if (this.free > 0) {
        this.free--;
        grant();
        return;
      }
      this.waiting.push(grant);
      scope.cancelRequested.catch((err: unknown) => {
        const i = this.waiting.indexOf(grant);
        if (i < 0) return; // granted already: its holder gives it back
        this.waiting.splice(i, 1);
        reject(err);
      });
    });
  }

  /** `fn` while holding a slot. */
  async using<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
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
      if (next) next();
      else this.free++;
    };
  }
}
