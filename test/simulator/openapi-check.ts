// Checks JSON bodies against DigitalOcean's OpenAPI spec (../shared/do-openapi/dosvob-subset.v2.deref.json, which a
// user's clone lacks: callers check `openapiSpecMissing()` first and skip, see test/support/shared-material.ts):
// - validateResponse / validateRequest: ajv ({strict:false}, ajv-formats, format "float") against the
//   operation's schema (the exact status, else `default`).
// - exampleKeyDiff: the spec's schemas list few required fields, so also compare the body's key paths with
//   the spec's examples (named examples, `example`, or one built from the properties' `example`s).
// One deliberate change to the spec: enums of region slugs (the spec's `region_slug` lists 15) are widened
// with the real regions it lacks (atl1, ...), as its README's caveat says.
import Ajv, { type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { readFileSync } from 'node:fs';
import { OPENAPI_SPEC, sharedMissing } from '../support/shared-material';
import { REGIONS } from './catalog';

export interface CheckResult {
  ok: boolean;
  /** Whether the spec has this operation (and status, for responses). */
  schemaFound: boolean;
  errors: string[];
}

export interface KeyDiff {
  /** Key paths in the spec's examples that the body lacks (only under objects the body has). */
  missing: string[];
  /** Key paths in the body that neither the examples nor the schema know. */
  extra: string[];
}

type JsonObject = Record<string, unknown>;

/** Why the checks cannot run here (the spec is not there), or undefined. */
export function openapiSpecMissing(): string | undefined {
  return sharedMissing(OPENAPI_SPEC);
}

let spec: JsonObject | undefined;
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addFormat('float', true);
const compiled = new Map<string, ValidateFunction>();

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function widenRegionEnums(node: unknown): void {
  if (Array.isArray(node)) {
    for (const item of node) widenRegionEnums(item);
    return;
  }
  if (!isObject(node)) return;
  const e = node['enum'];
  if (Array.isArray(e) && e.includes('nyc3') && e.includes('sfo3')) {
    for (const r of REGIONS) if (!e.includes(r.slug)) e.push(r.slug);
  }
  for (const value of Object.values(node)) widenRegionEnums(value);
}

function loadSpec(): JsonObject {
  if (!spec) {
    spec = JSON.parse(readFileSync(OPENAPI_SPEC, 'utf8')) as JsonObject;
    widenRegionEnums(spec);
  }
  return spec;
}

function operation(method: string, template: string): JsonObject | undefined {
  const paths = loadSpec()['paths'];
  if (!isObject(paths)) return undefined;
  const item = paths[template];
  if (!isObject(item)) return undefined;
  const op = item[method.toLowerCase()];
  return isObject(op) ? op : undefined;
}

function jsonContent(container: unknown): JsonObject | undefined {
  if (!isObject(container)) return undefined;
  const content = container['content'];
  if (!isObject(content)) return undefined;
  const json = content['application/json'];
  return isObject(json) ? json : undefined;
}

function responseFor(method: string, template: string, status: number): JsonObject | undefined {
  const responses = operation(method, template)?.['responses'];
  if (!isObject(responses)) return undefined;
  const r = responses[String(status)] ?? responses['default'];
  return isObject(r) ? r : undefined;
}

function validate(key: string, schema: unknown, body: unknown): string[] {
  let fn = compiled.get(key);
  if (!fn) {
    fn = ajv.compile(schema as object);
    compiled.set(key, fn);
  }
  if (fn(body)) return [];
  return (fn.errors ?? []).map((e) => `${e.instancePath || '(body)'} ${e.message ?? 'is invalid'}`);
}

/** Operations the spec describes, as "METHOD /v2/template". */
export function specOperations(): string[] {
  const paths = loadSpec()['paths'];
  if (!isObject(paths)) return [];
  const ops: string[] = [];
  for (const [p, item] of Object.entries(paths)) {
    if (!isObject(item)) continue;
    for (const m of ['get', 'post', 'put', 'delete', 'patch'])
      if (isObject(item[m])) ops.push(`${m.toUpperCase()} ${p}`);
  }
  return ops;
}

/** Validate an answer's body against the spec's schema for (method, path template, status). */
export function validateResponse(method: string, pathTemplate: string, status: number, body: unknown): CheckResult {
  const response = responseFor(method, pathTemplate, status);
  if (!response) {
    return {
      ok: false,
      schemaFound: false,
      errors: [`no response ${status} for ${method} ${pathTemplate} in the spec`],
    };
  }
  const json = jsonContent(response);
  if (!json) {
    const empty = body === undefined || body === '' || body === null;
    return { ok: empty, schemaFound: true, errors: empty ? [] : [`${status} should have no body`] };
  }
  const errors = validate(`res ${method} ${pathTemplate} ${status}`, json['schema'], body);
  return { ok: errors.length === 0, schemaFound: true, errors };
}

/** Validate a request body against the spec's request schema for (method, path template). */
export function validateRequest(method: string, pathTemplate: string, body: unknown): CheckResult {
  const op = operation(method, pathTemplate);
  if (!op) return { ok: false, schemaFound: false, errors: [`${method} ${pathTemplate} is not in the spec`] };
  const json = jsonContent(op['requestBody']);
  if (!json) {
    const empty = body === undefined || body === '' || body === null;
    return { ok: empty, schemaFound: true, errors: empty ? [] : [`${method} ${pathTemplate} takes no body`] };
  }
  const required = isObject(op['requestBody']) && op['requestBody']['required'] === true;
  if (body === undefined) {
    return { ok: !required, schemaFound: true, errors: required ? ['a request body is required'] : [] };
  }
  const errors = validate(`req ${method} ${pathTemplate}`, json['schema'], body);
  return { ok: errors.length === 0, schemaFound: true, errors };
}

// ---- examples and key paths ----

/** An example built from a schema's own `example`s. */
function exampleFromSchema(schema: unknown, depth = 0): unknown {
  if (!isObject(schema) || depth > 12) return undefined;
  if (schema['example'] !== undefined) return schema['example'];
  for (const k of ['allOf', 'anyOf', 'oneOf']) {
    const parts = schema[k];
    if (!Array.isArray(parts)) continue;
    const built = parts.map((p) => exampleFromSchema(p, depth + 1));
    if (k === 'allOf') {
      const merged: JsonObject = {};
      for (const b of built) if (isObject(b)) Object.assign(merged, b);
      return Object.keys(merged).length > 0 ? merged : built.find((b) => b !== undefined);
    }
    return built.find((b) => b !== undefined);
  }
  if (schema['type'] === 'array' || schema['items'] !== undefined) {
    const item = exampleFromSchema(schema['items'], depth + 1);
    return item === undefined ? undefined : [item];
  }
  const props = schema['properties'];
  if (isObject(props)) {
    const out: JsonObject = {};
    for (const [k, v] of Object.entries(props)) {
      const ex = exampleFromSchema(v, depth + 1);
      if (ex !== undefined) out[k] = ex;
    }
    return out;
  }
  return undefined;
}

function examplesOf(json: JsonObject): unknown[] {
  const named = json['examples'];
  if (isObject(named)) {
    return Object.values(named)
      .map((e) => (isObject(e) ? e['value'] : undefined))
      .filter((v) => v !== undefined);
  }
  if (json['example'] !== undefined) return [json['example']];
  const built = exampleFromSchema(json['schema']);
  return built === undefined ? [] : [built];
}

/** Key paths of a JSON value: "droplet.networks.v4[].ip_address". */
function keyPaths(value: unknown, prefix = '', out = new Set<string>()): Set<string> {
  if (Array.isArray(value)) {
    for (const item of value) keyPaths(item, `${prefix}[]`, out);
  } else if (isObject(value)) {
    for (const [k, v] of Object.entries(value)) {
      const p = prefix ? `${prefix}.${k}` : k;
      out.add(p);
      keyPaths(v, p, out);
    }
  }
  return out;
}

/** Key paths a schema declares (through allOf/anyOf/oneOf, items and properties). */
function schemaPaths(schema: unknown, prefix = '', out = new Set<string>(), depth = 0): Set<string> {
  if (!isObject(schema) || depth > 12) return out;
  for (const k of ['allOf', 'anyOf', 'oneOf']) {
    const parts = schema[k];
    if (Array.isArray(parts)) for (const p of parts) schemaPaths(p, prefix, out, depth + 1);
  }
  if (schema['items'] !== undefined) schemaPaths(schema['items'], `${prefix}[]`, out, depth + 1);
  const props = schema['properties'];
  if (isObject(props)) {
    for (const [k, v] of Object.entries(props)) {
      const p = prefix ? `${prefix}.${k}` : k;
      out.add(p);
      schemaPaths(v, p, out, depth + 1);
    }
  }
  return out;
}

/** Paths whose parent object exists in `body` (so a missing child is really missing, not under null/[]). */
function parentPresent(body: unknown, keyPath: string): boolean {
  const parts = keyPath.split('.');
  parts.pop();
  let nodes: unknown[] = [body];
  for (const raw of parts) {
    const arrays = (raw.match(/\[\]/g) ?? []).length;
    const key = raw.replace(/\[\]/g, '');
    nodes = nodes.flatMap((n) => (isObject(n) && n[key] !== undefined ? [n[key]] : []));
    for (let i = 0; i < arrays; i++) nodes = nodes.flatMap((n) => (Array.isArray(n) ? (n as unknown[]) : []));
  }
  if (parts.length === 0) return isObject(body);
  return nodes.some(isObject);
}

/** Compare a body's key paths with the spec's examples for (method, template, status). */
export function exampleKeyDiff(method: string, pathTemplate: string, status: number, body: unknown): KeyDiff {
  const response = responseFor(method, pathTemplate, status);
  const json = response && jsonContent(response);
  if (!json) return { missing: [], extra: [] };
  const examples = examplesOf(json).map((ex) => keyPaths(ex));
  const expected = new Set(examples.flatMap((paths) => [...paths]));
  const declared = schemaPaths(json['schema']);
  const actual = keyPaths(body);
  // Against the closest example (a oneOf response has one example per variant). `links.pages` appears only
  // when there is more than one page, so it is never "missing".
  let missing: string[] | undefined;
  for (const paths of examples) {
    const m = [...paths]
      .filter((p) => !actual.has(p) && !/^links\.pages(\.|$)/.test(p) && parentPresent(body, p))
      .sort();
    if (!missing || m.length < missing.length) missing = m;
  }
  const extra = [...actual].filter((p) => !expected.has(p) && !declared.has(p)).sort();
  return { missing: missing ?? [], extra };
}
