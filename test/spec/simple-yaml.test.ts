// The simple-YAML reader must read exactly what `yaml` reads, or leave the text to it: a spec read
// differently by the fast path than by the full parser would be reviewed as one thing and applied
// as another. Checked on hand-picked texts and on many generated ones, against `yaml` itself.
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { describe, expect, test } from 'vitest';
import { readSimpleYaml } from '../../src/spec/simple-yaml.js';

const root = resolve(import.meta.dirname, '../..');

/** What `yaml` reads, as the full path of `parseSpec` does; undefined when it finds any problem. */
function yamlReads(text: string): unknown {
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length || doc.warnings.length) return undefined;
  return doc.toJS({ maxAliasCount: -1 }) as unknown;
}

/** The reader either leaves `text` to yaml, or reads what yaml reads; returns which. */
function agree(text: string): 'read' | 'left' {
  const simple = readSimpleYaml(text);
  if (simple === undefined) return 'left';
  const full = yamlReads(text);
  expect(full, `yaml finds a problem in a text read as simple:\n${text}`).toBeDefined();
  expect(simple, `read differently:\n${text}`).toStrictEqual(full);
  return 'read';
}

describe('reads what yaml reads', () => {
  test.each([
    ['a spec', 'version: 1\nbackends:\n  aws: { type: aws }\nprincipals:\n  alice:\n    type: person\n    groups: [a, b]\n'],
    ['comments and blank lines anywhere', '# top\n\na: 1 # one\n  # indented comment\nb:\n\n  # before\n  c: x#y\n'],
    [
      'scalars of the core schema',
      'a: 1\nb: +7\nc: 007\nd: ~\ne: null\nf: NULL\ng: true\nh: False\nh2: TRUE\nh3: True\nh4: false\nh5: FALSE\ni: yes\nj: 2027-06-30\nk: 0x\nl: .x\nm: 1.2.3\n',
    ],
    ['quoted scalars', `a: "x: y # z"\nb: 'it''s'\nc: ""\nd: '#'\n"quoted key": 1\n'single key' : 2\n`],
    ['urls and colons', 'endpoint: http://127.0.0.1:5000\nf: { endpoint: http://h:1/p, b: a:b }\nc: [a:b]\n'],
    ['nested flow collections', 'a: { b: [1, { c: d }], e: {}, f: [] }\nb: [[a], [b, c]]\n'],
    ['sequences, indented and not', 'a:\n  - x\n  - y\nb:\n- x\n-   y\nc: 1\n'],
    ['mappings in sequences', 'a:\n  - k: 1\n    l: 2\n  -   m: 3\n      n:\n        o: p\n  - q:\n    - r\n    s: t\n'],
    ['empty values', 'a:\nb: # nothing\nc:\n  -\n  - x\n  - # nothing\n'],
    ['trailing spaces', 'a: x   \nb   : y\n'],
    ['a plain scalar with flow characters in block context', 'a: x[1]{2},3\n'],
  ])('%s', (_name, text) => {
    expect(agree(text)).toBe('read');
  });
});

describe('leaves to yaml what it does not know, or what is wrong', () => {
  test.each([
    ['anchors and aliases', 'a: &x 1\nb: *x\n'],
    ['tags', 'a: !!str 1\n'],
    ['block scalars', 'a: |\n  text\n'],
    ['multi-line plain scalars', 'a: one\n  two\n'],
    ['multi-line flow collections', 'a: [1,\n  2]\n'],
    ['duplicate keys', 'a: 1\na: 2\n'],
    ['duplicate keys in flow', 'a: { b: 1, b: 2 }\n'],
    ['__proto__', '__proto__: 1\n'],
    ['merge keys', 'a: { x: 1 }\nb:\n  <<: { y: 2 }\n'],
    ['floats and other numbers', 'a: 1.5\n', 'a: 1e3\n', 'a: 0x1f\n', 'a: 0o17\n', 'a: .inf\n', 'a: .nan\n'],
    ['keys that are not text', '1: a\n', 'true: a\n', 'null: a\n'],
    ['tabs', 'a:\t1\n'],
    ['carriage returns', 'a: 1\r\nb: 2\r\n'],
    ['document markers', '---\na: 1\n', 'a: 1\n...\n', '%YAML 1.2\n---\na: 1\n'],
    ['a document that is not a mapping', '- a\n', 'a\n', '', '# only a comment\n'],
    ['bad indentation', 'a:\n    b: 1\n  c: 2\n', 'a:\n  - x\n - y\n', ' a: 1\n'],
    ['a mapping where none may be', 'a: b: c\n', '- a: b: c\n'],
    ['implicit pairs in flow sequences', 'a: [b: c]\n'],
    ['flow mappings without a space after the colon', 'a: {b:c}\n', 'a: {"b":c}\n'],
    ['trailing and empty flow entries', 'a: [b, ]\n', 'a: [b,, c]\n', 'a: { b: c, }\n'],
    ['a comment inside a flow collection', 'a: [b #c\n  ]\n'],
    ['escapes in double quotes', 'a: "\\u0041"\n'],
    ['content after a flow collection', 'a: [b] c\n'],
    ['scalars starting with an indicator', 'a: -x\n', 'a: ?x\n', 'a: @x\n', 'a: `x\n', 'a: %x\n'],
    ['nested compact sequences', 'a:\n  - - x\n'],
    ['a key longer than YAML allows', `${'k'.repeat(1025)}: 1\n`],
    [
      'nesting deeper than any spec',
      `a: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`,
      Array.from({ length: 100 }, (_, i) => `${' '.repeat(i)}k:`).join('\n'),
    ],
  ])('%s', (_name, ...texts) => {
    for (const text of texts) expect(readSimpleYaml(text), text).toBeUndefined();
  });
});

test('every spec in the repository is read as yaml reads it, without falling back', () => {
  const specs = [
    ...readdirSync(join(root, 'examples'))
      .filter((f) => f.endsWith('.yaml') && f !== 'Pulumi.yaml')
      .map((f) => join(root, 'examples', f)),
    join(root, 'test/fixtures/draft.yaml'),
  ];
  for (const f of specs) expect(agree(readFileSync(f, 'utf8')), f).toBe('read');
});

/** A small deterministic generator (mulberry32), so that a failure can be reproduced. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Scalars and flow collections this reader takes, then ones it should leave to yaml or get wrong. */
const VALUES = [
  'a',
  'alice',
  'ai-model-data',
  'training/',
  'x y',
  'a#b',
  'http://127.0.0.1:5000',
  '2027-06-30',
  '2027-06-30T12:00:00Z',
  '1',
  '+1',
  '007',
  '~',
  'null',
  'Null',
  'nULL',
  'true',
  'False',
  'yes',
  '"q"',
  "'q'",
  "'it''s'",
  '"a: b"',
  "'a # b'",
  '"#"',
  'a:b',
  'a :b',
  'x[1]',
  '[a, b]',
  '[a,b]',
  '[ ]',
  '[]',
  '{}',
  '{ }',
  '{a: 1}',
  '{a: 1, b: [x, y]}',
  "{'a' : 1}",
  '[a, {b: c}]',
  'a, b',
  'a{b}',
  '[a] # c',
  'a  b',
  'é',
  'x\u00a0y',
  '${VAR}',
  '{a: [b, c], d: {e: f}}',
  '[{a: 1, b: 2}, {c: 3}]',
  '[a, b, c, d]',
  '[~, null, true]',
  '{a: +1}',
  'True',
  'TRUE',
  'false',
  'FALSE',
  'tRUE',
  '0',
  '+0',
  '12345678901234567890',
  '{ a: x y , b: "z" }',
  '[ "a", \'b\' ]',
  '{a: http://h:1/p}',
  '[a:b]',
  '{"k": v}',
  '.x',
  '1.2.3',
  '0x',
  '2027-06',
  '1_000',
];
const TRICKY_VALUES = [
  '-1',
  'a #b',
  '1.5',
  '.5',
  '1.',
  '1e3',
  '0x1f',
  '0o17',
  '.inf',
  '-.Inf',
  '.NaN',
  "'a''",
  '"a \\" b"',
  'a: b',
  'a:',
  '-x',
  '- x',
  '?x',
  ':x',
  '&x y',
  '*x',
  '!t x',
  '|',
  '>',
  '@x',
  '`x',
  '%x',
  '{a:1}',
  '[a: b]',
  '[a, ]',
  '[a,, b]',
  '{a: 1, a: 2}',
  '{"a":1}',
  '{a: b} x',
  '[a]#c',
  '__proto__',
  '{__proto__: 1}',
  '"x"y',
  '{a: b, c}',
  '{a: -1}',
  '{a: .5}',
  '[1, 2.0, 3]',
  '"unclosed',
  "'unclosed",
  '[a',
  '{a: b',
  'a: b: c',
  '"\\t"',
];
const KEYS = ['a', 'b', 'c', 'alice', 'a b', 'a-b', 'a.b', '"q"', "'q'", '"a: b"', 'a#b', '"q"  ', 'a   ', '""', "'it''s'", 'x:y', 'é'];
const TRICKY_KEYS = ['1', '01', 'true', 'null', '~', '__proto__', '"__proto__"', '<<', 'a #b', '-a', '?a', '[a]', '{a}', 'x: y', '1.5'];

function generate(next: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const value = () => pick(next() < 0.04 ? TRICKY_VALUES : VALUES);
  const lines: string[] = [];
  const comment = () => {
    if (next() < 0.1) lines.push(`${' '.repeat(Math.floor(next() * 6))}# note`);
    if (next() < 0.05) lines.push('');
  };
  const tail = () => (next() < 0.1 ? ' # note' : next() < 0.05 ? '   ' : '');
  // A nested value's indentation: usually deeper by 2, sometimes by 1, 4 or not at all.
  const deeper = (indent: number) => indent + pick([2, 2, 2, 1, 4, 0, 3]);
  const map = (indent: number, depth: number, first?: string) => {
    const n = 1 + Math.floor(next() * 4);
    const used: string[] = [];
    for (let i = 0; i < n; i++) {
      // Now and then a repeated key, or one out of line.
      const key = next() < 0.04 && used.length ? pick(used) : pick(next() < 0.03 ? TRICKY_KEYS : KEYS);
      used.push(key);
      const pad = i === 0 && first !== undefined ? first : ' '.repeat(next() < 0.03 ? Math.max(0, indent + pick([-1, 1])) : indent);
      const r = next();
      if (r < 0.5 || depth > 3) {
        lines.push(`${pad}${key}: ${value()}${tail()}`);
      } else if (r < 0.6) {
        lines.push(`${pad}${key}:${tail()}`);
      } else if (r < 0.8) {
        lines.push(`${pad}${key}:${tail()}`);
        comment();
        map(deeper(indent), depth + 1);
      } else {
        lines.push(`${pad}${key}:${tail()}`);
        comment();
        seq(next() < 0.3 ? indent : deeper(indent), depth + 1);
      }
      comment();
    }
  };
  const seq = (indent: number, depth: number) => {
    const n = 1 + Math.floor(next() * 3);
    for (let i = 0; i < n; i++) {
      const dash = `${' '.repeat(indent)}-${pick([' ', ' ', '   '])}`;
      const r = next();
      if (r < 0.4 || depth > 3) {
        lines.push(`${dash}${value()}${tail()}`);
      } else if (r < 0.75) {
        map(dash.length, depth + 1, dash);
      } else if (r < 0.9) {
        lines.push(`${' '.repeat(indent)}-${tail()}`);
        if (next() < 0.8) map(deeper(indent), depth + 1);
      } else {
        lines.push(`${dash}- ${value()}`);
      }
      comment();
    }
  };
  comment();
  if (next() < 0.02) lines.push(pick(['---', '...', '%YAML 1.2']));
  map(0, 0);
  let text = lines.join('\n') + (next() < 0.8 ? '\n' : '');
  if (next() < 0.02) text = text.replace(' ', '\t');
  if (next() < 0.02) text = text.replaceAll('\n', '\r\n');
  return text;
}

test('generated texts: read as yaml reads them, or left to yaml', () => {
  const next = random(20261130);
  const seen = { read: 0, left: 0 };
  for (let i = 0; i < 10_000; i++) seen[agree(generate(next))]++;
  // Both outcomes are common, so that both are really compared.
  expect(seen.read).toBeGreaterThan(2000);
  expect(seen.left).toBeGreaterThan(2000);
});
