// SCIM filters (RFC 7644 §3.4.2.2) and attribute paths (§3.10, §3.5.2): a tokenizer, a recursive
// descent parser that resolves every attribute name against the schema table at parse time (so an
// unknown attribute or a comparison the attribute's type cannot make is a 400, not an empty
// result), and an evaluator over stored resources. Attribute names and operators are
// case-insensitive; string comparisons fold case unless the attribute is caseExact.
import type { Json } from '../core/types.js';
import { invalidFilter, invalidPath, type ScimError } from './errors.js';
import { CORE_ATTRS, CORE_SCHEMA, EXTENSIONS, findAttr, findExtension, type AttrDef, type JsonObject, type ResourceType } from './schemas.js';
import { textOf } from '../core/canonical.js';

export type CompareOp = 'eq' | 'ne' | 'co' | 'sw' | 'ew' | 'gt' | 'ge' | 'lt' | 'le';
const COMPARE_OPS = new Set<string>(['eq', 'ne', 'co', 'sw', 'ew', 'gt', 'ge', 'lt', 'le']);

/** An attribute resolved against the schema: canonical names plus their definitions. */
export interface AttrPath {
  /** Extension URN holding the attribute; undefined for a core attribute (or a sub-attribute inside `[...]`). */
  urn?: string;
  attr: string;
  def: AttrDef;
  sub?: string;
  subDef?: AttrDef;
}

export type FilterValue = string | number | boolean | null;

export type Filter =
  | { kind: 'and' | 'or'; left: Filter; right: Filter }
  | { kind: 'not'; filter: Filter }
  | { kind: 'present'; path: AttrPath }
  | { kind: 'compare'; op: CompareOp; path: AttrPath; value: FilterValue }
  /** `emails[type eq "work"]`: `filter` is evaluated on each value of the multi-valued `path`. */
  | { kind: 'valuePath'; path: AttrPath; filter: Filter }
  /** A comparison on an attribute this resource type does not have (searching several types): false. */
  | { kind: 'absent'; name: string };

type Token = { t: 'word'; v: string; at: number } | { t: 'str'; v: string; at: number } | { t: '(' | ')' | '[' | ']'; at: number };

type Fail = (detail: string) => ScimError;

function tokenize(text: string, fail: Fail): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '(' || c === ')' || c === '[' || c === ']') {
      out.push({ t: c, at: i });
      i++;
    } else if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (j >= text.length) throw fail(`unterminated string starting at position ${i + 1}`);
      let v: string;
      try {
        v = JSON.parse(text.slice(i, j + 1)) as string;
      } catch {
        throw fail(`invalid escape in the string at position ${i + 1}`);
      }
      out.push({ t: 'str', v, at: i });
      i = j + 1;
    } else {
      let j = i;
      while (j < text.length && !/[\s()[\]"]/.test(text[j]!)) j++;
      out.push({ t: 'word', v: text.slice(i, j), at: i });
      i = j;
    }
  }
  return out;
}

/**
 * Resolve `name` (`userName`, `name.givenName`, `emails.value`, `urn:…:enterprise:2.0:User:department`)
 * for `type`; inside `[...]`, `within` is the multi-valued attribute and names are its sub-attributes.
 */
export function resolveAttrPath(name: string, type: ResourceType, fail: Fail = invalidFilter, within?: AttrDef): AttrPath {
  if (within) {
    const sub = findAttr(within.subAttributes ?? [], name);
    if (!sub) throw fail(`${name} is not a sub-attribute of ${within.name}; it has ${(within.subAttributes ?? []).map((s) => s.name).join(', ')}`);
    return { attr: sub.name, def: sub };
  }
  let defs = CORE_ATTRS[type];
  let urn: string | undefined;
  let rest = name;
  if (/^urn:/i.test(name)) {
    const whole = findExtension(type, name);
    if (whole) throw fail(`${name} names the extension schema, not one of its attributes (such as ${whole}:${EXTENSIONS[type][whole]![0]!.name})`);
    const cut = name.lastIndexOf(':');
    const prefix = name.slice(0, cut);
    rest = name.slice(cut + 1);
    if (prefix.toLowerCase() !== CORE_SCHEMA[type].toLowerCase()) {
      urn = findExtension(type, prefix);
      if (!urn) throw fail(`${prefix} is not a schema of ${type} resources`);
      defs = EXTENSIONS[type][urn]!;
    }
  }
  const parts = rest.split('.');
  if (parts.length > 2 || parts.some((p) => p === '')) throw fail(`${JSON.stringify(name)} is not an attribute path`);
  const def = findAttr(defs, parts[0]!);
  if (!def) throw fail(`${parts[0]} is not an attribute of ${urn ?? CORE_SCHEMA[type]}`);
  if (parts.length === 1) return { ...(urn ? { urn } : {}), attr: def.name, def };
  const subDef = findAttr(def.subAttributes ?? [], parts[1]!);
  if (!subDef) throw fail(`${parts[1]} is not a sub-attribute of ${def.name}`);
  return { ...(urn ? { urn } : {}), attr: def.name, def, sub: subDef.name, subDef };
}

class Parser {
  private i = 0;
  constructor(
    private readonly tokens: Token[],
    private readonly type: ResourceType,
    private readonly fail: Fail,
    private readonly text: string,
    /** An attribute the type lacks is `absent`, not an error (a search over several types). */
    private readonly lenient = false,
  ) {}

  peek(): Token | undefined {
    return this.tokens[this.i];
  }
  next(): Token {
    const t = this.tokens[this.i++];
    if (!t) throw this.fail(`${JSON.stringify(this.text)} ends too early`);
    return t;
  }
  isWord(w: string): boolean {
    const t = this.peek();
    return t?.t === 'word' && t.v.toLowerCase() === w;
  }
  expect(kind: ')' | ']'): void {
    const t = this.next();
    if (t.t !== kind) throw this.fail(`expected ${kind} at position ${t.at + 1}`);
  }
  atEnd(): boolean {
    return this.i >= this.tokens.length;
  }
  rest(): Token {
    return this.tokens[this.i]!;
  }

  or(within?: AttrDef): Filter {
    let left = this.and(within);
    while (this.isWord('or')) {
      this.i++;
      left = { kind: 'or', left, right: this.and(within) };
    }
    return left;
  }
  and(within?: AttrDef): Filter {
    let left = this.unary(within);
    while (this.isWord('and')) {
      this.i++;
      left = { kind: 'and', left, right: this.unary(within) };
    }
    return left;
  }
  unary(within?: AttrDef): Filter {
    if (this.isWord('not')) {
      this.i++;
      return { kind: 'not', filter: this.unary(within) };
    }
    const t = this.next();
    if (t.t === '(') {
      const f = this.or(within);
      this.expect(')');
      return f;
    }
    if (t.t !== 'word') throw this.fail(`expected an attribute name at position ${t.at + 1}`);
    let path: AttrPath;
    try {
      path = resolveAttrPath(t.v, this.type, this.fail, within);
    } catch (e) {
      if (!this.lenient || within) throw e;
      return this.skipComparison(t.v);
    }
    const n = this.peek();
    if (n?.t === '[') {
      if (within || path.sub || path.def.type !== 'complex' || !path.def.multiValued) {
        throw this.fail(`[...] filters only a multi-valued complex attribute such as emails or members, not ${t.v}`);
      }
      this.i++;
      const inner = this.or(path.def);
      this.expect(']');
      const tail = this.peek();
      if (tail?.t === 'word' && tail.v.startsWith('.')) {
        // Entra: `emails[type eq "work"].value eq "x"`, which RFC 7644's grammar lacks. Read as
        // `emails[type eq "work" and value eq "x"]`: one and the same value satisfies both.
        this.i++;
        const leaf = this.comparison(tail.v, resolveAttrPath(tail.v.slice(1), this.type, this.fail, path.def));
        return { kind: 'valuePath', path, filter: { kind: 'and', left: inner, right: leaf } };
      }
      return { kind: 'valuePath', path, filter: inner };
    }
    return this.comparison(t.v, path);
  }
  /** The rest of a comparison on an attribute this type lacks: checked for syntax only. */
  skipComparison(name: string): Filter {
    if (this.peek()?.t === '[') {
      for (let depth = 0; ;) {
        const t = this.next();
        if (t.t === '[') depth++;
        else if (t.t === ']' && --depth === 0) break;
      }
      const tail = this.peek();
      if (tail?.t !== 'word' || !tail.v.startsWith('.')) return { kind: 'absent', name };
      this.i++;
    }
    const opTok = this.next();
    const op = opTok.t === 'word' ? opTok.v.toLowerCase() : '';
    if (op !== 'pr') {
      if (!COMPARE_OPS.has(op)) throw this.fail(`expected an operator (eq ne co sw ew gt ge lt le pr) after ${name} at position ${opTok.at + 1}`);
      this.value();
    }
    return { kind: 'absent', name };
  }
  /** The operator and value after the attribute `name` (resolved as `path`). */
  comparison(name: string, path: AttrPath): Filter {
    const opTok = this.next();
    const op = opTok.t === 'word' ? opTok.v.toLowerCase() : '';
    if (op === 'pr') return { kind: 'present', path };
    if (!COMPARE_OPS.has(op)) throw this.fail(`expected an operator (eq ne co sw ew gt ge lt le pr) after ${name} at position ${opTok.at + 1}`);
    const value = this.value();
    checkComparison(op as CompareOp, path, value, this.fail);
    return { kind: 'compare', op: op as CompareOp, path, value };
  }
  value(): FilterValue {
    const t = this.next();
    if (t.t === 'str') return t.v;
    if (t.t === 'word') {
      const w = t.v.toLowerCase();
      if (w === 'true') return true;
      if (w === 'false') return false;
      if (w === 'null') return null;
      if (/^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(t.v)) return Number(t.v);
      throw this.fail(`${t.v} at position ${t.at + 1} is not a value; strings need double quotes`);
    }
    throw this.fail(`expected a value at position ${t.at + 1}`);
  }
}

/** The definition compared: a complex attribute without a sub-attribute compares its `value`. */
function leafDef(path: AttrPath): AttrDef | undefined {
  const d = path.subDef ?? path.def;
  if (d.type !== 'complex') return d;
  return findAttr(d.subAttributes ?? [], 'value');
}

function checkComparison(op: CompareOp, path: AttrPath, value: FilterValue, fail: Fail): void {
  const name = path.sub ? `${path.attr}.${path.sub}` : path.attr;
  const def = leafDef(path);
  if (!def) throw fail(`${name} is complex; compare one of its sub-attributes, e.g. ${name}.${path.def.subAttributes?.[0]?.name ?? 'value'}`);
  if (value === null) {
    if (op !== 'eq' && op !== 'ne') throw fail(`${op} cannot compare with null`);
    return;
  }
  switch (def.type) {
    case 'boolean':
      if (op !== 'eq' && op !== 'ne') throw fail(`${name} is a boolean; only eq and ne apply`);
      if (typeof value !== 'boolean') throw fail(`${name} is a boolean; compare it with true or false`);
      return;
    case 'dateTime':
      if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) throw fail(`${name} is a dateTime; compare it with a quoted ISO 8601 instant`);
      return;
    case 'integer':
    case 'decimal':
      if (typeof value !== 'number') throw fail(`${name} is a number; compare it with a number`);
      if (op === 'co' || op === 'sw' || op === 'ew') throw fail(`${op} does not apply to the number ${name}`);
      return;
    default:
      if (typeof value === 'boolean') throw fail(`${name} is a string; quote the value`);
  }
}

function parseWith(text: string, type: ResourceType, fail: Fail, lenient = false): { p: Parser } {
  if (typeof text !== 'string' || text.trim() === '') throw fail('the filter is empty');
  if (text.length > 4096) throw fail('the filter is longer than 4096 characters');
  return { p: new Parser(tokenize(text, fail), type, fail, text, lenient) };
}

/**
 * Parse a `filter` parameter for `type` resources; throws ScimError 400 invalidFilter. With
 * `lenient` (a search over several resource types), an attribute `type` lacks matches nothing.
 */
export function parseFilter(text: string, type: ResourceType, lenient = false): Filter {
  const { p } = parseWith(text, type, invalidFilter, lenient);
  const f = p.or();
  if (!p.atEnd()) throw invalidFilter(`unexpected ${describe(p.rest())} at position ${p.rest().at + 1}`);
  return f;
}

/** A PATCH path (RFC 7644 §3.5.2): `attr`, `attr.sub`, `urn:…:attr`, `attr[filter]`, `attr[filter].sub`. */
export interface PatchPath {
  path: AttrPath;
  filter?: Filter;
  /** Sub-attribute after `[...]`. */
  subDef?: AttrDef;
}

export function parsePatchPath(text: string, type: ResourceType): PatchPath {
  const { p } = parseWith(text, type, invalidPath);
  const first = p.next();
  if (first.t !== 'word') throw invalidPath(`${JSON.stringify(text)} does not start with an attribute name`);
  const path = resolveAttrPath(first.v, type, invalidPath);
  if (p.atEnd()) return { path };
  const open = p.next();
  if (open.t !== '[' || path.sub || path.def.type !== 'complex' || !path.def.multiValued) {
    throw invalidPath(`${JSON.stringify(text)} is not a path: [...] follows only a multi-valued complex attribute`);
  }
  const filter = p.or(path.def);
  p.expect(']');
  if (p.atEnd()) return { path, filter };
  const tail = p.next();
  const m = tail.t === 'word' ? /^\.([^.]+)$/.exec(tail.v) : null;
  if (!m || !p.atEnd()) throw invalidPath(`${JSON.stringify(text)}: only ".subAttribute" may follow [...]`);
  const subDef = findAttr(path.def.subAttributes ?? [], m[1]!);
  if (!subDef) throw invalidPath(`${m[1]} is not a sub-attribute of ${path.attr}`);
  return { path, filter, subDef };
}

function describe(t: Token): string {
  return t.t === 'word' ? JSON.stringify(t.v) : t.t === 'str' ? `the string ${JSON.stringify(t.v)}` : JSON.stringify(t.t);
}

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The values a path selects in `obj`, multi-valued attributes flattened; complex ones give their `value`. */
export function valuesAt(obj: JsonObject, path: AttrPath): Json[] {
  const holder = path.urn ? obj[path.urn] : obj;
  if (!isObject(holder)) return [];
  const v = holder[path.attr];
  if (v === undefined || v === null) return [];
  const items = Array.isArray(v) ? v : [v];
  const sub = path.sub ?? (path.def.type === 'complex' ? 'value' : undefined);
  if (!sub) return items;
  return items.flatMap((item) => (isObject(item) && item[sub] !== undefined && item[sub] !== null ? [item[sub]] : []));
}

function present(obj: JsonObject, path: AttrPath): boolean {
  const holder = path.urn ? obj[path.urn] : obj;
  if (!isObject(holder)) return false;
  const v = holder[path.attr];
  if (path.sub) return valuesAt(obj, path).some((x) => x !== '');
  if (v === undefined || v === null || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (isObject(v)) return Object.keys(v).length > 0;
  return true;
}

function compareOne(op: CompareOp, def: AttrDef, actual: Json, expected: FilterValue): boolean {
  if (def.type === 'dateTime') {
    const a = Date.parse(textOf(actual));
    const e = Date.parse(String(expected));
    return ordered(op, a === e ? 0 : a < e ? -1 : 1, textOf(actual), String(expected));
  }
  if (typeof actual === 'number' && typeof expected === 'number') {
    return ordered(op, actual === expected ? 0 : actual < expected ? -1 : 1, String(actual), String(expected));
  }
  if (typeof actual === 'boolean' || typeof expected === 'boolean') {
    return op === 'eq' && actual === expected;
  }
  let a = textOf(actual);
  let e = String(expected);
  if (!def.caseExact) {
    a = a.toLowerCase();
    e = e.toLowerCase();
  }
  return ordered(op, a === e ? 0 : a < e ? -1 : 1, a, e);
}

function ordered(op: CompareOp, cmp: number, a: string, e: string): boolean {
  switch (op) {
    case 'eq':
      return cmp === 0;
    case 'co':
      return a.includes(e);
    case 'sw':
      return a.startsWith(e);
    case 'ew':
      return a.endsWith(e);
    case 'gt':
      return cmp > 0;
    case 'ge':
      return cmp >= 0;
    case 'lt':
      return cmp < 0;
    case 'le':
      return cmp <= 0;
    default:
      return false;
  }
}

/** Whether `resource` (or, inside `[...]`, one value of a multi-valued attribute) matches `filter`. */
export function matches(filter: Filter, resource: JsonObject): boolean {
  switch (filter.kind) {
    case 'and':
      return matches(filter.left, resource) && matches(filter.right, resource);
    case 'or':
      return matches(filter.left, resource) || matches(filter.right, resource);
    case 'not':
      return !matches(filter.filter, resource);
    case 'present':
      return present(resource, filter.path);
    case 'absent':
      return false;
    case 'valuePath': {
      const holder = filter.path.urn ? resource[filter.path.urn] : resource;
      const items = isObject(holder) ? holder[filter.path.attr] : undefined;
      return Array.isArray(items) && items.some((item) => isObject(item) && matches(filter.filter, item));
    }
    case 'compare': {
      const values = valuesAt(resource, filter.path);
      const def = leafDef(filter.path)!;
      if (filter.value === null) return filter.op === 'eq' ? values.length === 0 : values.length > 0;
      if (filter.op === 'ne') return !values.some((v) => compareOne('eq', def, v, filter.value));
      return values.some((v) => compareOne(filter.op, def, v, filter.value));
    }
  }
}

/** The attribute names a lenient parse found the resource type lacks. */
export function absentAttributes(f: Filter): string[] {
  switch (f.kind) {
    case 'and':
    case 'or':
      return [...absentAttributes(f.left), ...absentAttributes(f.right)];
    case 'not':
      return absentAttributes(f.filter);
    case 'absent':
      return [f.name];
    default:
      return [];
  }
}

/**
 * The value of an `eq` on a server-unique attribute (`userName eq "…"` for Users, `displayName eq "…"`
 * for Groups) when that is the whole filter: the store can answer it from its unique index, which
 * is how Okta and Entra look a user up before creating it.
 */
export function uniqueKeyLookup(filter: Filter): string | undefined {
  if (filter.kind !== 'compare' || filter.op !== 'eq' || typeof filter.value !== 'string') return undefined;
  const p = filter.path;
  return !p.urn && !p.sub && p.def.uniqueness === 'server' && p.attr !== 'id' ? filter.value : undefined;
}
