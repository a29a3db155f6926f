// A run's whole DigitalOcean traffic checked against the OpenAPI description, both ways: every request dosvob sent and
// every answer the simulator gave (schemas, and the keys the examples have). Shared by the backup and restore tests.
import type { CallLogEntry } from '../simulator/types';
import { exampleKeyDiff, validateRequest, validateResponse } from '../simulator/openapi-check';

export interface TrafficCheck {
  problems: string[];
  /** `METHOD /template` of every endpoint the traffic used. */
  endpoints: Set<string>;
}

export function checkTraffic(calls: readonly CallLogEntry[]): TrafficCheck {
  const problems: string[] = [];
  const endpoints = new Set<string>();
  for (const call of calls) {
    if (!call.template) {
      problems.push(`${call.method} ${call.path} is not an endpoint of the API`);
      continue;
    }
    endpoints.add(`${call.method} ${call.template}`);
    const response = validateResponse(call.method, call.template, call.status, call.responseBody);
    if (!response.schemaFound) problems.push(`no schema for ${call.method} ${call.template} ${call.status}`);
    if (!response.ok) problems.push(`answer to ${call.method} ${call.template}: ${response.errors.join('; ')}`);
    const missing = exampleKeyDiff(call.method, call.template, call.status, call.responseBody).missing;
    if (missing.length) problems.push(`answer to ${call.method} ${call.template} lacks ${missing.join(', ')}`);
    if (call.requestBody !== undefined) {
      const request = validateRequest(call.method, call.template, call.requestBody);
      if (!request.ok) problems.push(`request ${call.method} ${call.template}: ${request.errors.join('; ')}`);
    }
  }
  return { problems, endpoints };
}
