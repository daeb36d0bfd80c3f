// PATCH (RFC 7644 §3.5.2) over a stored attribute set, plus what Okta and Entra actually send:
// op names in any case (`Replace`), a no-path `replace` whose value object holds attributes,
// dotted (`name.givenName`) and URN-qualified keys in that object, booleans as "True"/"False",
// members removed either by `members[value eq "…"]` or by `path: "members"` with a value list, and
// `emails[type eq "work"].value` on a user without a work email (a value is created from the
// filter's `eq` terms, as Entra expects). The whole request applies to a copy: any invalid
// operation fails the request and nothing changes. The caller re-checks the result against the
// schema (`checkPatched`), so required attributes and value types hold after every PATCH.
//
// Cost: IdPs send many operations against one big attribute (Okta and Entra add and remove group
// members one operation each). Adding, removing by value list and removing by `[value eq "…"]` go
// through an index of the attribute's values by identity, built once per request, so that such an
// operation costs about the size of its own value, not of the attribute: a PATCH is linear.
import type { Json } from '../core/types.js';
import { invalidPath, invalidSyntax, invalidValue, mutability, noTarget, tooMany } from './errors.js';
import { matches, parsePatchPath, type Filter, type PatchPath } from './filter.js';
import { MAX_PATCH_OPERATIONS } from './limits.js';
import {
  CORE_SCHEMA,
  EXTENSIONS,
  PATCH_SCHEMA,
  checkCount,
  checkValue,
  findAttr,
  findExtension,
  type AttrDef,
  type JsonObject,
  type ResourceType,
} from './schemas.js';
import { textOf } from '../core/canonical.js';

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
  if (ops.length > MAX_PATCH_OPERATIONS) {
    throw tooMany(`a PATCH may hold at most ${MAX_PATCH_OPERATIONS} operations, not ${ops.length}; send them in several requests`);
  }
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
  const p = new Patcher(type, attrs, id);
  for (const o of ops) p.apply(o);
  return p.doc;
}

/**
 * applyPatch, giving the event loop back every `sliceMs` milliseconds, so that a request of a
 * thousand operations does not keep the server from answering others meanwhile.
 */
export async function applyPatchInSlices(type: ResourceType, attrs: JsonObject, ops: PatchOperation[], id: string, sliceMs = 5): Promise<JsonObject> {
  const p = new Patcher(type, attrs, id);
  let since = performance.now();
  for (const o of ops) {
    p.apply(o);
    if (performance.now() - since >= sliceMs) {
      await new Promise((resolve) => setImmediate(resolve));
      since = performance.now();
    }
  }
  return p.doc;
}

/** Identity of a multi-valued entry for de-duplication: its `value` if it has one, else all of it. */
function identity(def: AttrDef, item: Json): string {
  if (isObject(item) && item.value !== undefined) {
    const sub = def.subAttributes?.find((s) => s.name === 'value');
    return `v:${sub?.caseExact ? textOf(item.value) : textOf(item.value).toLowerCase()}`;
  }
  return `j:${JSON.stringify(item)}`;
}

/**
 * One request's work on a private copy of the resource. Multi-valued attributes are indexed by
 * identity on first use; the index belongs to one array object, and every change made without
 * the index puts a new array (with new entries) in place, so a stale index is never consulted.
 */
class Patcher {
  readonly doc: JsonObject;
  private readonly indexes = new WeakMap<Json[], Map<string, Json>>();

  constructor(
    private readonly type: ResourceType,
    attrs: JsonObject,
    private readonly id: string,
  ) {
    this.doc = structuredClone(attrs);
  }

  apply(o: PatchOperation): void {
    if (o.path === undefined) {
      if (o.op === 'remove') throw noTarget('remove needs a path');
      if (!isObject(o.value)) throw invalidValue(`${o.op} without a path needs an object of attributes as its value`);
      for (const [key, value] of Object.entries(o.value)) this.applyKey(o.op, key, value);
      return;
    }
    const ext = findExtension(this.type, o.path);
    if (ext) {
      // The path names an extension as a whole (Entra, for the enterprise User): the same as
      // the key of that name in a no-path operation's value; remove drops the extension.
      if (o.op === 'remove') delete this.doc[ext];
      else this.applyKey(o.op, ext, o.value);
      return;
    }
    this.applyPath(o.op, checkMutable(parsePatchPath(o.path, this.type), o.path), o.value);
  }

  private applyKey(op: PatchOpName, key: string, value: unknown): void {
    const lower = key.toLowerCase();
    if (lower === 'schemas') return;
    if (lower === 'id') {
      if (value === this.id) return;
      throw mutability('id cannot be changed');
    }
    if (lower.startsWith('urn:')) {
      const ext = findExtension(this.type, key);
      if (ext) {
        // The extension as a whole: each of its attributes is one operation.
        if (value === null) {
          if (op === 'replace') delete this.doc[ext];
          return;
        }
        if (!isObject(value)) throw invalidValue(`${ext} must be an object of attributes`);
        for (const [k, v] of Object.entries(value)) this.applyPath(op, checkMutable(parsePatchPath(`${ext}:${k}`, this.type), k), v);
        return;
      }
      const known = [CORE_SCHEMA[this.type], ...Object.keys(EXTENSIONS[this.type])].some((u) => lower.startsWith(`${u.toLowerCase()}:`));
      // An extension this server does not implement is ignored, as in POST and PUT.
      if (!known) return;
    }
    const pp = parsePatchPath(key, this.type);
    if (pp.path.def.mutability === 'writeOnly') return; // password: accepted, never stored
    this.applyPath(op, checkMutable(pp, key), value);
  }

  /** The object holding the attribute: the resource itself, or its extension object (created on demand). */
  private holderOf(pp: PatchPath, create: boolean): JsonObject | undefined {
    if (!pp.path.urn) return this.doc;
    const h = this.doc[pp.path.urn];
    if (isObject(h)) return h;
    if (!create) return undefined;
    const fresh: JsonObject = {};
    this.doc[pp.path.urn] = fresh;
    return fresh;
  }

  /**
   * The values of a multi-valued attribute with their index (identity → entry), built on first
   * use. Building it merges entries of equal identity, as an add always has.
   */
  private indexed(holder: JsonObject, def: AttrDef): { items: Json[]; index: Map<string, Json> } {
    const current = holder[def.name];
    if (Array.isArray(current)) {
      const known = this.indexes.get(current);
      if (known) return { items: current, index: known };
    }
    const items: Json[] = [];
    const index = new Map<string, Json>();
    for (const item of Array.isArray(current) ? current : []) this.addOne(items, index, def, item);
    holder[def.name] = items;
    this.indexes.set(items, index);
    return { items, index };
  }

  private addOne(items: Json[], index: Map<string, Json>, def: AttrDef, item: Json): void {
    const key = identity(def, item);
    const had = index.get(key);
    if (had === undefined) {
      index.set(key, item);
      items.push(item);
    } else if (isObject(had) && isObject(item)) {
      // Same identity (so the same `value`): the entry is updated where it stands.
      Object.assign(had, item);
    }
  }

  /** Drop the entries whose identity is `key`; the attribute goes when none is left. */
  private removeKeys(holder: JsonObject, def: AttrDef, keys: Iterable<string>): void {
    const { items, index } = this.indexed(holder, def);
    for (const key of keys) {
      const had = index.get(key);
      if (had === undefined) continue;
      index.delete(key);
      items.splice(items.indexOf(had), 1);
    }
    if (!items.length) delete holder[def.name];
  }

  private applyPath(op: PatchOpName, pp: PatchPath, value: unknown): void {
    const { def } = pp.path;
    const where = name(pp);
    const holder = this.holderOf(pp, op !== 'remove');
    if (!holder) return; // removing from an extension the resource does not have

    if (pp.filter) return this.applyFiltered(holder, op, pp, pp.filter, value);

    if (pp.path.sub) {
      const subDef = pp.path.subDef!;
      const current = holder[def.name];
      if (def.multiValued) {
        // `emails.value` without a filter: every value of the attribute (new entries, new array).
        const items = Array.isArray(current) ? current.filter(isObject) : [];
        if (op === 'remove') {
          holder[def.name] = items.map(({ [subDef.name]: _gone, ...rest }) => rest);
          return;
        }
        const v = checkValue(subDef, value, where);
        if (items.length === 0) {
          if (v !== undefined) holder[def.name] = [{ [subDef.name]: v }];
          return;
        }
        holder[def.name] = items.map(({ [subDef.name]: _old, ...rest }) => (v === undefined ? rest : { ...rest, [subDef.name]: v }));
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
        this.removeKeys(
          holder,
          def,
          (Array.isArray(gone) ? gone : []).map((g) => identity(def, g)),
        );
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
      if (op === 'replace') delete holder[def.name];
      const { items, index } = this.indexed(holder, def);
      for (const item of v as Json[]) this.addOne(items, index, def, item);
      // Checked here, not only once at the end: no operation ever works on an oversized list.
      checkCount(def, items.length, where);
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
  private applyFiltered(holder: JsonObject, op: PatchOpName, pp: PatchPath, filter: Filter, value: unknown): void {
    const { def } = pp.path;
    // Okta removes group members one `members[value eq "<id>"]` operation each: by index.
    const key = op === 'remove' && !pp.subDef ? valueKey(def, filter) : undefined;
    if (key !== undefined) return this.removeKeys(holder, def, [key]);

    const where = `${def.name}[…]${pp.subDef ? `.${pp.subDef.name}` : ''}`;
    const items = Array.isArray(holder[def.name]) ? (holder[def.name] as Json[]) : [];
    const hit = items.map((item) => isObject(item) && matches(filter, item));

    if (op === 'remove') {
      if (pp.subDef) {
        const sub = pp.subDef.name;
        holder[def.name] = items.map((item, i) => (hit[i] ? Object.fromEntries(Object.entries(item as JsonObject).filter(([k]) => k !== sub)) : item));
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
      checkCount(def, items.length + 1, def.name);
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
      return op === 'replace' ? checked : { ...obj, ...(checked as JsonObject) };
    });
  }
}

function checkMutable(pp: PatchPath, text: string): PatchPath {
  if (pp.path.def.mutability === 'readOnly') throw mutability(`${text} is read-only`);
  return pp;
}

function name(pp: PatchPath): string {
  return `${pp.path.urn ? `${pp.path.urn}:` : ''}${pp.path.attr}${pp.path.sub ? `.${pp.path.sub}` : ''}`;
}

/**
 * For `value eq "<string>"` on an attribute whose `value` is text, the identity of the entries it
 * selects: exactly those, since identity folds case just as the comparison does.
 */
function valueKey(def: AttrDef, f: Filter): string | undefined {
  if (f.kind !== 'compare' || f.op !== 'eq' || typeof f.value !== 'string' || f.path.attr !== 'value' || f.path.sub) return undefined;
  const sub = findAttr(def.subAttributes ?? [], 'value');
  if (!sub || !['string', 'reference', 'binary'].includes(sub.type)) return undefined;
  return identity(def, { value: f.value });
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
