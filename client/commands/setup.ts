// `dosvob setup`: register dosvob's search attributes (DosvobVolumes, DosvobOutcome) on the namespace, once per
// cluster. The embedded dev server registers them itself; other clusters (the Docker stack, Temporal Cloud needs
// `tcld`) run this. Idempotent; `--wait` retries while a freshly started server is still coming up.
import { temporal } from '@temporalio/proto';
import { SEARCH_ATTRIBUTES } from '../../common/search-attributes';
import { UserError } from '../errors';
import type { Output } from '../output';
import type { OpenSession } from '../session';

const IndexedValueType = temporal.api.enums.v1.IndexedValueType;

const TYPES: Record<string, temporal.api.enums.v1.IndexedValueType> = {
  Keyword: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  KeywordList: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
};

export interface SetupOutcome {
  namespace: string;
  registered: string[];
  alreadyRegistered: string[];
}

async function registerOnce(session: OpenSession): Promise<SetupOutcome> {
  const operator = session.connection.operatorService;
  const { namespace } = session;
  const existing = (await operator.listSearchAttributes({ namespace })).customAttributes ?? {};
  const outcome: SetupOutcome = { namespace, registered: [], alreadyRegistered: [] };
  const missing: Record<string, temporal.api.enums.v1.IndexedValueType> = {};
  for (const [name, typeName] of Object.entries(SEARCH_ATTRIBUTES)) {
    const wanted = TYPES[typeName];
    if (wanted === undefined) throw new Error(`unknown search attribute type ${typeName}`);
    const have = existing[name];
    if (have === undefined) missing[name] = wanted;
    else if (have !== wanted) {
      throw new UserError(
        `search attribute ${name} exists on namespace ${namespace} with another type (${IndexedValueType[have]}); dosvob needs ${typeName}`,
      );
    } else outcome.alreadyRegistered.push(name);
  }
  if (Object.keys(missing).length > 0) {
    await operator.addSearchAttributes({ namespace, searchAttributes: missing });
    outcome.registered.push(...Object.keys(missing));
  }
  return outcome;
}

export async function setup(
  open: () => Promise<OpenSession>,
  out: Output,
  options: { waitMs?: number } = {},
): Promise<SetupOutcome> {
  const deadline = Date.now() + (options.waitMs ?? 0);
  for (let attempt = 1; ; attempt++) {
    let session: OpenSession | undefined;
    try {
      session = await open();
      const outcome = await registerOnce(session);
      for (const name of outcome.registered) out.line(`registered search attribute ${name} on ${outcome.namespace}`);
      for (const name of outcome.alreadyRegistered)
        out.line(`search attribute ${name} already registered on ${outcome.namespace}`);
      out.json(outcome);
      return outcome;
    } catch (err) {
      // A server just started by `docker compose up` refuses connections, then lacks the namespace for a while.
      if (err instanceof UserError && err.exitCode === 2) throw err;
      if (Date.now() >= deadline) throw err;
      if (attempt === 1) out.note('dosvob: Temporal is not ready yet; waiting...');
      await new Promise((r) => setTimeout(r, 2000));
    } finally {
      await session?.close();
    }
  }
}
