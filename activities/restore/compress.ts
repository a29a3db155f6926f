// Which blocks of a restore travel zlib-compressed: the backup's rule (agent.py's should_compress/encode_block), on the
// sending side, which for a restore is the store worker. zlib runs in the thread pool, off the event loop.
import { promisify } from 'node:util';
import { deflate } from 'node:zlib';
import type { Compression } from '../transfer/core.js';

const deflateAsync = promisify(deflate);

/** As in agent.py: a 16 KiB sample must compress below ~80% (13000 bytes), and only blocks of 32 KiB or more. */
const SAMPLE_BYTES = 16384;
const SAMPLE_LIMIT = 13000;
const MIN_BLOCK = 32768;

export interface EncodedBlock {
  enc: 0 | 1;
  payload: Buffer;
}

/** zlib level 1 when the mode and the sample say it is worth trying and the block then shrinks by at least 1/8. */
export async function encodeBlock(data: Buffer, mode: Compression): Promise<EncodedBlock> {
  if (mode === 'never') return { enc: 0, payload: data };
  if (mode === 'auto') {
    if (data.length < MIN_BLOCK) return { enc: 0, payload: data };
    const sample = await deflateAsync(data.subarray(0, SAMPLE_BYTES), { level: 1 });
    if (sample.length >= SAMPLE_LIMIT) return { enc: 0, payload: data };
  }
  const packed = await deflateAsync(data, { level: 1 });
  return packed.length < data.length - (data.length >> 3) ? { enc: 1, payload: packed } : { enc: 0, payload: data };
}
