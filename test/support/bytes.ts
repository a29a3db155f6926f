// Byte-level checks on images and volumes.
import { createHash, randomBytes } from 'node:crypto';
import { open, stat } from 'node:fs/promises';

/** True when both files have the same size and bytes (streamed, 4 MiB at a time). */
export async function sameBytes(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([stat(a), stat(b)]);
  if (sa.size !== sb.size) return false;
  const [fa, fb] = await Promise.all([open(a), open(b)]);
  try {
    const chunk = 4 << 20;
    const ba = Buffer.alloc(chunk);
    const bb = Buffer.alloc(chunk);
    for (let pos = 0; pos < sa.size; pos += chunk) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, chunk, pos), fb.read(bb, 0, chunk, pos)]);
      if (ra.bytesRead !== rb.bytesRead || !ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) {
        return false;
      }
    }
    return true;
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  const f = await open(file);
  try {
    for await (const chunk of f.createReadStream()) h.update(chunk as Buffer);
  } finally {
    await f.close();
  }
  return h.digest('hex');
}

/** Deterministic-looking random data for writes into simulated volumes. */
export function randomData(bytes: number): Buffer {
  return randomBytes(bytes);
}
