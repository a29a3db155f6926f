// The worker process of a harness, SIGKILLed and replaced on demand: for tests that kill the worker during a step.
import type { ChildProcess } from 'node:child_process';
import type { Harness } from './harness';

export class WorkerKiller {
  /** The steps a worker was killed in, in order. */
  readonly killed: string[] = [];
  private worker: ChildProcess | undefined;
  private killing: Promise<void> = Promise.resolve();

  constructor(private readonly h: Harness) {}

  async start(): Promise<void> {
    this.worker = await this.h.spawnWorker();
  }

  /** Kill the worker and start a new one; one kill at a time (steps may run concurrently, the process is one). */
  killAndReplace(step: string): Promise<void> {
    this.killing = this.killing.then(async () => {
      this.killed.push(step);
      const dead = this.worker;
      if (dead) {
        const exited = new Promise((resolve) => dead.once('exit', resolve));
        dead.kill('SIGKILL');
        await exited;
      }
      this.worker = await this.h.spawnWorker();
    });
    return this.killing;
  }
}
