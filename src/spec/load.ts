// Parse and validate a spec from text. Pure: the caller passes the text, the environment and the
// clock; nothing here reads a file or the process environment.
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { SpecError, type SpecProblem } from '../core/errors.js';
import type { Notice } from '../core/types.js';
import { backendSchema, datasetSchema, groupSchema, principalSchema, specSchema, type Spec } from './schema.js';
import { validateReferences } from './validate.js';

export interface LoadOptions {
  file: string;
  env: Record<string, string | undefined>;
  now: Date;
}

export interface LoadedSpec {
  spec: Spec;
  notices: Notice[];
}

type PathKey = string | number;

/** Locates a path of the parsed document in the source text. */
export class SourceMap {
  constructor(
    private readonly root: Node | null,
    private readonly lines: LineCounter,
    readonly file: string,
  ) {}

  /** Position of the value at `path`, or of its key when `key` is set, or the nearest ancestor. */
  position(path: readonly PathKey[], key = false): { line: number; column: number } {
    let node: unknown = this.root;
    let offset = 0;
    for (let i = 0; i < path.length; i++) {
      const seg = path[i];
      if (isMap(node)) {
        // The last of duplicate keys is the one whose value is used, so point at that one.
        let pair: (typeof node.items)[number] | undefined;
        for (const p of node.items) if (isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg)) pair = p;
        if (!pair) break;
        const last = i === path.length - 1;
        const target = last && key ? pair.key : (pair.value ?? pair.key);
        offset = (target as Node | null)?.range?.[0] ?? offset;
        node = target;
        if (last && key) break;
      } else if (isSeq(node) && typeof seg === 'number' && node.items[seg]) {
        node = node.items[seg];
        offset = (node as Node).range?.[0] ?? offset;
      } else {
        break;
      }
    }
    if (path.length === 0 && this.root?.range) offset = this.root.range[0];
    const pos = this.lines.linePos(offset);
    return { line: pos.line, column: pos.col };
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
 * complaint about the (meaningless) placeholder is not reported on top.
 */
function interpolate(
  value: unknown,
  path: PathKey[],
  env: LoadOptions['env'],
  problems: SpecProblem[],
  src: SourceMap,
  missing: Set<string>,
): unknown {
  if (typeof value === 'string') {
    return value.replace(VAR_RE, (m, v: string) => {
      const found = env[v];
      if (found === undefined) {
        problems.push(src.problem(path, `environment variable ${v} is not set; set it, or write the value here if it is not a secret`));
        missing.add(formatPath(path));
        return m;
      }
      return found;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, [...path, i], env, problems, src, missing));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolate(v, [...path, k], env, problems, src, missing)]),
    );
  }
  return value;
}

function describe(value: unknown): string {
  if (typeof value === 'string' && value.length > 60) return JSON.stringify(`${value.slice(0, 50)}…`);
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
};

/**
 * `raw` is the interpolated document that was validated; `original` the text before `${VAR}`
 * substitution. Messages show the original, so a value read from the environment (a URL with a
 * password, say) is never echoed into an error.
 */
function zodProblems(
  issues: readonly z.core.$ZodIssue[],
  raw: unknown,
  original: unknown,
  src: SourceMap,
  base: readonly PathKey[] = [],
): SpecProblem[] {
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
    if (issue.code === 'invalid_union' && issue.errors.length === 2 && String(path[0]) === 'datasets') {
      // Pick the branch the user meant (a bucket or a database) and report its own problems.
      const value = valueAt(raw, path);
      const branch = value && typeof value === 'object' ? ('bucket' in value ? 0 : 'database' in value ? 1 : -1) : -1;
      if (branch >= 0) {
        out.push(...zodProblems(issue.errors[branch]!, raw, original, src, path));
        continue;
      }
    }
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) {
        const allowed = allowedKeys(path, valueAt(raw, path));
        out.push(
          src.problem(
            [...path, k],
            `unknown key ${JSON.stringify(k)}${allowed ? `; allowed: ${allowed}` : ''}`,
            true,
          ),
        );
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
      out.push(src.problem(path, `must be ${expected}, not ${describeKind(value)}${value !== null && typeof value === 'object' ? '' : ` (got ${describe(shownValue)})`}`));
      continue;
    }
    const substituted = value !== shownValue;
    const shown =
      (!substituted && issue.message.includes(JSON.stringify(value))) || (value !== null && typeof value === 'object')
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
  backends: 'a mapping of backend names to { type: aws } or { type: postgres, url: ... }',
  'backends.type': 'aws or postgres',
  'principals.type': 'person or service',
  access: 'read, write or admin',
  dataset: 'the name of a dataset under datasets',
  backend: 'the name of a backend under backends',
  url: 'a postgres:// URL, or ${VAR} to read it from the environment',
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
  '': 'version, settings, backends, datasets, groups, principals, scim',
  settings: 'rotate, rotationGrace',
  'backends.*': 'type, region, iamPath, endpoint (aws); type, url, scope (postgres)',
  'datasets.*': 'backend, bucket, prefix, description (aws); backend, database, schema, tables, description (postgres)',
  'groups.*': 'description, grants',
  'groups.*.grants.#': 'dataset, access, expires',
  'principals.*': 'type, email, description, groups, grants, rotate',
  'principals.*.grants.#': 'dataset, access, expires',
  scim: 'groups',
};

/** The keys allowed at `path`; for a backend or dataset, those of the kind it evidently is. */
function allowedKeys(path: readonly PathKey[], value: unknown): string | undefined {
  const shape = path.map((p, i) => (typeof p === 'number' ? '#' : i === 1 ? '*' : p)).join('.');
  const v = value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {};
  if (shape === 'backends.*' && (v.type === 'aws' || v.type === 'postgres')) return KINDED_KEYS[`backend.${v.type}`];
  if (shape === 'datasets.*' && ('bucket' in v || 'database' in v)) return KINDED_KEYS['bucket' in v ? 'dataset.aws' : 'dataset.postgres'];
  return KEYS[shape];
}

const KINDED_KEYS: Record<string, string> = {
  'backend.aws': 'type, region, iamPath, endpoint',
  'backend.postgres': 'type, url, scope',
  'dataset.aws': 'backend, bucket, prefix, description',
  'dataset.postgres': 'backend, database, schema, tables, description',
};

/**
 * The spec as far as it can be read when its shape is wrong, so that references, duplicates and
 * dates are still checked and every problem is reported in one run. Values of the wrong kind
 * become empty; `validateReferences` skips what is not a string.
 */
function salvage(raw: Record<string, unknown>): Spec {
  const obj = (v: unknown): Record<string, unknown> =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
  const each = <T>(v: unknown, f: (x: Record<string, unknown>) => T) =>
    Object.fromEntries(Object.entries(obj(v)).map(([k, x]) => [k, f(obj(x))]));
  return {
    version: 1,
    backends: each(raw.backends, (b) => b),
    datasets: each(raw.datasets, (d) => d),
    groups: each(raw.groups, (g) => ({ ...g, grants: arr(g.grants).map(obj) })),
    principals: each(raw.principals, (p) => ({ ...p, groups: arr(p.groups), grants: arr(p.grants).map(obj) })),
    scim: { groups: obj(obj(raw.scim).groups) },
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

/** Every scalar key that repeats within its mapping, at the repeated occurrence. */
function duplicateKeys(doc: Document): { code: string; pos: [number, number]; message: string }[] {
  const out: { code: string; pos: [number, number]; message: string }[] = [];
  visit(doc, {
    Map(_, map) {
      const seen = new Set<string>();
      for (const pair of map.items) {
        if (!isScalar(pair.key)) continue;
        const k = String(pair.key.value);
        const range = pair.key.range ?? [0, 0];
        if (seen.has(k)) out.push({ code: 'DUPLICATE_KEY', pos: [range[0], range[1]], message: 'Map keys must be unique' });
        seen.add(k);
      }
    },
  });
  return out;
}

function describeKind(v: unknown): string {
  if (v === null || v === undefined) return 'empty';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return typeof v === 'string' ? 'text' : `a ${typeof v}`;
}

/** Parse, interpolate and validate a spec. Throws SpecError listing every problem found. */
export function parseSpec(text: string, opts: LoadOptions): LoadedSpec {
  const lines = new LineCounter();
  // yaml's own uniqueKeys check compares every pair of keys in a mapping (quadratic: seconds for
  // 10,000 principals); duplicateKeys() finds the same duplicates in one pass.
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: false, prettyErrors: false });
  const errors = [...doc.errors, ...duplicateKeys(doc)].sort((a, b) => a.pos[0] - b.pos[0]);
  const src = new SourceMap(doc.contents as Node | null, lines, opts.file);
  const problems: SpecProblem[] = [];
  // One broken token makes the parser report every token after it: show the syntax errors of
  // the first broken line only; duplicate keys are independent and all shown.
  const syntax = errors.filter((e) => e.code !== 'DUPLICATE_KEY');
  const firstLine = syntax.length ? lines.linePos(syntax[0]!.pos[0]).line : 0;
  const shown = errors.filter((e) => e.code === 'DUPLICATE_KEY' || lines.linePos(e.pos[0]).line === firstLine).slice(0, 3);
  for (const e of shown) problems.push(yamlProblem(e, text, lines, opts.file));
  const hidden = syntax.length - shown.filter((e) => e.code !== 'DUPLICATE_KEY').length;
  if (hidden > 0) {
    problems.push({ file: opts.file, line: firstLine, column: 1, path: '', message: `(${hidden} further YAML error${hidden === 1 ? '' : 's'} after this line, most likely caused by it; fix it and run again)` });
  }
  // A duplicate key leaves a readable document: keep checking, so every problem shows at once.
  if (errors.some((e) => e.code !== 'DUPLICATE_KEY')) throw new SpecError(problems);

  const raw = doc.toJS() as unknown;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push(
      src.problem([], `the spec must be a mapping with the keys version, backends, datasets, groups and principals, but it is ${raw === null || raw === undefined ? 'an empty document' : describeKind(raw)}`),
    );
    throw new SpecError(problems);
  }
  const missing = new Set<string>();
  const interpolated = interpolate(raw, [], opts.env, problems, src, missing) as Record<string, unknown>;
  const parsed = specSchema.safeParse(interpolated);
  if (!parsed.success) {
    problems.push(...zodProblems(parsed.error.issues, interpolated, raw, src).filter((p) => !missing.has(p.path)));
  }
  const notices: Notice[] = [];
  problems.push(...validateReferences(parsed.success ? parsed.data : salvage(interpolated), src, opts.now, notices));
  if (problems.length || !parsed.success) throw new SpecError(sortProblems(problems));
  return { spec: parsed.data, notices };
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
