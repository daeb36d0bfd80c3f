// PATCH (RFC 7644 §3.5.2) over a stored attribute set, plus what Okta and Entra actually send:
// op names in any case (`Replace`), a no-path `replace` whose value object holds attributes,
// dotted (`name.givenName`) and URN-qualified keys in that object, booleans as "True"/"False",
// members removed either by `members[value eq "…"]` or by `path: "members"` with a value list, and
// `emails[type eq "work"].value` on a user without a work email (a value is created from the
// filter's `eq` terms, as Entra expects). The whole request applies to a copy: any invalid
// operation fails the request and nothing changes. The caller re-checks the result against the
// schema (`checkPatched`), so required attributes and value types hold after every PATCH.
import type { Json } from '../core/types.js';
import { invalidPath, invalidSyntax, invalidValue, mutability, noTarget } from './errors.js';
import { matches, parsePatchPath, type Filter, type PatchPath } from './filter.js';
import { CORE_SCHEMA, EXTENSIONS, PATCH_SCHEMA, checkValue, findExtension, type AttrDef, type JsonObject, type ResourceType } from './schemas.js';

export type PatchOpName = 'add' | 'replace' | 'remove';
export interface PatchOperation {
  op: PatchOpName;
  path?: string;
  value?: unknown;
}

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The operations of a PatchOp request body; throws 400 on a malformed one. */
export function parsePatchRequest(body: unknown): PatchOperation[] {
  if (!isObject(body)) throw invalidSyntax('the request body must be a JSON object');
  const schemas = body.schemas;
  if (!Array.isArray(schemas) || !schemas.some((s) => typeof s === 'string' && s.toLowerCase() === PATCH_SCHEMA.toLowerCase())) {
    throw invalidSyntax(`"schemas" must be ["${PATCH_SCHEMA}"] for a PATCH`);
  }
  const ops = body.Operations ?? body.operations;
  if (!Array.isArray(ops) || ops.length === 0) throw invalidSyntax('"Operations" must be a non-empty list');
  return ops.map((o, i) => {
    if (!isObject(o)) throw invalidSyntax(`Operations[${i}] must be an object`);
    const op = typeof o.op === 'string' ? o.op.toLowerCase() : '';
    if (op !== 'add' && op !== 'replace' && op !== 'remove') {
      throw invalidSyntax(`Operations[${i}].op must be add, replace or remove, not ${JSON.stringify(o.op)}`);
    }
    if (o.path !== undefined && typeof o.path !== 'string') throw invalidPath(`Operations[${i}].path must be a string`);
    if (op !== 'remove' && !('value' in o)) throw invalidValue(`Operations[${i}] (${op}) needs a value`);
    return { op, ...(typeof o.path === 'string' && o.path.trim() !== '' ? { path: o.path.trim() } : {}), ...('value' in o ? { value: o.value } : {}) };
  });
}

/**
 * Apply `ops` to a copy of `attrs` (a stored User or Group, without id and meta). `id` is the
 * resource's id: a value object that repeats it (Okta does) is fine; changing it is `mutability`.
 */
export function applyPatch(type: ResourceType, attrs: JsonObject, ops: PatchOperation[], id: string): JsonObject {
  const doc = structuredClone(attrs);
  for (const o of ops) {
    if (o.path === undefined) {
      if (o.op === 'remove') throw noTarget('remove needs a path');
      if (!isObject(o.value)) throw invalidValue(`${o.op} without a path needs an object of attributes as its value`);
      for (const [key, value] of Object.entries(o.value)) applyKey(type, doc, o.op, key, value, id);
    } else {
      apply(doc, o.op, checkMutable(parsePatchPath(o.path, type), o.path), o.value);
    }
  }
  return doc;
}

function applyKey(type: ResourceType, doc: JsonObject, op: PatchOpName, key: string, value: unknown, id: string): void {
  const lower = key.toLowerCase();
  if (lower === 'schemas') return;
  if (lower === 'id') {
    if (value === id) return;
    throw mutability('id cannot be changed');
  }
  if (lower.startsWith('urn:')) {
    const ext = findExtension(type, key);
    if (ext) {
      // The extension as a whole: each of its attributes is one operation.
      if (value === null) {
        if (op === 'replace') delete doc[ext];
        return;
      }
      if (!isObject(value)) throw invalidValue(`${ext} must be an object of attributes`);
      for (const [k, v] of Object.entries(value)) apply(doc, op, checkMutable(parsePatchPath(`${ext}:${k}`, type), k), v);
      return;
    }
    const known = [CORE_SCHEMA[type], ...Object.keys(EXTENSIONS[type])].some((u) => lower.startsWith(`${u.toLowerCase()}:`));
    // An extension this server does not implement is ignored, as in POST and PUT.
    if (!known) return;
  }
  const pp = parsePatchPath(key, type);
  if (pp.path.def.mutability === 'writeOnly') return; // password: accepted, never stored
  apply(doc, op, checkMutable(pp, key), value);
}

function checkMutable(pp: PatchPath, text: string): PatchPath {
  if (pp.path.def.mutability === 'readOnly') throw mutability(`${text} is read-only`);
  return pp;
}

/** The object holding the attribute: the resource itself, or its extension object (created on demand). */
function holderOf(doc: JsonObject, pp: PatchPath, create: boolean): JsonObject | undefined {
  if (!pp.path.urn) return doc;
  const h = doc[pp.path.urn];
  if (isObject(h)) return h;
  if (!create) return undefined;
  const fresh: JsonObject = {};
  doc[pp.path.urn] = fresh;
  return fresh;
}

function name(pp: PatchPath): string {
  return `${pp.path.urn ? `${pp.path.urn}:` : ''}${pp.path.attr}${pp.path.sub ? `.${pp.path.sub}` : ''}`;
}

/** Identity of a multi-valued entry for de-duplication: its `value` if it has one, else all of it. */
function identity(def: AttrDef, item: Json): string {
  if (isObject(item) && item.value !== undefined) {
    const sub = def.subAttributes?.find((s) => s.name === 'value');
    return `v:${sub?.caseExact ? String(item.value) : String(item.value).toLowerCase()}`;
  }
  return `j:${JSON.stringify(item)}`;
}

function apply(doc: JsonObject, op: PatchOpName, pp: PatchPath, value: unknown): void {
  const { def } = pp.path;
  const where = name(pp);
  const holder = holderOf(doc, pp, op !== 'remove');
  if (!holder) return; // removing from an extension the resource does not have

  if (pp.filter) return applyFiltered(holder, op, pp, pp.filter, value);

  if (pp.path.sub) {
    const subDef = pp.path.subDef!;
    const current = holder[def.name];
    if (def.multiValued) {
      // `emails.value` without a filter: every value of the attribute.
      const items = Array.isArray(current) ? current.filter(isObject) : [];
      if (op === 'remove') {
        for (const item of items) delete item[subDef.name];
        return;
      }
      const v = checkValue(subDef, value, where);
      if (items.length === 0) {
        if (v !== undefined) holder[def.name] = [{ [subDef.name]: v }];
        return;
      }
      for (const item of items) {
        if (v === undefined) delete item[subDef.name];
        else item[subDef.name] = v;
      }
      return;
    }
    const obj = isObject(current) ? current : {};
    if (op === 'remove') delete obj[subDef.name];
    else {
      const v = checkValue(subDef, value, where);
      if (v === undefined) delete obj[subDef.name];
      else obj[subDef.name] = v;
    }
    if (Object.keys(obj).length) holder[def.name] = obj;
    else delete holder[def.name];
    return;
  }

  if (op === 'remove') {
    if (def.multiValued && value !== undefined && value !== null) {
      // Entra: {"op":"Remove","path":"members","value":[{"value":"<id>"}]} removes those members only.
      const gone = checkValue(def, value, where);
      const ids = new Set((Array.isArray(gone) ? gone : []).map((g) => identity(def, g)));
      const left = (Array.isArray(holder[def.name]) ? (holder[def.name] as Json[]) : []).filter((item) => !ids.has(identity(def, item)));
      if (left.length) holder[def.name] = left;
      else delete holder[def.name];
      return;
    }
    delete holder[def.name];
    return;
  }

  const v = checkValue(def, value, where);
  if (v === undefined) {
    if (op === 'replace') delete holder[def.name];
    return;
  }
  if (def.multiValued) {
    const incoming = v as Json[];
    const base = op === 'add' && Array.isArray(holder[def.name]) ? (holder[def.name] as Json[]) : [];
    const seen = new Map<string, number>();
    const out: Json[] = [];
    for (const item of [...base, ...incoming]) {
      const key = identity(def, item);
      const at = seen.get(key);
      if (at === undefined) {
        seen.set(key, out.length);
        out.push(item);
      } else if (isObject(out[at]) && isObject(item)) {
        out[at] = { ...(out[at] as JsonObject), ...item };
      }
    }
    holder[def.name] = out;
    return;
  }
  if (def.type === 'complex') {
    // Sub-attributes given replace those present and add the others (§3.5.2.1, §3.5.2.3).
    const cur = isObject(holder[def.name]) ? (holder[def.name] as JsonObject) : {};
    holder[def.name] = { ...cur, ...(v as JsonObject) };
    return;
  }
  holder[def.name] = v;
}

/** `attr[filter]` and `attr[filter].sub`. */
function applyFiltered(holder: JsonObject, op: PatchOpName, pp: PatchPath, filter: Filter, value: unknown): void {
  const { def } = pp.path;
  const where = `${def.name}[…]${pp.subDef ? `.${pp.subDef.name}` : ''}`;
  const items = Array.isArray(holder[def.name]) ? (holder[def.name] as Json[]) : [];
  const hit = items.map((item) => isObject(item) && matches(filter, item));

  if (op === 'remove') {
    if (pp.subDef) {
      items.forEach((item, i) => {
        if (hit[i]) delete (item as JsonObject)[pp.subDef!.name];
      });
    } else {
      const left = items.filter((_, i) => !hit[i]);
      if (left.length) holder[def.name] = left;
      else delete holder[def.name];
    }
    return;
  }

  const checked = pp.subDef ? checkValue(pp.subDef, value, where) : checkValue({ ...def, multiValued: false }, value, where);
  if (!hit.some(Boolean)) {
    // No value matches: create one from the filter's eq terms when they say what it is
    // (Entra: Add/Replace `emails[type eq "work"].value` on a user without a work email).
    const seed = eqTerms(filter);
    if (!seed) throw noTarget(`no value of ${def.name} matches the filter`);
    if (checked === undefined) return;
    const fresh = pp.subDef ? { ...seed, [pp.subDef.name]: checked } : { ...seed, ...(checked as JsonObject) };
    holder[def.name] = [...items, fresh];
    return;
  }
  holder[def.name] = items.map((item, i) => {
    if (!hit[i]) return item;
    const obj = item as JsonObject;
    if (pp.subDef) {
      const copy = { ...obj };
      if (checked === undefined) delete copy[pp.subDef.name];
      else copy[pp.subDef.name] = checked;
      return copy;
    }
    if (checked === undefined) return obj;
    return op === 'replace' ? (checked as JsonObject) : { ...obj, ...(checked as JsonObject) };
  });
}

/** `type eq "work"` or `type eq "work" and primary eq true` as an object, else undefined. */
function eqTerms(f: Filter): JsonObject | undefined {
  if (f.kind === 'compare' && f.op === 'eq' && !f.path.sub && f.value !== null) return { [f.path.attr]: f.value };
  if (f.kind === 'and') {
    const l = eqTerms(f.left);
    const r = eqTerms(f.right);
    return l && r ? { ...l, ...r } : undefined;
  }
  return undefined;
}
