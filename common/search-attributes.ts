// Custom search attributes dosvob sets, so runs can be found in the Temporal UI.
// The embedded dev server registers them; other clusters: see the README.
export const SEARCH_ATTRIBUTES = {
  DosvobVolumes: 'KeywordList',
  DosvobOutcome: 'Keyword',
} as const;
