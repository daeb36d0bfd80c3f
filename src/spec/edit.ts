// Edits to the spec's text that keep everything else byte for byte: comments, alignment, quoting,
// flow or block style. yaml's Document finds the nodes and their source ranges; the text is cut at
// those ranges instead of being printed again, because printing re-aligns comments and flow
// collections all over the file and a reviewer would see a diff of lines nobody changed. Pure.
import { isAlias, isMap, isPair, isScalar, isSeq, parseDocument, type Node, type Pair, type YAMLSeq } from 'yaml';

export type SpecPath = readonly (string | number)[];

/** Remove item `index` of the sequence at `path` (`['principals', 'alice', 'groups']`). */
export interface SeqRemoval {
  path: SpecPath;
  index: number;
}

export interface EditOutcome {
  text: string;
  /** Removals that could not be made in the text, and why; the text has none of them. */
  refused: { removal: SeqRemoval; why: string }[];
}

interface Splice {
  start: number;
  end: number;
  insert: string;
}

const dotted = (path: SpecPath) =>
  path
    .map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`))
    .join('')
    .replace(/^\./, '');

/**
 * Finds the pair holding the value at `path` and checks that the way there is plain: an alias or
 * an anchor on the way means the same text stands for something else too (another principal's
 * groups), which an edit here would change as well.
 */
function locate(root: Node | null, path: SpecPath): { seq: YAMLSeq; pair: Pair } | string {
  let node: unknown = root;
  let pair: Pair | undefined;
  for (const key of path) {
    if (isAlias(node)) return `${dotted(path)} goes through the alias *${node.source}`;
    if ((node as { anchor?: string } | null)?.anchor) return `${dotted(path)} goes through the anchor &${(node as { anchor: string }).anchor}`;
    if (!isMap(node)) return `${dotted(path)} is not in the spec's text (it may come from a merge key or from SCIM)`;
    // The last of duplicate keys is the one whose value is used.
    pair = [...node.items].reverse().find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(key));
    if (!pair) return `${dotted(path)} is not in the spec's text (it may come from a merge key or from SCIM)`;
    node = pair.value;
  }
  if (isAlias(node)) return `${dotted(path)} is the alias *${node.source}`;
  if (!isSeq(node) || !pair) return `${dotted(path)} is not a list`;
  if (node.anchor) return `${dotted(path)} carries the anchor &${node.anchor}`;
  return { seq: node, pair };
}

const lineStart = (text: string, at: number) => text.lastIndexOf('\n', at - 1) + 1;
const lineEnd = (text: string, at: number) => {
  const nl = text.indexOf('\n', at);
  return nl === -1 ? text.length : nl + 1;
};

function seqSplices(text: string, seq: YAMLSeq, pair: Pair, drop: Set<number>): Splice[] | string {
  const items = seq.items as (Node | null)[];
  for (const i of drop) if (i < 0 || i >= items.length || !items[i]?.range) return `has no item [${i}]`;
  const [start, valueEnd, nodeEnd] = seq.range!;
  if (seq.flow) {
    const source = text.slice(start, valueEnd);
    if (source.includes('#')) return 'is a flow list with a comment inside';
    const kept = items.filter((_, i) => !drop.has(i)).map((it) => text.slice(it!.range![0], it!.range![1]));
    const pad = /^\[\s/.test(source) && kept.length ? ' ' : '';
    return [{ start, end: valueEnd, insert: `[${pad}${kept.join(', ')}${pad}]` }];
  }
  if (drop.size === items.length) {
    // A block list left empty: `key: []`, so the key still says what it is.
    const keyEnd = (pair.key as Node).range![1];
    return [{ start: keyEnd, end: nodeEnd, insert: `: []${text[nodeEnd - 1] === '\n' ? '\n' : ''}` }];
  }
  const out: Splice[] = [];
  for (const i of drop) {
    const [itemStart, , itemEnd] = items[i]!.range!;
    const from = lineStart(text, itemStart);
    // Only `<indent>- <item>` on its own lines can go as whole lines.
    if (!/^[ ]*-[ ]+$/.test(text.slice(from, itemStart))) return `item [${i}] does not start its own line`;
    out.push({ start: from, end: text[itemEnd - 1] === '\n' ? itemEnd : lineEnd(text, itemEnd), insert: '' });
  }
  return out;
}

/** Removes sequence items from the spec's text, touching nothing else. */
export function removeSequenceItems(text: string, removals: readonly SeqRemoval[]): EditOutcome {
  const doc = parseDocument(text, { keepSourceTokens: false });
  const refused: EditOutcome['refused'] = [];
  if (doc.errors.length) {
    return { text, refused: removals.map((removal) => ({ removal, why: `the spec does not parse: ${doc.errors[0]!.message}` })) };
  }
  const bySeq = new Map<string, { path: SpecPath; removals: SeqRemoval[] }>();
  for (const r of removals) {
    const k = JSON.stringify(r.path);
    const entry = bySeq.get(k) ?? { path: r.path, removals: [] };
    entry.removals.push(r);
    bySeq.set(k, entry);
  }
  const splices: Splice[] = [];
  for (const { path, removals: rs } of bySeq.values()) {
    const found = locate(doc.contents, path);
    const made = typeof found === 'string' ? found : seqSplices(text, found.seq, found.pair, new Set(rs.map((r) => r.index)));
    if (typeof made === 'string') {
      const why = typeof found === 'string' ? found : `${dotted(path)} ${made}`;
      for (const removal of rs) refused.push({ removal, why });
    } else {
      splices.push(...made);
    }
  }
  splices.sort((a, b) => b.start - a.start);
  let out = text;
  for (const s of splices) out = out.slice(0, s.start) + s.insert + out.slice(s.end);
  return { text: out, refused };
}
