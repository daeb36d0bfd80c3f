// Canonical JSON: object keys sorted, so equal data always serialises to equal bytes.
import { createHash } from 'node:crypto';

export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = sortKeys(v);
    }
    return out;
  }
  return value;
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function hashJson(value: unknown): string {
  return sha256(canonicalJson(value));
}

/** sha256 over many strings, each followed by a newline, without joining them first. */
export function sha256Lines(lines: Iterable<string>): string {
  const h = createHash('sha256');
  for (const l of lines) h.update(l).update('\n');
  return h.digest('hex');
}

/**
 * A JSON value as text: strings as they are, numbers and booleans written out, anything else
 * (objects, arrays, null) as its JSON — never `[object Object]`.
 */
export function textOf(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return v === undefined ? '' : JSON.stringify(v);
}
