// `dosvob setup`: register dosvob's search attributes (DosvobVolumes, DosvobOutcome) on the namespace, once per
// cluster. The embedded dev server registers them itself; other clusters (the Docker stack, Temporal Cloud needs
// `tcld`) run this. Idempotent; `--wait` waits for a freshly started server (and its namespace) to come up.
import { isGrpcServiceError } from '@temporalio/client';
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

/** gRPC's status code NOT_FOUND (@grpc/grpc-js is the SDK's dependency, not ours). */
const GRPC_NOT_FOUND = 5;

/** A namespace not (yet) known to the server: what a freshly started `temporalio/auto-setup` answers for a while. */
function isNamespaceNotFound(err: unknown): boolean {
  return isGrpcServiceError(err) && err.code === GRPC_NOT_FOUND;
}

export async function setup(
  open: (connectTimeoutMs: number) => Promise<OpenSession>,
  out: Output,
  options: { waitMs?: number } = {},
): Promise<SetupOutcome> {
  const waitMs = options.waitMs ?? 0;
  const deadline = Date.now() + waitMs;
  // Reaching a server that is still starting is the SDK's own connection retry (its connect timeout). A server that
  // is up but has not created its namespace yet answers NOT_FOUND, which no SDK retry covers: that is waited out here.
  const session = await open(waitMs > 0 ? waitMs : 10_000);
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        const outcome = await registerOnce(session);
        for (const name of outcome.registered) out.line(`registered search attribute ${name} on ${outcome.namespace}`);
        for (const name of outcome.alreadyRegistered)
          out.line(`search attribute ${name} already registered on ${outcome.namespace}`);
        out.json(outcome);
        return outcome;
      } catch (err) {
        if (!isNamespaceNotFound(err) || Date.now() >= deadline) throw err;
        if (attempt === 1) out.note(`dosvob: namespace ${session.namespace} does not exist yet; waiting...`);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  } finally {
    await session.close();
  }
}
