// How a SCIM resource is stored, and the write rules both stores apply alike: the same row
// shape, the same unique key, the same If-Match test, the same membership clean-up.
import { textOf } from '../../core/canonical.js';
import { uniqueness, type ScimError } from '../errors.js';
import type { JsonObject, ResourceType } from '../schemas.js';
import type { ChangeListener, ScimChange, ScimRecord, ScimWork } from './store.js';

export const TABLE: Record<ResourceType, string> = { User: 'scim_users', Group: 'scim_groups' };

export function uniqueKey(type: ResourceType, attrs: JsonObject): string {
  const v = type === 'User' ? attrs.userName : attrs.displayName;
  return textOf(v).toLowerCase();
}

/** Whether an If-Match header value admits `version` (weak comparison, RFC 7232 §2.3.2). */
export function ifMatchAdmits(ifMatch: string | undefined, version: string): boolean {
  if (ifMatch === undefined) return true;
  const opaque = (tag: string) => tag.trim().replace(/^W\//i, '');
  const tags = ifMatch
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  return tags.some((t) => t === '*' || opaque(t) === opaque(version));
}

export const etag = (n: number) => `W/"${n}"`;

/** A resource's row as either database returns it: SQLite gives attrs as text, PostgreSQL BIGINT as a string. */
export interface Row {
  id: string;
  unique_key: string;
  created: string;
  last_modified: string;
  version: number | string;
  attrs: string | JsonObject;
  principal?: string | null;
}

export function toRecord(type: ResourceType, r: Row): ScimRecord {
  return {
    type,
    id: r.id,
    attrs: typeof r.attrs === 'string' ? (JSON.parse(r.attrs) as JsonObject) : r.attrs,
    created: r.created,
    lastModified: r.last_modified,
    version: etag(Number(r.version)),
    ...(typeof r.principal === 'string' ? { principal: r.principal } : {}),
  };
}

export function workOf(rows: { name: string; seq: number | string }[]): ScimWork {
  const seq = (name: string) => Number(rows.find((r) => r.name === name)?.seq ?? 0);
  return { changed: seq('changed'), reconciled: seq('reconciled') };
}

/** Listeners that cannot break a write: one throwing listener does not stop the others. */
export class Listeners {
  private readonly set = new Set<ChangeListener>();
  add(l: ChangeListener): () => void {
    this.set.add(l);
    return () => this.set.delete(l);
  }
  emit(c: ScimChange): void {
    for (const l of this.set) {
      try {
        l(c);
      } catch {
        // A listener's failure is the listener's business; the write has committed.
      }
    }
  }
}

/** The group's attributes without member `id`, or undefined when it was no member. */
export function withoutMember(attrs: JsonObject, id: string): JsonObject | undefined {
  const members = attrs.members;
  if (!Array.isArray(members)) return undefined;
  const left = members.filter((m) => !(typeof m === 'object' && m !== null && !Array.isArray(m) && m.value === id));
  if (left.length === members.length) return undefined;
  const next = { ...attrs };
  if (left.length) next.members = left;
  else delete next.members;
  return next;
}

/** The 409 for a unique key already taken, whichever database refused the write. */
export function duplicate(type: ResourceType, attrs: JsonObject): ScimError {
  return type === 'User'
    ? uniqueness(`a User with userName ${JSON.stringify(attrs.userName)} already exists (userName is unique, case-insensitively)`)
    : uniqueness(`a Group with displayName ${JSON.stringify(attrs.displayName)} already exists (displayName is unique, case-insensitively)`);
}
