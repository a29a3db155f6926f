// The workflow's pure helpers: the capped keyword list for search attributes, and the ledger's
// tracking of creates in flight.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ledger } from '../../workflows/ledger';
import { cappedKeywordList } from '../../workflows/util';

describe('cappedKeywordList', () => {
  it('keeps a list that fits as it is', () => {
    assert.deepEqual(cappedKeywordList(['a', 'b', 'c'], 100), ['a', 'b', 'c']);
  });

  it('keeps the first items that fit with the count of the rest, within the limit', () => {
    const items = Array.from({ length: 300 }, (_, i) => `volume-${i}`);
    const capped = cappedKeywordList(items, 200);
    const more = /^\(\+(\d+) more\)$/.exec(capped[capped.length - 1] ?? '');
    assert.ok(more, String(capped[capped.length - 1]));
    assert.deepEqual(capped.slice(0, -1), items.slice(0, capped.length - 1));
    assert.equal(capped.length - 1 + Number(more[1]), items.length);
    assert.ok(Buffer.byteLength(JSON.stringify(capped)) <= 200);
    // One more item would not have fitted.
    const oneMore = [...items.slice(0, capped.length), `(+${items.length - capped.length} more)`];
    assert.ok(Buffer.byteLength(JSON.stringify(oneMore)) > 200);
  });

  it('counts bytes, not characters', () => {
    const capped = cappedKeywordList(['é'.repeat(40), 'é'.repeat(40)], 100);
    assert.ok(Buffer.byteLength(JSON.stringify(capped)) <= 100, JSON.stringify(capped));
    assert.deepEqual(capped, ['é'.repeat(40), '(+1 more)']);
  });
});

describe('Ledger.settled', () => {
  it('waits for every create in flight, failed ones too, and ones started meanwhile', async () => {
    const ledger = new Ledger();
    const order: string[] = [];
    let finishFirst!: () => void;
    const first = new Promise<void>((resolve) => (finishFirst = resolve)).then(() => {
      order.push('first');
      // A create started while teardown is already waiting.
      void ledger.creating(Promise.reject(new Error('refused'))).catch(() => order.push('second'));
    });
    void ledger.creating(first);
    const settled = ledger.settled().then(() => order.push('settled'));
    await Promise.resolve();
    assert.deepEqual(order, []);
    finishFirst();
    await settled;
    assert.deepEqual(order, ['first', 'second', 'settled']);
  });

  it('resolves at once with nothing in flight', async () => {
    await new Ledger().settled();
  });
});
