// The plain YAML specs are written in, read straight into values. `yaml` first builds a document
// of nodes, each with its source range, and turns that into values: for a spec of 10,000
// principals that is most of the time from file to plan, while the ranges are needed only to say
// where a problem is. This reader knows a strict subset — block mappings and sequences, flow
// collections and scalars that each fit on one line, comments — and returns undefined for
// anything else (anchors, tags, block scalars, multi-line scalars, directives, duplicate or
// `__proto__` keys, numbers other than integers, tabs, …): the caller then parses with `yaml`,
// which also places every problem. What it returns equals what `yaml` reads from the same text;
// test/spec/simple-yaml.test.ts checks the two against each other.

const SPACE = 0x20;
const HASH = 0x23;
const COLON = 0x3a;
const DASH = 0x2d;
const DQUOTE = 0x22;
const SQUOTE = 0x27;
const COMMA = 0x2c;

/**
 * Whether `text` holds a character this reader leaves to `yaml`: a tab or carriage return
 * (indentation and line ends with rules of their own), a character YAML does not allow, another
 * line separator, a byte-order mark, or a surrogate.
 */
function leftToYaml(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 ? c !== 0x0a : c >= 0x7f && (c <= 0x9f || c === 0x2028 || c === 0x2029 || c === 0xfeff || (c >= 0xd800 && c <= 0xdfff) || c >= 0xfffe)) {
      return true;
    }
  }
  return false;
}

/** A plain scalar may not start with one of these (YAML's indicators; `-` `?` `:` are kept out too). */
const INDICATOR = new Set([...'-?:,[]{}#&*!|>\'"%@`'].map((c) => c.charCodeAt(0)));
const FLOW_INDICATOR = new Set([...',[]{}'].map((c) => c.charCodeAt(0)));

// YAML 1.2 core schema: what a plain scalar resolves to.
const NULL_RE = /^(?:~|null|Null|NULL)$/;
const INT_RE = /^[-+]?[0-9]+$/;
/** Other numbers of the core schema (floats, infinities, NaN, hex, octal): left to `yaml`. */
const OTHER_NUMBER_RE = /^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)|0x[0-9a-fA-F]+|0o[0-7]+)$/;

/** Implicit keys are at most 1024 characters long in YAML. */
const MAX_KEY = 1024;
/** Collections nested deeper than any spec's are left to yaml, before the stack runs out. */
const MAX_DEPTH = 64;

/** Thrown where the text leaves the subset. */
const NOT_SIMPLE = new Error('not simple YAML');
const leave = (): never => {
  throw NOT_SIMPLE;
};

/** The values of `text` when it is a mapping written in the simple subset, otherwise undefined. */
export function readSimpleYaml(text: string): Record<string, unknown> | undefined {
  if (leftToYaml(text)) return undefined;
  try {
    return new Reader(text.split('\n')).document();
  } catch (e) {
    if (e === NOT_SIMPLE) return undefined;
    throw e;
  }
}

function skipSpaces(line: string, at: number): number {
  while (line.charCodeAt(at) === SPACE) at++;
  return at;
}

const isSeqEntry = (line: string, at: number) => line.charCodeAt(at) === DASH && (at + 1 === line.length || line.charCodeAt(at + 1) === SPACE);

function plainStart(line: string, at: number): void {
  const c = line.charCodeAt(at);
  if (Number.isNaN(c) || c === SPACE || INDICATOR.has(c)) leave();
}

function resolvePlain(s: string): unknown {
  const c = s.charCodeAt(0);
  if ((c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2e) {
    if (INT_RE.test(s)) return Number.parseInt(s, 10);
    if (OTHER_NUMBER_RE.test(s)) leave();
    return s;
  }
  if (NULL_RE.test(s)) return null;
  if (s === 'true' || s === 'True' || s === 'TRUE') return true;
  if (s === 'false' || s === 'False' || s === 'FALSE') return false;
  return s;
}

/** A key as the object key `yaml` would give it: only keys that resolve to text are simple. */
function asKey(s: string, plain: boolean): string {
  if (s.length > MAX_KEY || s === '__proto__' || s === '<<') leave();
  if (plain && resolvePlain(s) !== s) leave();
  return s;
}

/** A quoted scalar that closes on its line: its value and the index after the closing quote. */
function quoted(line: string, at: number): [string, number] {
  if (line.charCodeAt(at) === DQUOTE) {
    const end = line.indexOf('"', at + 1);
    if (end < 0) leave();
    const s = line.slice(at + 1, end);
    if (s.includes('\\')) leave();
    return [s, end + 1];
  }
  let end = at + 1;
  for (;;) {
    end = line.indexOf("'", end);
    if (end < 0) leave();
    if (line.charCodeAt(end + 1) !== SQUOTE) break;
    end += 2;
  }
  return [line.slice(at + 1, end).replaceAll("''", "'"), end + 1];
}

const isQuote = (c: number) => c === DQUOTE || c === SQUOTE;

/** A plain scalar in a flow collection: its text and the index where it ends. */
function flowPlain(line: string, at: number): [string, number] {
  plainStart(line, at);
  let end = at;
  for (; end < line.length; end++) {
    const c = line.charCodeAt(end);
    if (FLOW_INDICATOR.has(c)) break;
    if (c === COLON) {
      const n = line.charCodeAt(end + 1);
      if (Number.isNaN(n) || n === SPACE || FLOW_INDICATOR.has(n)) break;
    }
    if (c === HASH && line.charCodeAt(end - 1) === SPACE) break;
  }
  return [line.slice(at, end).trimEnd(), end];
}

/** A flow value on one line: its value and the index after it. */
function flowValue(line: string, at: number, depth: number): [unknown, number] {
  const c = line.charCodeAt(at);
  if ((c === 0x7b || c === 0x5b) && depth >= MAX_DEPTH) leave();
  if (c === 0x7b) return flowMap(line, at, depth + 1);
  if (c === 0x5b) return flowSeq(line, at, depth + 1);
  if (isQuote(c)) return quoted(line, at);
  const [s, end] = flowPlain(line, at);
  return [resolvePlain(s), end];
}

function flowSeq(line: string, at: number, depth: number): [unknown[], number] {
  const out: unknown[] = [];
  let p = skipSpaces(line, at + 1);
  if (line.charCodeAt(p) === 0x5d) return [out, p + 1];
  for (;;) {
    const [v, end] = flowValue(line, p, depth);
    out.push(v);
    p = skipSpaces(line, end);
    const c = line.charCodeAt(p);
    if (c === 0x5d) return [out, p + 1];
    if (c !== COMMA) leave();
    p = skipSpaces(line, p + 1);
    // A trailing comma, an empty entry or a comment: left to yaml.
    if (line.charCodeAt(p) === 0x5d || line.charCodeAt(p) === COMMA) leave();
  }
}

function flowMap(line: string, at: number, depth: number): [Record<string, unknown>, number] {
  const out: Record<string, unknown> = {};
  let p = skipSpaces(line, at + 1);
  if (line.charCodeAt(p) === 0x7d) return [out, p + 1];
  for (;;) {
    let key: string;
    let end: number;
    if (isQuote(line.charCodeAt(p))) {
      [key, end] = quoted(line, p);
      key = asKey(key, false);
    } else {
      [key, end] = flowPlain(line, p);
      key = asKey(key, true);
    }
    if (Object.hasOwn(out, key)) leave();
    if (line.charCodeAt(end) !== COLON || line.charCodeAt(end + 1) !== SPACE) leave();
    const [v, after] = flowValue(line, skipSpaces(line, end + 1), depth);
    out[key] = v;
    p = skipSpaces(line, after);
    const c = line.charCodeAt(p);
    if (c === 0x7d) return [out, p + 1];
    if (c !== COMMA) leave();
    p = skipSpaces(line, p + 1);
    if (line.charCodeAt(p) === 0x7d || line.charCodeAt(p) === COMMA) leave();
  }
}

class Reader {
  /** The current line. */
  private i = 0;
  /** How many collections the current one is nested in. */
  private depth = 0;

  constructor(private readonly lines: string[]) {}

  /** Moves to the next line with content (not blank, not only a comment); its indentation, or -1 at the end. */
  private next(): number {
    for (; this.i < this.lines.length; this.i++) {
      const line = this.lines[this.i]!;
      const c = skipSpaces(line, 0);
      if (c === line.length || line.charCodeAt(c) === HASH) continue;
      // Document markers and directives.
      if (c === 0 && (line.startsWith('---') || line.startsWith('...') || line.charCodeAt(0) === 0x25)) leave();
      return c;
    }
    return -1;
  }

  document(): Record<string, unknown> {
    if (this.next() !== 0) leave();
    const doc = this.map(0);
    if (this.next() !== -1) leave();
    return doc;
  }

  /** A block node whose first line (the current one) has content at column `indent`. */
  private block(indent: number): unknown {
    return isSeqEntry(this.lines[this.i]!, indent) ? this.seq(indent) : this.map(indent);
  }

  /** The end of the key that starts at `at` (the index after its colon), or -1 when there is none. */
  private keyEnd(line: string, at: number): number {
    const first = line.charCodeAt(at);
    if (isQuote(first)) {
      const q = skipSpaces(line, quoted(line, at)[1]);
      return line.charCodeAt(q) === COLON && (q + 1 === line.length || line.charCodeAt(q + 1) === SPACE) ? q + 1 : -1;
    }
    // A flow collection (or anything else no plain key starts with) is a value.
    if (INDICATOR.has(first)) return -1;
    for (let q = line.indexOf(':', at); q >= 0; q = line.indexOf(':', q + 1)) {
      if (q + 1 === line.length || line.charCodeAt(q + 1) === SPACE) return q + 1;
    }
    return -1;
  }

  /** A block mapping whose first key is on the current line at column `indent`. */
  private map(indent: number): Record<string, unknown> {
    if (++this.depth > MAX_DEPTH) leave();
    const out = this.mapEntries(indent);
    this.depth--;
    return out;
  }

  private mapEntries(indent: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (;;) {
      const line = this.lines[this.i]!;
      const end = this.keyEnd(line, indent);
      if (end < 0) leave();
      let key: string;
      if (isQuote(line.charCodeAt(indent))) {
        key = asKey(quoted(line, indent)[0], false);
      } else {
        plainStart(line, indent);
        const text = line.slice(indent, end - 1);
        // A comment before the colon: this line is no key.
        if (text.includes(' #')) leave();
        key = asKey(text.trimEnd(), true);
      }
      if (Object.hasOwn(out, key)) leave();
      out[key] = this.value(line, end, indent);
      const next = this.next();
      if (next < indent) return out;
      if (next > indent) leave();
    }
  }

  /** The value of a mapping entry at `indent`, from `at` (after the colon) on; moves past it. */
  private value(line: string, at: number, indent: number): unknown {
    const c = skipSpaces(line, at);
    if (c === line.length || line.charCodeAt(c) === HASH) {
      this.i++;
      const next = this.next();
      if (next > indent) return this.block(next);
      // A sequence may sit at its key's own indentation.
      if (next === indent && isSeqEntry(this.lines[this.i]!, next)) return this.seq(next);
      return null;
    }
    const v = this.inline(line, c);
    this.i++;
    return v;
  }

  /** A scalar or flow collection that ends its line (a comment may follow). */
  private inline(line: string, at: number): unknown {
    const c = line.charCodeAt(at);
    let v: unknown;
    let end: number;
    if (c === 0x7b || c === 0x5b) [v, end] = flowValue(line, at, this.depth);
    else if (isQuote(c)) [v, end] = quoted(line, at);
    else {
      plainStart(line, at);
      const cut = line.indexOf(' #', at);
      const text = (cut < 0 ? line.slice(at) : line.slice(at, cut)).trimEnd();
      // A colon here would start a mapping where none may be.
      if (text.includes(': ') || text.endsWith(':')) leave();
      return resolvePlain(text);
    }
    const rest = skipSpaces(line, end);
    if (rest < line.length && !(line.charCodeAt(rest) === HASH && rest > end)) leave();
    return v;
  }

  /** A block sequence whose first entry is on the current line, its `-` at column `indent`. */
  private seq(indent: number): unknown[] {
    if (++this.depth > MAX_DEPTH) leave();
    const out = this.seqEntries(indent);
    this.depth--;
    return out;
  }

  private seqEntries(indent: number): unknown[] {
    const out: unknown[] = [];
    for (;;) {
      const line = this.lines[this.i]!;
      if (!isSeqEntry(line, indent)) leave();
      const c = skipSpaces(line, indent + 1);
      if (c === line.length || line.charCodeAt(c) === HASH) {
        this.i++;
        const next = this.next();
        out.push(next > indent ? this.block(next) : null);
      } else if (isSeqEntry(line, c)) {
        leave();
      } else if (this.keyEnd(line, c) >= 0) {
        out.push(this.map(c));
      } else {
        out.push(this.inline(line, c));
        this.i++;
      }
      const next = this.next();
      if (next < indent) return out;
      if (next > indent) leave();
      // At the same indentation, a key of the mapping this sequence is a value of.
      if (!isSeqEntry(this.lines[this.i]!, indent)) return out;
    }
  }
}
