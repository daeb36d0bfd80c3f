// Parse and validate a spec from text. Pure: the caller passes the text, the environment and the
// clock; nothing here reads a file or the process environment.
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Alias, type Document, type Node, type Pair } from 'yaml';
import type { z } from 'zod';
import { SpecError, type SpecProblem } from '../core/errors.js';
import type { Notice } from '../core/types.js';
import { backendSchema, datasetSchema, groupSchema, invariantSchema, principalSchema, specSchema, type Spec } from './schema.js';
import { readSimpleYaml } from './simple-yaml.js';
import { validateReferences } from './validate.js';

export interface LoadOptions {
  file: string;
  env: Record<string, string | undefined>;
  now: Date;
}

export interface LoadedSpec {
  spec: Spec;
  notices: Notice[];
  /**
   * Per backend, its settings as written before `${VAR}` substitution, where they name a
   * variable: what the state may remember of a backend (the variable, never its secret value). A
   * nested setting is named by its path: `assumeRole.externalId`.
   */
  templates: Record<string, Record<string, string>>;
  /** Where each value is in the file, for messages that point at the spec after loading (invariants). */
  source: SpecPositions;
}

/** Positions in the spec file, by path (`['principals', 'bob', 'grants', 0]`). */
export interface SpecPositions {
  readonly file: string;
  /** Line and column of the value at `path` (of its key, when `key`), or of its nearest ancestor in the file. */
  position(path: readonly PathKey[], key?: boolean): { line: number; column: number };
  /** Whether the file holds a value at `path` (a principal merged from SCIM has none). */
  has(path: readonly PathKey[]): boolean;
}

/** `${VAR}` in a string: the variables a value reads from the environment. */
export const hasVariable = (s: string) => /\$\{[A-Za-z_][A-Za-z0-9_]*\}/.test(s);

/** Substitutes `${VAR}` from `env`; undefined when a variable is not set. */
export function substitute(template: string, env: LoadOptions['env']): string | undefined {
  let unset = false;
  const out = template.replace(VAR_RE, (_m, v: string) => {
    const found = env[v];
    if (found === undefined) unset = true;
    return found ?? '';
  });
  return unset ? undefined : out;
}

export type PathKey = string | number;

interface Located {
  root: Node | null;
  lines: LineCounter;
}

/** Locates a path of the parsed document in the source text. */
export class SourceMap {
  private located: Located | undefined;
  private readonly keyIndex = new WeakMap<object, Map<string, Pair>>();

  /** `locate` parses the document with positions; it is called the first time one is needed. */
  constructor(
    private readonly locate: () => Located,
    readonly file: string,
  ) {}

  /** Position of the value at `path`, or of its key when `key` is set, or the nearest ancestor. */
  position(path: readonly PathKey[], key = false): { line: number; column: number } {
    const { lines } = (this.located ??= this.locate());
    const pos = lines.linePos(this.find(path, key).offset);
    return { line: pos.line, column: pos.col };
  }

  has(path: readonly PathKey[]): boolean {
    return this.find(path, false).found;
  }

  /** The offset of the value at `path` (or its key), or of the nearest ancestor the file holds. */
  private find(path: readonly PathKey[], key: boolean): { offset: number; found: boolean } {
    const { root } = (this.located ??= this.locate());
    let node: unknown = root;
    let offset = 0;
    for (let i = 0; i < path.length; i++) {
      const seg = path[i];
      if (isMap(node)) {
        // Indexed once per mapping: messages may look up thousands of principals in one.
        let index = this.keyIndex.get(node);
        if (!index) {
          index = new Map();
          // The last of duplicate keys is the one whose value is used, so point at that one.
          for (const p of node.items) if (isPair(p) && isScalar(p.key)) index.set(String(p.key.value), p);
          this.keyIndex.set(node, index);
        }
        const pair = index.get(String(seg));
        if (!pair) return { offset, found: false };
        const last = i === path.length - 1;
        const target = last && key ? pair.key : (pair.value ?? pair.key);
        offset = (target as Node | null)?.range?.[0] ?? offset;
        node = target;
        if (last && key) break;
      } else if (isSeq(node) && typeof seg === 'number' && node.items[seg]) {
        node = node.items[seg];
        offset = (node as Node).range?.[0] ?? offset;
      } else {
        return { offset, found: false };
      }
    }
    if (path.length === 0 && root?.range) offset = root.range[0];
    return { offset, found: true };
  }

  problem(path: readonly PathKey[], message: string, key = false): SpecProblem {
    const pos = this.position(path, key);
    return { file: this.file, ...pos, path: formatPath(path), message };
  }
}

export function formatPath(path: readonly PathKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${p}` : p;
  return out;
}

const VAR_RE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * Replace `${VAR}` in every string scalar; missing variables are problems, not empty strings.
 * The paths of values with a missing variable are recorded in `missing`, so that the schema's
 * complaint about the (meaningless) placeholder is not reported on top. What holds no variable is
 * returned as it is, not copied; `path` is the path of `value`, extended and restored in place.
 */
function interpolate(value: unknown, path: PathKey[], env: LoadOptions['env'], problems: SpecProblem[], src: SourceMap, missing: Set<string>): unknown {
  if (typeof value === 'string') {
    if (!value.includes('${')) return value;
    return value.replace(VAR_RE, (m, v: string) => {
      const found = env[v];
      if (found === undefined) {
        problems.push(src.problem([...path], `environment variable ${v} is not set; set it, or write the value here if it is not a secret`));
        missing.add(formatPath(path));
        return m;
      }
      return found;
    });
  }
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      path.push(i);
      const v = interpolate(value[i], path, env, problems, src, missing);
      path.pop();
      if (v !== value[i]) (out ??= [...(value as unknown[])])[i] = v;
    }
    return out ?? value;
  }
  if (value && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record);
    let copy: [string, unknown][] | undefined;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      path.push(k);
      const v = interpolate(record[k], path, env, problems, src, missing);
      path.pop();
      if (v !== record[k]) copy ??= keys.slice(0, i).map((done) => [done, record[done]]);
      copy?.push([k, v]);
    }
    // fromEntries defines each key, so a key named __proto__ stays a key.
    return copy ? Object.fromEntries(copy) : value;
  }
  return value;
}

function describe(value: unknown): string {
  if (typeof value === 'string' && value.length > 60) return JSON.stringify(`${value.slice(0, 50)}…`);
  // JSON has no NaN or infinity (it would print null): show them as YAML writes them.
  if (typeof value === 'number' && !Number.isFinite(value)) return Number.isNaN(value) ? '.nan' : value > 0 ? '.inf' : '-.inf';
  const s = JSON.stringify(value);
  return s === undefined ? String(value) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function valueAt(root: unknown, path: readonly PathKey[]): unknown {
  let v: unknown = root;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string | number, unknown>)[p];
  }
  return v;
}

/** What the names of each top-level record are called, and the schema of their values. */
const RECORDS: Record<string, { what: string; value: z.ZodType }> = {
  backends: { what: 'backend name', value: backendSchema },
  datasets: { what: 'dataset name', value: datasetSchema },
  groups: { what: 'group name', value: groupSchema },
  principals: { what: 'principal name', value: principalSchema },
  invariants: { what: 'invariant name', value: invariantSchema },
};

/**
 * `raw` is the interpolated document that was validated; `original` the text before `${VAR}`
 * substitution. Messages show the original, so a value read from the environment (a URL with a
 * password, say) is never echoed into an error.
 */
function zodProblems(issues: readonly z.core.$ZodIssue[], raw: unknown, original: unknown, src: SourceMap, base: readonly PathKey[] = []): SpecProblem[] {
  const out: SpecProblem[] = [];
  for (const issue of issues) {
    const path = [...base, ...issue.path.filter((p): p is PathKey => typeof p !== 'symbol')];
    if (issue.code === 'invalid_key') {
      // A name the backend cannot hold. zod skips the value of a bad key, so check it here too:
      // every problem is reported at once.
      const name = path[path.length - 1];
      const record = RECORDS[String(path[0])];
      for (const inner of issue.issues) {
        const text = inner.message.startsWith(record?.what ?? '\0') ? inner.message : `name ${inner.message}`;
        out.push(src.problem(path, `${text} (got ${describe(name)})`, true));
      }
      if (record && path.length === 2) {
        const value = valueAt(raw, path);
        const parsed = record.value.safeParse(value);
        if (!parsed.success) out.push(...zodProblems(parsed.error.issues, raw, original, src, path));
      }
      continue;
    }
    if (issue.code === 'invalid_union' && issue.errors.length === 3 && String(path[0]) === 'datasets') {
      // Pick the branch the user meant (a bucket, a schema, or a database alone: mysql) and report its own problems.
      const value = valueAt(raw, path);
      const branch = value && typeof value === 'object' ? ('bucket' in value ? 0 : 'schema' in value ? 1 : 'database' in value ? 2 : -1) : -1;
      if (branch >= 0) {
        out.push(...zodProblems(issue.errors[branch]!, raw, original, src, path));
        continue;
      }
    }
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) {
        const allowed = allowedKeys(path, valueAt(raw, path));
        out.push(src.problem([...path, k], `unknown key ${JSON.stringify(k)}${allowed ? `; allowed: ${allowed}` : ''}`, true));
      }
      continue;
    }
    const value = valueAt(raw, path);
    const shownValue = valueAt(original, path);
    if (value === undefined) {
      const missing = String(path[path.length - 1]);
      const hint = REQUIRED_HINTS[`${String(path[0])}.${missing}`] ?? REQUIRED_HINTS[missing];
      out.push(src.problem(path.slice(0, -1), `missing required key ${JSON.stringify(missing)}${hint ? ` (${hint})` : ''}`, true));
      continue;
    }
    if (issue.code === 'invalid_type') {
      const expected = KINDS[issue.expected] ?? issue.expected;
      out.push(
        src.problem(
          path,
          `must be ${expected}, not ${describeKind(value)}${value !== null && typeof value === 'object' ? '' : ` (got ${describe(shownValue)})`}`,
        ),
      );
      continue;
    }
    // Object.is, because NaN !== NaN: a .nan in the file was not substituted from anywhere.
    const substituted = !Object.is(value, shownValue);
    const shown =
      // A number's digits may well appear in the message for other reasons (`from 1 to 500`).
      (!substituted && typeof value !== 'number' && issue.message.includes(JSON.stringify(value))) || (value !== null && typeof value === 'object')
        ? ''
        : ` (got ${describe(shownValue)}${substituted ? ', substituted from the environment' : ''})`;
    const message = substituted ? issue.message.split(JSON.stringify(value)).join('the substituted value') : issue.message;
    out.push(src.problem(path, `${message}${shown}`));
  }
  return out;
}

/** What a required key holds, for the message when it is missing. */
const REQUIRED_HINTS: Record<string, string> = {
  version: 'the spec format version: 1',
  backends: 'a mapping of backend names to { type: aws } or { type: postgres, url: ... } or { type: rgw, endpoint: ... } or { type: mysql, url: ... }',
  'backends.type': 'aws, postgres, rgw or mysql',
  'principals.type': 'person or service',
  access: 'read, write or admin',
  dataset: 'the name of a dataset under datasets',
  backend: 'the name of a backend under backends',
  url: 'a postgres:// or mysql:// URL, or ${VAR} to read it from the environment',
  accessKeyId: "the RGW admin user's access key id, or ${VAR} to read it from the environment",
  secretAccessKey: "${VAR}, to read the RGW admin user's secret key from the environment",
  endpoint: 'the http(s) URL of the gateway',
};

const KINDS: Record<string, string> = {
  array: 'a list (for example [a, b])',
  object: 'a mapping (key: value)',
  record: 'a mapping (name: value)',
  string: 'text',
  number: 'a number',
  boolean: 'true or false',
};

const KEYS: Record<string, string> = {
  '': 'version, settings, backends, datasets, groups, principals, invariants, scim, knownAccess, approvers',
  // Read off the schema, so a new setting or principal key is never missing from the help.
  settings: Object.keys(specSchema.shape.settings.unwrap().shape).join(', '),
  'settings.*.#': 'name, issuer, audience, claim, algorithms, unverifiedEmail',
  'backends.*':
    'type, region, iamPath, endpoint, timeouts, quotas, assumeRole (aws); type, url, scope, timeouts (postgres); type, endpoint, region, accessKeyId, secretAccessKey, userPrefix, timeouts (rgw); type, url, host, scope, timeouts (mysql)',
  'backends.*.timeouts': 'connect, request',
  'backends.*.assumeRole': 'roleArn, externalId, sessionName',
  'backends.*.quotas': 'users, groups, policies, roles',
  // settings.requests: the only mapping among the settings (names in the second place read as *).
  'settings.*': 'maxDuration, decideWithin',
  'datasets.*':
    'backend, bucket, prefix, description, approvers (aws, rgw); backend, database, schema, tables, description, approvers (postgres); backend, database, tables, description, approvers (mysql)',
  'datasets.*.approvers': 'principals, groups, access',
  'approvers.#': 'description, datasets, principals, groups, access',
  'groups.*': 'description, grants',
  'groups.*.grants.#': 'dataset, access, expires',
  'principals.*': Object.keys(principalSchema.shape).join(', '),
  'principals.*.grants.#': 'dataset, access, expires',
  'invariants.*': Object.keys(invariantSchema.shape).join(', '),
  scim: 'groups',
};

/** The keys allowed at `path`; for a backend or dataset, those of the kind it evidently is. */
function allowedKeys(path: readonly PathKey[], value: unknown): string | undefined {
  const shape = path.map((p, i) => (typeof p === 'number' ? '#' : i === 1 ? '*' : p)).join('.');
  const v = value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {};
  if (shape === 'backends.*' && (v.type === 'aws' || v.type === 'postgres' || v.type === 'rgw' || v.type === 'mysql')) return KINDED_KEYS[`backend.${v.type}`];
  if (shape === 'datasets.*' && ('bucket' in v || 'database' in v))
    return KINDED_KEYS['bucket' in v ? 'dataset.aws' : 'schema' in v ? 'dataset.postgres' : 'dataset.database'];
  return KEYS[shape];
}

const KINDED_KEYS: Record<string, string> = {
  'backend.aws': 'type, region, iamPath, endpoint, timeouts, quotas, assumeRole',
  'backend.postgres': 'type, url, scope, timeouts',
  'backend.rgw': 'type, endpoint, region, accessKeyId, secretAccessKey, userPrefix, timeouts',
  'backend.mysql': 'type, url, host, scope, timeouts',
  'dataset.aws': 'backend, bucket, prefix, description, approvers',
  'dataset.postgres': 'backend, database, schema, tables, description, approvers',
  'dataset.database': 'backend, database, tables, description, approvers (mysql); backend, database, schema, tables, description, approvers (postgres)',
};

/**
 * The spec as far as it can be read when its shape is wrong, so that references, duplicates and
 * dates are still checked and every problem is reported in one run. Values of the wrong kind
 * become empty; `validateReferences` skips what is not a string.
 */
function salvage(raw: Record<string, unknown>): Spec {
  const obj = (v: unknown): Record<string, unknown> => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
  const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
  const each = <T>(v: unknown, f: (x: Record<string, unknown>) => T) => Object.fromEntries(Object.entries(obj(v)).map(([k, x]) => [k, f(obj(x))]));
  return {
    version: 1,
    settings: obj(raw.settings),
    backends: each(raw.backends, (b) => b),
    datasets: each(raw.datasets, (d) => d),
    groups: each(raw.groups, (g) => ({ ...g, grants: arr(g.grants).map(obj) })),
    principals: each(raw.principals, (p) => ({ ...p, groups: arr(p.groups), grants: arr(p.grants).map(obj) })),
    invariants: each(raw.invariants, (i) => ({
      ...i,
      datasets: i.datasets === undefined ? undefined : arr(i.datasets),
      onlyMembersOf: i.onlyMembersOf === undefined ? undefined : arr(i.onlyMembersOf),
      onlyPrincipals: i.onlyPrincipals === undefined ? undefined : arr(i.onlyPrincipals),
    })),
    approvers: arr(raw.approvers).map(obj),
    // Absent stays absent: whether a spec has SCIM people changes what its references may name.
    ...(raw.scim === undefined ? {} : { scim: { groups: obj(obj(raw.scim).groups) } }),
  } as unknown as Spec;
}

function yamlProblem(e: { code: string; pos: [number, number]; message: string }, text: string, lines: LineCounter, file: string): SpecProblem {
  const pos = lines.linePos(e.pos[0]);
  let message = e.message.split('\n')[0]!;
  if (e.code === 'DUPLICATE_KEY') {
    const key = /^[^:\n]*/.exec(text.slice(e.pos[0]))![0].trim();
    message = `duplicate key ${JSON.stringify(key)}: each key may appear only once in a mapping (the later one would silently win)`;
  } else if (e.code === 'MULTIPLE_DOCS') {
    message = 'invalid YAML: the spec must be a single document; remove the second "---" and what follows, or merge it into the first';
  } else {
    message = `invalid YAML: ${message}`;
  }
  return { file, line: pos.line, column: pos.col, path: '', message };
}

/** The path of `node` from the ancestors `visit` passes to a visitor. */
function pathOf(ancestors: readonly unknown[], node: unknown): PathKey[] {
  const chain = [...ancestors, node];
  const out: PathKey[] = [];
  for (let i = 1; i < chain.length; i++) {
    const parent = chain[i - 1];
    const child = chain[i];
    if (isPair(child)) out.push(isScalar(child.key) ? String(child.key.value) : '?');
    else if (isSeq(parent)) out.push(parent.items.indexOf(child));
  }
  return out;
}

type YamlError = { code: string; pos: [number, number]; message: string };

interface Scan {
  /** Every scalar key that repeats within its mapping, at the repeated occurrence. */
  duplicates: YamlError[];
  /**
   * Keys named `__proto__`. zod skips such a key when it parses a record (on a plain object it
   * would set the prototype), so a principal (or dataset, group, backend, SCIM mapping) of that
   * name would vanish without a word.
   */
  prototypeKeys: { key: Node; path: PathKey[] }[];
  /** Every alias with the anchored value it names: as YAML reads it, the last anchor of that name above it. */
  aliases: { alias: Alias; target: Node | undefined; path: PathKey[] }[];
}

/**
 * One pass over the parsed document, for what must be known before it becomes data. yaml's own
 * uniqueKeys check compares every pair of keys in a mapping (quadratic: seconds for 10,000
 * principals), and each pass costs tens of milliseconds at that size.
 */
function scan(doc: Document): Scan {
  const out: Scan = { duplicates: [], prototypeKeys: [], aliases: [] };
  const anchors = new Map<string, Node>();
  visit(doc, {
    Pair(_, pair, ancestors) {
      if (isScalar(pair.key) && pair.key.value === '__proto__') out.prototypeKeys.push({ key: pair.key, path: pathOf(ancestors, pair) });
    },
    Node(_, node, ancestors) {
      if (isAlias(node)) {
        out.aliases.push({ alias: node, target: anchors.get(node.source), path: pathOf(ancestors, node) });
        return;
      }
      if (node.anchor) anchors.set(node.anchor, node);
      if (!isMap(node)) return;
      const seen = new Set<string>();
      for (const pair of node.items) {
        if (!isScalar(pair.key)) continue;
        const k = String(pair.key.value);
        const range = pair.key.range ?? [0, 0];
        if (seen.has(k)) out.duplicates.push({ code: 'DUPLICATE_KEY', pos: [range[0], range[1]], message: 'Map keys must be unique' });
        seen.add(k);
      }
    },
  });
  return out;
}

type Locate = (node: Node | null | undefined, path: PathKey[], message: string) => SpecProblem;

/**
 * Aliases expand to full copies of what their anchor names, and aliases inside anchors multiply:
 * a few lines can stand for billions of values. This bounds the spec as expanded, well above any
 * real one (10,000 principals sharing a list of grants through one alias is a few hundred thousand).
 */
export const MAX_EXPANDED_VALUES = 1_000_000;

/**
 * Aliases that name no anchor, that sit inside the value they name (a value containing itself),
 * or that together expand the spec past `MAX_EXPANDED_VALUES`. Checked on the parsed document,
 * before it is turned into data, so each is reported at its own line and column.
 */
function aliasProblems(doc: Document, aliases: Scan['aliases'], at: Locate, anchorLine: (node: Node) => number): SpecProblem[] {
  if (aliases.length === 0) return [];
  const targets = new Map(aliases.map((a) => [a.alias, a.target]));
  const problems: SpecProblem[] = [];
  for (const a of aliases) {
    if (!a.target) problems.push(at(a.alias, a.path, `alias *${a.alias.source} names no anchor; define &${a.alias.source} above its first use`));
  }

  const size = new Map<Node, number>();
  const open = new Set<Node>();
  const cyclic = new Set<Alias>();
  const expanded = (node: unknown): number => {
    if (isAlias(node)) {
      const target = targets.get(node);
      if (!target) return 1;
      if (open.has(target)) {
        cyclic.add(node);
        return 1;
      }
      return expanded(target);
    }
    if (!isMap(node) && !isSeq(node)) return 1;
    const known = size.get(node);
    if (known !== undefined) return known;
    open.add(node);
    let n = 1;
    for (const item of node.items) n += isPair(item) ? expanded(item.key) + expanded(item.value) : expanded(item);
    open.delete(node);
    size.set(node, n);
    return n;
  };
  const total = expanded(doc.contents);
  for (const a of aliases) {
    if (!cyclic.has(a.alias)) continue;
    problems.push(
      at(
        a.alias,
        a.path,
        `alias *${a.alias.source} is inside the value &${a.alias.source} names (line ${anchorLine(a.target!)}), so that value would contain itself without end; write it out instead`,
      ),
    );
  }
  if (cyclic.size === 0 && total > MAX_EXPANDED_VALUES) {
    // Point at the alias that copies the most: the top of the pyramid.
    let largest = aliases[0]!;
    for (const a of aliases) if (expanded(a.target) > expanded(largest.target)) largest = a;
    problems.push(
      at(
        largest.alias,
        largest.path,
        `YAML aliases expand the spec to ${total} values, more than the ${MAX_EXPANDED_VALUES} allowed (each *alias is a full copy of what its anchor names, and aliases inside anchors multiply); this *${largest.alias.source} alone is ${expanded(largest.target)} values: write the values out, or alias less`,
      ),
    );
  }
  return problems;
}

function describeKind(v: unknown): string {
  if (v === null || v === undefined) return 'empty';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return typeof v === 'string' ? 'text' : `a ${typeof v}`;
}

const parseWithPositions = (text: string) => {
  const lines = new LineCounter();
  return { doc: parseDocument(text, { lineCounter: lines, uniqueKeys: false, prettyErrors: false }), lines };
};

/** Parse, interpolate and validate a spec. Throws SpecError listing every problem found. */
export function parseSpec(text: string, opts: LoadOptions): LoadedSpec {
  // A spec in plain YAML is read without the position of every node; positions are parsed for
  // only when a notice needs one. A spec with any problem is read again the full way below, which
  // finds and places every problem exactly as for any other spec.
  const simple = readSimpleYaml(text);
  if (simple) {
    const src = new SourceMap(() => {
      const { doc, lines } = parseWithPositions(text);
      return { root: doc.contents, lines };
    }, opts.file);
    const loaded = checkValues(simple, src, opts, []);
    if (loaded) return loaded;
  }

  const { doc, lines } = parseWithPositions(text);
  const scanned = scan(doc);
  const errors = [...doc.errors, ...scanned.duplicates].sort((a, b) => a.pos[0] - b.pos[0]);
  const src = new SourceMap(() => ({ root: doc.contents, lines }), opts.file);
  const problems: SpecProblem[] = [];
  // One broken token makes the parser report every token after it: show the syntax errors of
  // the first broken line only; duplicate keys are independent and all shown.
  const syntax = errors.filter((e) => e.code !== 'DUPLICATE_KEY');
  const firstLine = syntax.length ? lines.linePos(syntax[0]!.pos[0]).line : 0;
  const shown = errors.filter((e) => e.code === 'DUPLICATE_KEY' || lines.linePos(e.pos[0]).line === firstLine).slice(0, 3);
  for (const e of shown) problems.push(yamlProblem(e, text, lines, opts.file));
  const hidden = syntax.length - shown.filter((e) => e.code !== 'DUPLICATE_KEY').length;
  if (hidden > 0) {
    problems.push({
      file: opts.file,
      line: firstLine,
      column: 1,
      path: '',
      message: `(${hidden} further YAML error${hidden === 1 ? '' : 's'} after this line, most likely caused by it; fix it and run again)`,
    });
  }
  // A duplicate key leaves a readable document: keep checking, so every problem shows at once.
  if (errors.some((e) => e.code !== 'DUPLICATE_KEY')) throw new SpecError(problems);

  const at: Locate = (node, path, message) => {
    const pos = lines.linePos(node?.range?.[0] ?? 0);
    return { file: opts.file, line: pos.line, column: pos.col, path: formatPath(path), message };
  };
  for (const k of scanned.prototypeKeys) {
    problems.push(at(k.key, k.path, 'the key "__proto__" is not allowed: it cannot be held as a name, and the entry would silently vanish; rename it'));
  }
  // The anchor is written just before the value it names (for a block mapping, a line above it).
  const anchorLine = (node: Node) => {
    const start = node.range?.[0] ?? 0;
    const found = node.anchor ? text.lastIndexOf(`&${node.anchor}`, start) : -1;
    return lines.linePos(found >= 0 ? found : start).line;
  };
  const aliases = aliasProblems(doc, scanned.aliases, at, anchorLine);
  if (aliases.length) throw new SpecError(sortProblems([...problems, ...aliases]));
  // The aliases are bounded above (yaml's own guard would also refuse a legitimate anchor used
  // more than 100 times, with no position).
  const raw = doc.toJS({ maxAliasCount: -1 }) as unknown;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push(
      src.problem(
        [],
        `the spec must be a mapping with the keys version, backends, datasets, groups and principals, but it is ${raw === null || raw === undefined ? 'an empty document' : describeKind(raw)}`,
      ),
    );
    throw new SpecError(problems);
  }
  const loaded = checkValues(raw as Record<string, unknown>, src, opts, problems);
  if (!loaded) throw new SpecError(sortProblems(problems));
  return loaded;
}

/**
 * Interpolates and validates the values of a spec; adds every problem found to `problems`, and
 * returns the spec only when there is none (there may be some already).
 */
function checkValues(raw: Record<string, unknown>, src: SourceMap, opts: LoadOptions, problems: SpecProblem[]): LoadedSpec | undefined {
  const missing = new Set<string>();
  const interpolated = interpolate(raw, [], opts.env, problems, src, missing) as Record<string, unknown>;
  const parsed = specSchema.safeParse(interpolated);
  if (!parsed.success) {
    problems.push(...zodProblems(parsed.error.issues, interpolated, raw, src).filter((p) => !missing.has(p.path)));
  }
  const notices: Notice[] = [];
  // A value whose ${VAR} is missing is a placeholder: only the missing variable is its problem.
  problems.push(...validateReferences(parsed.success ? parsed.data : salvage(interpolated), src, opts.now, notices).filter((p) => !missing.has(p.path)));
  if (problems.length || !parsed.success) return undefined;
  const templates: LoadedSpec['templates'] = {};
  const rawBackends = (raw.backends ?? {}) as Record<string, Record<string, unknown>>;
  for (const [name, b] of Object.entries(rawBackends)) {
    for (const [k, v] of Object.entries(b ?? {})) {
      if (typeof v === 'string' && hasVariable(v)) (templates[name] ??= {})[k] = v;
      // A nested setting (assumeRole.externalId) is named by its dotted path.
      if (v && typeof v === 'object' && !Array.isArray(v)) {
        for (const [k2, v2] of Object.entries(v)) if (typeof v2 === 'string' && hasVariable(v2)) (templates[name] ??= {})[`${k}.${k2}`] = v2;
      }
    }
  }
  return { spec: parsed.data, notices, templates, source: src };
}

/** In source order, each problem once. */
function sortProblems(problems: SpecProblem[]): SpecProblem[] {
  const seen = new Set<string>();
  return problems
    .filter((p) => {
      const k = `${p.line}:${p.column}:${p.path}:${p.message}`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    })
    .sort((a, b) => a.line - b.line || a.column - b.column);
}
