// Following a run to its end with the live display (bars on a terminal, plain lines elsewhere): `dosvob sync` and
// `dosvob restore --to-volume` alike, since both runs answer the same `progress` query and heartbeat alike.
import type { WorkflowHandle } from '@temporalio/client';
import type { Output } from './output';
import { createDisplay, RateMeter, viewOf } from './progress';
import { RunReader } from './run-state';
import type { Session } from './session';

export async function followRun<T>(session: Session, handle: WorkflowHandle, out: Output): Promise<T> {
  let finished = false;
  const result = (handle.result() as Promise<T>).finally(() => {
    finished = true;
  });
  result.catch(() => undefined);
  const display = out.jsonMode ? undefined : createDisplay(out.stream, (line) => out.line(line), session.plainEveryMs);
  const reader = new RunReader(session.client, handle);
  const meter = new RateMeter();
  try {
    while (!finished) {
      try {
        const view = viewOf(await reader.read(), meter);
        if (view && !finished) display?.update(view);
      } catch {
        // Between workflow tasks, or just finished: the next poll (or the result) will tell.
      }
      await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, session.refreshMs))]);
    }
  } finally {
    display?.stop();
  }
  return result;
}
