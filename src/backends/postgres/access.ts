// Effective access on the server, read in bulk: roles, memberships and the datasets' databases
// from the URL's database (shared catalogs), then, in each dataset database, its schemas, their
// tables with their partitions and inheritance children (in any schema), column grants, default
// privileges, the views over those tables and the SECURITY DEFINER functions — six queries per
// database, whatever the number of roles or tables. effective.ts turns the rows into access.
// Reads only.
import type { AccessDataset, AccessQuery, AccessReading } from '../../model/access.js';
import type { Query } from './connection.js';
import type { PgContext } from './context.js';
import {
  effectiveAccess,
  type AclItem,
  type PgAccessDataset,
  type PgAccessFacts,
  type PgColumnFact,
  type PgDatabaseFact,
  type PgDefaultFact,
  type PgFunctionFact,
  type PgMembershipFact,
  type PgRelationFact,
  type PgRoleFact,
  type PgSchemaFact,
  type PgViewFact,
} from './effective.js';
import { sqlState } from './errors.js';
import { ROLES_FROM } from './ownership.js';

const isPg = (d: AccessDataset): d is PgAccessDataset => 'schema' in d;

/** An ACL as JSON items; a NULL ACL is its default (acldefault), e.g. PUBLIC's CONNECT on a database. */
const aclJson = (acl: string, type: string, owner: string) =>
  `(SELECT coalesce(json_agg(json_build_object('grantee', CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
                                               'privilege', a.privilege_type) ORDER BY a.grantee, a.privilege_type), '[]'::json)
      FROM aclexplode(coalesce(${acl}, acldefault('${type}', ${owner}))) a)`;

export async function readAccess(ctx: PgContext, query: AccessQuery): Promise<AccessReading> {
  const { conn, owner } = ctx;
  const before = conn.stats.requests;
  const datasets = query.datasets.filter(isPg);
  const wanted = [...new Set(datasets.map((d) => d.database))].sort();

  const shared = await conn.admin(async (q) => {
    const version = Number(((await q(`SELECT current_setting('server_version_num') AS v`)).rows[0] as { v: string }).v);
    const roles = await q(
      `SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcanlogin, r.rolcreaterole, d.description AS comment,
              CASE WHEN r.rolvaliduntil IS NULL OR r.rolvaliduntil = 'infinity' THEN NULL
                   ELSE (extract(epoch FROM r.rolvaliduntil) * 1000)::float8 END AS valid_until_ms
         ${ROLES_FROM}
        ORDER BY r.rolname`,
    );
    // PostgreSQL 16 keeps INHERIT and SET per grant; before, INHERIT is the member's attribute.
    const options = version >= 160000 ? 'a.inherit_option, a.set_option' : 'NULL::bool AS inherit_option, NULL::bool AS set_option';
    const members = await q(
      `SELECT g.rolname AS role, m.rolname AS member, ${options}
         FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
        ORDER BY 1, 2`,
    );
    const dbs = await q(
      `SELECT d.datname, pg_get_userbyid(d.datdba) AS owner, d.datallowconn, ${aclJson('d.datacl', 'd', 'd.datdba')} AS acl
         FROM pg_database d WHERE d.datname = ANY($1::text[]) ORDER BY d.datname`,
      [wanted],
    );
    return {
      version,
      roles: (roles.rows as Record<string, unknown>[]).map((r): PgRoleFact => ({
        name: String(r.rolname),
        superuser: r.rolsuper === true,
        inherit: r.rolinherit === true,
        login: r.rolcanlogin === true,
        createRole: r.rolcreaterole === true,
        validUntil: r.valid_until_ms === null ? null : new Date(Math.round(r.valid_until_ms as number)).toISOString(),
        comment: (r.comment as string | null) ?? null,
      })),
      memberships: (members.rows as { role: string; member: string; inherit_option: boolean | null; set_option: boolean | null }[]).map(
        (m): PgMembershipFact => ({ role: m.role, member: m.member, inheritOption: m.inherit_option, setOption: m.set_option }),
      ),
      databases: (dbs.rows as { datname: string; owner: string; datallowconn: boolean; acl: AclItem[] }[]).map((d): PgDatabaseFact => ({
        name: d.datname,
        owner: d.owner,
        allowConnections: d.datallowconn,
        acl: d.acl,
      })),
    };
  }, false);

  const facts: PgAccessFacts = { backend: ctx.name, ...shared, schemas: [], relations: [], columns: [], defaults: [], views: [], functions: [] };
  for (const db of shared.databases) {
    if (!db.allowConnections) continue;
    const schemas = [...new Set(datasets.filter((d) => d.database === db.name).map((d) => d.schema))].sort();
    try {
      await conn.on(db.name, (q) => readDatabase(q, db.name, schemas, facts), false);
    } catch (e) {
      // Dropped since the first query: the dataset's database does not exist.
      if (sqlState(e) !== '3D000') throw e;
      facts.databases = facts.databases.filter((d) => d.name !== db.name);
    }
  }

  // Only a marker with this installation's id counts as datagrant's for access; one without is an
  // older version's (parseOwnComment), named in limits.
  const reading = effectiveAccess(facts, datasets, (c) => owner.parseOwn(c), { legacy: (c) => owner.parse(c) !== undefined });
  return { ...reading, requests: conn.stats.requests - before };
}

/**
 * The relations of the datasets' schemas, and every partition or inheritance child of theirs,
 * wherever it is (`wanted`), with their ancestors at any depth (`up`, nearest first).
 */
const WANTED = `WITH RECURSIVE up AS (
    SELECT i.inhrelid AS rel, i.inhparent AS anc, 1 AS depth FROM pg_inherits i
    UNION ALL
    SELECT u.rel, i.inhparent, u.depth + 1 FROM up u JOIN pg_inherits i ON i.inhrelid = u.anc
  ),
  wanted AS (
    SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY($1::text[])
    UNION
    SELECT u.rel FROM up u JOIN pg_class a ON a.oid = u.anc JOIN pg_namespace an ON an.oid = a.relnamespace WHERE an.nspname = ANY($1::text[])
  )`;

async function readDatabase(q: Query, database: string, schemas: string[], facts: PgAccessFacts): Promise<void> {
  // The datasets' schemas, and those of their tables' partitions and children elsewhere (whose USAGE they need).
  const nsp = await q(
    `${WANTED}
     SELECT n.nspname, pg_get_userbyid(n.nspowner) AS owner, ${aclJson('n.nspacl', 'n', 'n.nspowner')} AS acl
       FROM pg_namespace n
      WHERE n.nspname = ANY($1::text[]) OR n.oid IN (SELECT c.relnamespace FROM pg_class c WHERE c.oid IN (SELECT oid FROM wanted))
      ORDER BY n.nspname`,
    [schemas],
  );
  const rel = await q(
    `${WANTED}
     SELECT n.nspname, c.relname, c.relkind::text AS relkind, c.relispartition, c.relrowsecurity,
            pg_get_userbyid(c.relowner) AS owner, ${aclJson('c.relacl', 'r', 'c.relowner')} AS acl,
            (SELECT coalesce(json_agg(json_build_object('schema', an.nspname, 'name', a.relname) ORDER BY u.depth), '[]'::json)
               FROM up u JOIN pg_class a ON a.oid = u.anc JOIN pg_namespace an ON an.oid = a.relnamespace
              WHERE u.rel = c.oid) AS ancestors
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r','p','v','m','f') AND c.oid IN (SELECT oid FROM wanted)
      ORDER BY n.nspname, c.relname`,
    [schemas],
  );
  const col = await q(
    `${WANTED}
     SELECT n.nspname, c.relname, att.attname, CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END AS grantee, a.privilege_type
       FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       CROSS JOIN LATERAL aclexplode(att.attacl) a
      WHERE att.attacl IS NOT NULL AND att.attnum > 0 AND NOT att.attisdropped
        AND c.relkind IN ('r','p','v','m','f') AND c.oid IN (SELECT oid FROM wanted)
      ORDER BY 1, 2, 3, 4, 5`,
    [schemas],
  );
  // Defaults IN SCHEMA one of ours, and those for every schema (defaclnamespace 0).
  const def = await q(
    `SELECT n.nspname, pg_get_userbyid(d.defaclrole) AS creator,
            CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END AS grantee, a.privilege_type
       FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
       CROSS JOIN LATERAL aclexplode(d.defaclacl) a
      WHERE d.defaclobjtype = 'r' AND (d.defaclnamespace = 0 OR n.nspname = ANY($1::text[]))
      ORDER BY 1, 2, 3, 4`,
    [schemas],
  );
  // Views (and materialized views) over the wanted relations, through any number of other views:
  // each reads with its owner's privileges.
  const views = await q(
    `${WANTED},
     deps AS (
       SELECT DISTINCT rw.ev_class AS view, d.refobjid AS base
         FROM pg_depend d JOIN pg_rewrite rw ON rw.oid = d.objid
        WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND rw.ev_class <> d.refobjid
     ),
     over AS (
       SELECT view, base AS root FROM deps WHERE base IN (SELECT oid FROM wanted)
       UNION
       SELECT d.view, o.root FROM deps d JOIN over o ON d.base = o.view
     )
     SELECT vn.nspname, v.relname, pg_get_userbyid(v.relowner) AS owner, rn.nspname AS on_schema, r.relname AS on_name
       FROM over o JOIN pg_class v ON v.oid = o.view JOIN pg_namespace vn ON vn.oid = v.relnamespace
       JOIN pg_class r ON r.oid = o.root JOIN pg_namespace rn ON rn.oid = r.relnamespace
      ORDER BY 1, 2, 4, 5`,
    [schemas],
  );
  // SECURITY DEFINER functions, with their source (a SQL-standard body only as the server deparses it).
  const fns = await q(
    `SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid) AS args, pg_get_userbyid(p.proowner) AS owner,
            CASE WHEN coalesce(p.prosrc, '') = '' THEN pg_get_functiondef(p.oid) ELSE p.prosrc END AS body
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
      WHERE p.prosecdef AND p.prokind IN ('f', 'p') AND l.lanname NOT IN ('c', 'internal')
        AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      ORDER BY 1, 2, 3`,
  );
  facts.schemas.push(
    ...(nsp.rows as { nspname: string; owner: string; acl: AclItem[] }[]).map((r): PgSchemaFact => ({ database, name: r.nspname, owner: r.owner, acl: r.acl })),
  );
  facts.relations.push(
    ...(
      rel.rows as {
        nspname: string;
        relname: string;
        relkind: string;
        relispartition: boolean;
        relrowsecurity: boolean;
        owner: string;
        acl: AclItem[];
        ancestors: { schema: string; name: string }[];
      }[]
    ).map((r): PgRelationFact => ({
      database,
      schema: r.nspname,
      name: r.relname,
      relkind: r.relkind,
      partition: r.relispartition,
      rowSecurity: r.relrowsecurity,
      owner: r.owner,
      acl: r.acl,
      ...(r.ancestors.length ? { ancestors: r.ancestors } : {}),
    })),
  );
  facts.columns.push(
    ...(col.rows as { nspname: string; relname: string; attname: string; grantee: string | null; privilege_type: string }[]).map((r): PgColumnFact => ({
      database,
      schema: r.nspname,
      relation: r.relname,
      column: r.attname,
      grantee: r.grantee,
      privilege: r.privilege_type,
    })),
  );
  facts.defaults.push(
    ...(def.rows as { nspname: string | null; creator: string; grantee: string | null; privilege_type: string }[]).map((r): PgDefaultFact => ({
      database,
      schema: r.nspname,
      creator: r.creator,
      grantee: r.grantee,
      privilege: r.privilege_type,
    })),
  );
  facts.views!.push(
    ...(views.rows as { nspname: string; relname: string; owner: string; on_schema: string; on_name: string }[]).map((r): PgViewFact => ({
      database,
      schema: r.nspname,
      name: r.relname,
      owner: r.owner,
      on: { schema: r.on_schema, name: r.on_name },
    })),
  );
  facts.functions!.push(
    ...(fns.rows as { nspname: string; proname: string; args: string; owner: string; body: string | null }[]).map((r): PgFunctionFact => ({
      database,
      schema: r.nspname,
      name: r.proname,
      args: r.args,
      owner: r.owner,
      body: r.body ?? '',
    })),
  );
}
