// Parse and validate a spec from text. Pure: the caller passes the text, the environment and the
// clock; nothing here reads a file or the process environment.
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
import type { z } from 'zod';
import { SpecError, type SpecProblem } from '../core/errors.js';
import type { Notice } from '../core/types.js';
import { specSchema, type Spec } from './schema.js';
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
        const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
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

/** Replace `${VAR}` in every string scalar; missing variables are problems, not empty strings. */
function interpolate(
  value: unknown,
  path: PathKey[],
  env: LoadOptions['env'],
  problems: SpecProblem[],
  src: SourceMap,
): unknown {
  if (typeof value === 'string') {
    return value.replace(VAR_RE, (_m, v: string) => {
      const found = env[v];
      if (found === undefined) {
        problems.push(src.problem(path, `environment variable ${v} is not set`));
        return '';
      }
      return found;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, [...path, i], env, problems, src));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolate(v, [...path, k], env, problems, src)]),
    );
  }
  return value;
}

function describe(value: unknown): string {
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

function zodProblems(error: z.ZodError, raw: unknown, src: SourceMap): SpecProblem[] {
  const out: SpecProblem[] = [];
  for (const issue of error.issues) {
    const path = issue.path.filter((p): p is PathKey => typeof p !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) {
        const allowed = allowedKeys(path);
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
    if (value === undefined) {
      out.push(src.problem(path.slice(0, -1), `${formatPath(path) || 'spec'} is required`, true));
      continue;
    }
    const shown = issue.message.includes(JSON.stringify(value)) ? '' : ` (got ${describe(value)})`;
    out.push(src.problem(path, `${issue.message}${shown}`));
  }
  return out;
}

const KEYS: Record<string, string> = {
  '': 'version, settings, backends, datasets, groups, principals, scim',
  settings: 'rotate, rotationGrace',
  'backends.*': 'type, region, iamPath, endpoint (aws); type, url (postgres)',
  'datasets.*': 'backend, bucket, prefix, description (aws); backend, database, schema, tables, description (postgres)',
  'groups.*': 'description, grants',
  'groups.*.grants.#': 'dataset, access, expires',
  'principals.*': 'type, email, description, groups, grants, rotate',
  'principals.*.grants.#': 'dataset, access, expires',
  scim: 'groups',
};

function allowedKeys(path: readonly PathKey[]): string | undefined {
  const shape = path.map((p, i) => (typeof p === 'number' ? '#' : i === 1 ? '*' : p)).join('.');
  return KEYS[shape];
}

/** Parse, interpolate and validate a spec. Throws SpecError listing every problem found. */
export function parseSpec(text: string, opts: LoadOptions): LoadedSpec {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const src = new SourceMap(doc.contents as Node | null, lines, opts.file);
  const problems: SpecProblem[] = [];
  for (const e of doc.errors) {
    const pos = lines.linePos(e.pos[0]);
    const msg = e.code === 'DUPLICATE_KEY' ? 'duplicate key: each name may appear only once' : e.message.split('\n')[0]!;
    problems.push({ file: opts.file, line: pos.line, column: pos.col, path: '', message: msg });
  }
  if (problems.length) throw new SpecError(problems);

  const raw = doc.toJS() as unknown;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new SpecError([src.problem([], 'the spec must be a mapping with version, backends, datasets, groups and principals')]);
  }
  const interpolated = interpolate(raw, [], opts.env, problems, src);
  const parsed = specSchema.safeParse(interpolated);
  if (!parsed.success) {
    problems.push(...zodProblems(parsed.error, interpolated, src));
    throw new SpecError(problems);
  }
  const notices: Notice[] = [];
  problems.push(...validateReferences(parsed.data, src, opts.now, notices));
  if (problems.length) throw new SpecError(problems);
  return { spec: parsed.data, notices };
}
