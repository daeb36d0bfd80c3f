// What a change granted or revoked is read back in its own transaction, before it commits.
// PostgreSQL turns a GRANT of a privilege the connecting role holds without the grant option into
// a mere warning ("no privileges were granted"), and a REVOKE of what another role granted into
// nothing at all. Either would let apply report success while the next plan shows the same change
// again, for ever; so a change that did not take effect fails, naming what is missing or left over
// and the statement that fixes it. Pure: the driver runs the queries and passes their rows in.
import { BackendError } from '../../core/errors.js';
import type { GrantPrivileges, TableScope } from '../../model/postgres.js';
import type { RelationRow } from './catalog.js';
import { ident, qualified } from './sql.js';

/** One privilege on one object, as GRANT writes it (`DATABASE "x"`, `TABLE "s"."t"`). */
export interface Held {
  /** The object's SQL kind: DATABASE, SCHEMA, TABLE, SEQUENCE. */
  kind: string;
  /** The object as SQL (quoted), e.g. `"s"."t"`. */
  object: string;
  /** The object in words, e.g. `table s.t`. */
  label: string;
  privilege: string;
  /** Who granted it (for what is left over). */
  grantor?: string;
}

const upper = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
const keyOf = (h: Held) => `${h.kind}\0${h.object}\0${h.privilege}`;

/** `want` against what the catalog holds now: what was not granted, and what was not revoked. */
export function shortfall(want: Held[], have: Held[]): { missing: Held[]; leftover: Held[] } {
  const had = new Set(have.map(keyOf));
  const wanted = new Set(want.map(keyOf));
  return { missing: want.filter((h) => !had.has(keyOf(h))), leftover: have.filter((h) => !wanted.has(keyOf(h))) };
}

/** A row of the read-back of one role's privileges in one schema (see the driver's query). */
export interface SchemaAclFact {
  kind: 'SCHEMA' | 'TABLE' | 'SEQUENCE' | 'COLUMN';
  relation: string | null;
  column: string | null;
  privilege: string;
  grantor: string;
}

/**
 * What a grant change on a schema (one level's privileges for one role) left undone. Only the
 * level's own privileges are its business. Relations made by someone else while it ran are
 * allowed their privileges (GRANT … ON ALL TABLES covers them) but not required to have them.
 */
export function schemaGrantShortfall(a: {
  schema: string;
  levelPrivileges: { schema: readonly string[]; tables: readonly string[]; sequences: readonly string[] };
  /** The wanted privileges, or undefined when the level's grant is being removed. */
  privileges: GrantPrivileges | undefined;
  scope: TableScope;
  /** The schema's relations when the change was made. */
  relations: RelationRow[];
  facts: SchemaAclFact[];
}): { missing: Held[]; leftover: Held[] } {
  const p = a.privileges;
  const ownedBy = new Map(a.relations.filter((r) => r.kind === 'sequence').map((r) => [r.name, r.ownedBy]));
  const inScope = (table: string | null | undefined) => a.scope === '*' || (table != null && a.scope.includes(table));
  const wanted = (kind: SchemaAclFact['kind'], relation: string | null): readonly string[] => {
    if (!p) return [];
    if (kind === 'SCHEMA') return p.schema;
    if (kind === 'TABLE') return inScope(relation) ? p.tables : [];
    if (kind === 'SEQUENCE') return a.scope === '*' || inScope(ownedBy.get(relation ?? '')) ? p.sequences : [];
    return []; // column privileges: datagrant never grants them
  };
  const ofLevel = (kind: SchemaAclFact['kind']) =>
    kind === 'SCHEMA' ? a.levelPrivileges.schema : kind === 'SEQUENCE' ? a.levelPrivileges.sequences : a.levelPrivileges.tables;
  const held = (kind: SchemaAclFact['kind'], relation: string | null, privilege: string): Held =>
    kind === 'SCHEMA'
      ? { kind: 'SCHEMA', object: ident(a.schema), label: `schema ${a.schema}`, privilege }
      : {
          kind: kind === 'SEQUENCE' ? 'SEQUENCE' : 'TABLE',
          object: qualified(a.schema, relation!),
          label: `${kind.toLowerCase()} ${a.schema}.${relation!}`,
          privilege,
        };

  const leftover: Held[] = [];
  for (const f of a.facts) {
    if (!ofLevel(f.kind).includes(f.privilege) || wanted(f.kind, f.relation).includes(f.privilege)) continue;
    if (f.kind === 'COLUMN') {
      leftover.push({
        kind: 'TABLE',
        object: qualified(a.schema, f.relation!),
        label: `column ${a.schema}.${f.relation!}.${f.column!}`,
        privilege: `${f.privilege} (${ident(f.column!)})`,
        grantor: f.grantor,
      });
    } else {
      leftover.push({ ...held(f.kind, f.relation, f.privilege), grantor: f.grantor });
    }
  }

  const has = new Set(a.facts.map((f) => `${f.kind}\0${f.relation ?? ''}\0${f.privilege}`));
  const missing: Held[] = [];
  const need = (kind: SchemaAclFact['kind'], relation: string | null) => {
    for (const privilege of wanted(kind, relation)) if (!has.has(`${kind}\0${relation ?? ''}\0${privilege}`)) missing.push(held(kind, relation, privilege));
  };
  need('SCHEMA', null);
  for (const r of a.relations) need(r.kind === 'sequence' ? 'SEQUENCE' : 'TABLE', r.name);
  return { missing, leftover };
}

/** Objects of one kind sharing the same privileges, as one statement (long lists shortened). */
function statements(items: Held[], verb: (privileges: string, kind: string, objects: string) => string): { what: string; sql: string }[] {
  const byObject = new Map<string, Held[]>();
  for (const h of items) byObject.set(`${h.kind}\0${h.object}`, [...(byObject.get(`${h.kind}\0${h.object}`) ?? []), h]);
  const groups = new Map<string, Held[][]>();
  for (const hs of byObject.values()) {
    const k = `${hs[0]!.kind}\0${[...new Set(hs.map((h) => h.privilege))].sort().join(', ')}`;
    groups.set(k, [...(groups.get(k) ?? []), hs]);
  }
  const out: { what: string; sql: string }[] = [];
  for (const [k, objects] of [...groups].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const [kind, privileges] = k.split('\0') as [string, string];
    const labels = objects.map((hs) => hs[0]!.label).sort();
    const shown = labels.length > 5 ? `${labels.slice(0, 5).join(', ')} and ${labels.length - 5} more` : labels.join(', ');
    out.push({
      what: `${privileges} on ${shown}`,
      sql: verb(
        privileges,
        kind,
        objects
          .map((hs) => hs[0]!.object)
          .sort()
          .join(', '),
      ),
    });
  }
  return out;
}

/**
 * The error for a change whose GRANTs or REVOKEs did not all take effect. `admin` is the role
 * datagrant connects as; nothing the change did is kept (its transaction is rolled back).
 */
export function notTakenEffect(backend: string, address: string, role: string, admin: string, missing: Held[], leftover: Held[]): BackendError {
  const parts: string[] = [];
  if (missing.length) {
    const fixes = statements(missing, (p, kind, objects) => `GRANT ${p} ON ${kind} ${objects} TO ${ident(admin)} WITH GRANT OPTION;`);
    parts.push(
      `${upper(fixes.map((f) => f.what).join('; '))} ${missing.length === 1 ? 'was' : 'were'} not granted to ${role}: ` +
        `the connecting role ${admin} can grant only what it holds with the grant option (PostgreSQL merely warns "no privileges were granted"). ` +
        `As the owner or a superuser, run: ${fixes.map((f) => f.sql).join(' ')}`,
    );
  }
  const byGrantor = new Map<string, Held[]>();
  for (const h of leftover) byGrantor.set(h.grantor ?? '?', [...(byGrantor.get(h.grantor ?? '?') ?? []), h]);
  for (const [grantor, items] of [...byGrantor].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const fixes = statements(items, (p, kind, objects) => `REVOKE ${p} ON ${kind} ${objects} FROM ${ident(role)};`);
    parts.push(
      `${upper(fixes.map((f) => f.what).join('; '))} ${items.length === 1 ? 'is' : 'are'} still held by ${role}, granted by ${grantor}: ` +
        `a REVOKE by ${admin} removes only what ${admin} granted. As ${grantor} or a superuser, run: ${fixes.map((f) => f.sql).join(' ')}`,
    );
  }
  return new BackendError(
    `${backend}: the change did not take effect, so none of it was kept. ${parts.join(' ')} Then apply again.`,
    backend,
    missing.length ? 'not-granted' : 'not-revoked',
    false,
    address,
  );
}
