// Custom search attributes dosvob sets, so runs can be found in the Temporal UI
// (e.g. `DosvobVolumes = "db-data"` or `DosvobOutcome = "failed"`).
// The embedded dev server registers them; other clusters: see the README.
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';

export const DOSVOB_VOLUMES = defineSearchAttributeKey('DosvobVolumes', SearchAttributeType.KEYWORD_LIST);
export const DOSVOB_OUTCOME = defineSearchAttributeKey('DosvobOutcome', SearchAttributeType.KEYWORD);

export type Outcome = 'running' | 'ok' | 'failed' | 'cancelled' | 'skipped';

/** name → type, as `temporal server start-dev --search-attribute` and `temporal operator` take them. */
export const SEARCH_ATTRIBUTES: Record<string, string> = {
  DosvobVolumes: 'KeywordList',
  DosvobOutcome: 'Keyword',
};
