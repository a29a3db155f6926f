// Data for writes into simulated volumes (byte comparisons of images: ./sparse.ts).
import { randomBytes } from 'node:crypto';

export function randomData(bytes: number): Buffer {
  return randomBytes(bytes);
}
