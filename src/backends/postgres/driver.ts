// The postgres driver: roles, memberships and GRANTs on one PostgreSQL server.
//
// Ownership: a role is datagrant's only if its `COMMENT ON ROLE` is JSON carrying
// `"datagrant":"managed"`; read reports nothing else, execute refuses to adopt or drop anything
// else. Privileges are read from the ACLs of the databases where an owned role appears in
// pg_shdepend, so unrelated databases are never opened.
//
// Default privileges (future tables): PostgreSQL applies `ALTER DEFAULT PRIVILEGES FOR ROLE r`
// only to objects that r creates. The role that creates a schema's tables is normally its owner
// (the migrations role), but a schema can hold tables created by others; so defaults are set FOR
// ROLE the schema owner and every role owning a relation in the schema today. A table created
// later by yet another role shows up as missing privileges on the next plan, and the apply then
// covers that role too. The connecting role must be a superuser or a member of those owners.
//
// Passwords: 32 random bytes generated here, sent only as a SCRAM-SHA-256 verifier.
import pg from 'pg';
import { randomUUID } from 'node:crypto';
import type { Backend, BackendStats, ExecuteResult, ReadOptions } from '../backend.js';
import { DEFAULT_DEADLINES, deadlineError, type Deadlines } from '../deadline.js';
import { urlWithoutPassword } from '../redact.js';
import { BackendError } from '../../core/errors.js';
import type { ActualState, Change, ForeignObject } from '../../core/types.js';
import type { GrantAttrs, RoleAttrs } from '../../model/postgres.js';
import {
  levelOfSchemaPrivilege,
  levelOfSequencePrivilege,
  levelOfTablePrivilege,
  type SchemaPrivilege,
  type SequencePrivilege,
  type TablePrivilege,
} from '../../model/postgres-levels.js';
import {
  MARKER,
  defaultOwners,
  isDatagrantRole,
  otherInstallation,
  parseComment,
  resourcesFromCatalog,
  type AclRow,
  type CatalogFacts,
  type DefaultAclRow,
  type RelationRow,
  type RoleComment,
  type RoleRow,
} from './catalog.js';
import { generatePassword, ident, literal, qualified, scramVerifier, verifierFingerprint } from './sql.js';
import { notTakenEffect, schemaGrantShortfall, shortfall, type Held, type SchemaAclFact } from './verify.js';
import { textOf } from '../../core/canonical.js';

export interface PostgresBackendOptions {
  name: string;
  /** Connection URL of a role with CREATEROLE and grant rights (or a superuser). */
  url: string;
  /**
   * Ownership scope written into the marker; read and execute see only roles of the same scope.
   * Unset in production (one datagrant per server); tests sharing a server each use their own.
   */
  scope?: string;
  /** Connections per database pool (default: 8 to the URL's database, 4 to each dataset database). */
  poolSize?: number;
  /** This state's installation id, written into the marker; roles of another installation are never touched. */
  installation?: string;
  /** Connect and per-statement deadlines (default: 10 s and 60 s). */
  deadlines?: Deadlines;
}

const TABLE_PRIVILEGES: TablePrivilege[] = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'];
const SEQUENCE_PRIVILEGES: SequencePrivilege[] = ['SELECT', 'UPDATE', 'USAGE'];
const SCHEMA_PRIVILEGES: SchemaPrivilege[] = ['USAGE', 'CREATE'];
const ROLE_FLAGS: [column: string, flag: string, reset: string][] = [
  ['rolsuper', 'SUPERUSER', 'NOSUPERUSER'],
  ['rolcreatedb', 'CREATEDB', 'NOCREATEDB'],
  ['rolcreaterole', 'CREATEROLE', 'NOCREATEROLE'],
  ['rolreplication', 'REPLICATION', 'NOREPLICATION'],
  ['rolbypassrls', 'BYPASSRLS', 'NOBYPASSRLS'],
];

/** SQLSTATEs worth retrying: serialization, deadlock, connection trouble, server starting/stopping. */
function retryable(code: string | undefined, message: string): boolean {
  if (!code) return /ECONNRESET|ECONNREFUSED|ETIMEDOUT|Connection terminated/i.test(message);
  return ['40001', '40P01', '53300', '57P01', '57P03', '55P03'].includes(code) || code.startsWith('08') || (code === 'XX000' && /concurrently/.test(message));
}

type Query = (text: string, values?: unknown[]) => Promise<pg.QueryResult>;

/** Where a missed deadline happened: pg's own errors say neither which deadline nor which database. */
const DEADLINE = Symbol('datagrant.deadline');
type Missed = { kind: 'connect' | 'request'; database?: string };

const isReadTimeout = (e: unknown) => (e as Error | undefined)?.message === 'Query read timeout';

/**
 * pg's messages for its deadlines: the client's connection timeout ("timeout expired", or the
 * pool's "Connection terminated due to connection timeout"), its read timeout ("Query read
 * timeout"), and the server's statement_timeout (SQLSTATE 57014 "canceling statement due to
 * statement timeout"; a cancel for any other reason is not a deadline).
 */
function tagDeadline(e: unknown, database: string, phase: 'connect' | 'request'): unknown {
  if (!e || typeof e !== 'object' || e instanceof BackendError) return e;
  const err = e as Error & { code?: string };
  const kind =
    phase === 'connect' && /timeout expired|connection timeout/i.test(err.message)
      ? 'connect'
      : isReadTimeout(err) || (err.code === '57014' && /statement timeout/.test(err.message))
        ? 'request'
        : undefined;
  if (kind) Object.defineProperty(err, DEADLINE, { value: { kind, database } satisfies Missed, enumerable: false });
  return err;
}

const missedDeadline = (e: unknown): Missed | undefined => (e && typeof e === 'object' ? (e as { [DEADLINE]?: Missed })[DEADLINE] : undefined);

export function createPostgresBackend(opts: PostgresBackendOptions): Backend {
  const { name } = opts;
  const stats: BackendStats = { requests: 0, retries: 0 };
  const base = new URL(opts.url);
  const adminDatabase = decodeURIComponent(base.pathname.replace(/^\//, '')) || 'postgres';
  const pools = new Map<string, pg.Pool>();

  const deadlines = opts.deadlines ?? DEFAULT_DEADLINES;
  const urlOf = (database: string) => {
    const u = new URL(opts.url);
    u.pathname = `/${encodeURIComponent(database)}`;
    return u.toString();
  };
  // The connect deadline is the server's, not the wait for a free connection of our own pool
  // (pg.Pool would count that too), so it is set on each client.
  class DeadlineClient extends pg.Client {
    constructor(config: pg.ClientConfig) {
      super({ ...config, connectionTimeoutMillis: deadlines.connectMs });
    }
  }

  const pool = (database: string): pg.Pool => {
    let p = pools.get(database);
    if (!p) {
      p = new pg.Pool({
        connectionString: urlOf(database),
        Client: DeadlineClient as unknown as new () => pg.ClientBase,
        max: opts.poolSize ?? (database === adminDatabase ? 8 : 4),
        // Per-dataset databases are left quickly, so that DROP DATABASE elsewhere is not blocked.
        idleTimeoutMillis: database === adminDatabase ? 10_000 : 1_000,
        allowExitOnIdle: true,
        // Client side: a server that stops answering. Server side (below): a statement that runs
        // or waits for a lock too long is cancelled there, not left running after we gave up. A
        // SET rather than a start-up parameter, which poolers such as pgbouncer refuse.
        query_timeout: deadlines.requestMs,
      });
      p.on('error', () => undefined);
      // Queued first on each new connection, so it runs before anything sent on it; if it fails,
      // the connection is broken and the next statement on it reports that.
      p.on('connect', (c) => {
        c.query(`SET statement_timeout = ${Math.round(deadlines.requestMs)}`).catch(() => undefined);
      });
      pools.set(database, p);
    }
    return p;
  };

  const fail = (e: unknown, address?: string): never => {
    if (e instanceof BackendError) throw e;
    const err = e as Error & { code?: string };
    const missed = missedDeadline(err);
    if (missed)
      throw deadlineError(
        name,
        urlWithoutPassword(urlOf(missed.database ?? adminDatabase)),
        missed.kind,
        missed.kind === 'connect' ? deadlines.connectMs : deadlines.requestMs,
        address,
      );
    throw new BackendError(`${name}: ${err.message}`, name, err.code, retryable(err.code, err.message), address);
  };

  /** Run `fn` on one connection of `database`, in a transaction unless told otherwise. */
  async function withClient<T>(database: string, fn: (q: Query) => Promise<T>, tx = true): Promise<T> {
    stats.requests++;
    let client: pg.PoolClient;
    try {
      client = await pool(database).connect();
    } catch (e) {
      throw tagDeadline(e, database, 'connect');
    }
    const q: Query = (text, values) => {
      stats.requests++;
      return client.query(text, values as unknown[]);
    };
    let broken: Error | undefined;
    try {
      if (tx) await client.query('BEGIN');
      const out = await fn(q);
      if (tx) await client.query('COMMIT');
      return out;
    } catch (e) {
      // A connection whose server stopped answering is closed, not reused; closing it also ends
      // the transaction, so there is no ROLLBACK to wait for.
      if (isReadTimeout(e)) broken = e as Error;
      else if (tx) await client.query('ROLLBACK').catch(() => undefined);
      throw tagDeadline(e, database, 'request');
    } finally {
      client.release(broken);
    }
  }
  const admin = <T>(fn: (q: Query) => Promise<T>, tx = true) => withClient(adminDatabase, fn, tx);

  /** Serialises catalog updates on one shared row (a database's or a schema's ACL) across sessions. */
  const lockSql = (what: string) => `SELECT pg_advisory_xact_lock(hashtext(${literal(`datagrant:${what}`)}))`;
  const lock = (q: Query, what: string) => q(lockSql(what));

  interface LiveRole {
    oid: string;
    comment: RoleComment | undefined;
    login: boolean;
    flags: string[];
  }
  async function liveRoles(q: Query, roles: string[]): Promise<Map<string, LiveRole>> {
    const r = await q(
      `SELECT rolname, oid::int8::text AS oid, rolcanlogin, ${ROLE_FLAGS.map(([c]) => c).join(', ')}, rolinherit,
              shobj_description(oid, 'pg_authid') AS comment
         FROM pg_roles WHERE rolname = ANY($1::text[])`,
      [roles],
    );
    const out = new Map<string, LiveRole>();
    for (const row of r.rows as Record<string, unknown>[]) {
      const flags = ROLE_FLAGS.filter(([c]) => row[c] === true).map(([, f]) => f);
      if (row.rolinherit === false) flags.push('NOINHERIT');
      out.set(String(row.rolname), {
        oid: String(row.oid),
        comment: parseComment(row.comment as string | null, opts.scope, opts.installation),
        login: row.rolcanlogin === true,
        flags,
      });
    }
    return out;
  }
  const liveRole = async (q: Query, role: string) => (await liveRoles(q, [role])).get(role);
  const notOurs = (role: string, address: string) =>
    new BackendError(
      `${name}: role ${role} exists but is not managed by datagrant (its COMMENT carries no datagrant marker); datagrant does not adopt or change it — rename the principal or group, or drop the role by hand`,
      name,
      'not-owned',
      false,
      address,
    );

  /** Fails the change (its transaction) unless `want` and `have` agree; see verify.ts. */
  async function confirm(q: Query, address: string, role: string, found: { missing: Held[]; leftover: Held[] }): Promise<void> {
    if (found.missing.length === 0 && found.leftover.length === 0) return;
    const me = (await q('SELECT current_user AS me')).rows[0] as { me: string };
    throw notTakenEffect(name, address, role, me.me, found.missing, found.leftover);
  }

  const marker = (): RoleComment => ({
    datagrant: MARKER,
    ...(opts.scope ? { scope: opts.scope } : {}),
    ...(opts.installation ? { installation: opts.installation } : {}),
  });
  const commentSql = (role: string, c: RoleComment) => `COMMENT ON ROLE ${ident(role)} IS ${literal(JSON.stringify(c))}`;
  /**
   * Statements sent as one simple-protocol message, which PostgreSQL runs as one implicit
   * transaction: all or nothing, in one round trip.
   */
  const atomic = (q: Query, statements: string[]) => q(statements.join(';\n'));
  const validUntilSql = (v: string | null) => `VALID UNTIL ${literal(v ?? 'infinity')}`;

  // ---------------------------------------------------------------- read

  async function read(ropts: ReadOptions): Promise<ActualState> {
    try {
      return await readCatalog(ropts);
    } catch (e) {
      return fail(e);
    }
  }

  async function readCatalog(ropts: ReadOptions): Promise<ActualState> {
    const shared = await admin(async (q) => {
      const roles = await q(
        `SELECT oid::int8::text AS oid, rolname, rolcanlogin, ${ROLE_FLAGS.map(([c]) => c).join(', ')}, rolinherit,
                CASE WHEN rolvaliduntil IS NULL OR rolvaliduntil = 'infinity' THEN NULL
                     ELSE (extract(epoch FROM rolvaliduntil) * 1000)::float8 END AS valid_until_ms,
                shobj_description(oid, 'pg_authid') AS comment
           FROM pg_roles
          WHERE shobj_description(oid, 'pg_authid') LIKE '%datagrant%'`,
      );
      const foreign: ForeignObject[] = [];
      for (const row of roles.rows as Record<string, unknown>[]) {
        const other = otherInstallation(row.comment as string | null, opts.scope, opts.installation);
        if (other) foreign.push({ address: `${name}:role/${String(row.rolname)}`, installation: other });
      }
      const owned = roles.rows
        .map((row: Record<string, unknown>) => ({ row, comment: parseComment(row.comment as string | null, opts.scope, opts.installation) }))
        .filter((x) => x.comment !== undefined);
      const oids = owned.map((x) => String(x.row.oid));
      const members = await q(
        `SELECT g.rolname AS grp, m.rolname AS member
           FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
          WHERE (a.roleid = ANY($1::oid[]) OR a.member = ANY($1::oid[]))
            -- PostgreSQL 16 makes a non-superuser creator a member of each role it creates: not drift.
            AND m.rolname <> current_user`,
        [oids],
      );
      const dbAcl = await q(
        `SELECT d.datname, r.rolname, a.privilege_type
           FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a JOIN pg_roles r ON r.oid = a.grantee
          WHERE a.grantee = ANY($1::oid[])`,
        [oids],
      );
      const dbs = await q(
        `SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid
          WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = ANY($1::oid[]) AND d.datallowconn`,
        [oids],
      );
      // Only a superuser can read verifiers; without that, a password changed by hand goes unnoticed.
      let fingerprints: Map<string, string | null> | undefined;
      try {
        await q('SAVEPOINT authid');
        const pw = await q('SELECT rolname, rolpassword FROM pg_authid WHERE oid = ANY($1::oid[])', [oids]);
        fingerprints = new Map(
          pw.rows.map((r: { rolname: string; rolpassword: string | null }) => [r.rolname, r.rolpassword ? verifierFingerprint(r.rolpassword) : null]),
        );
      } catch {
        await q('ROLLBACK TO SAVEPOINT authid');
      }
      return { owned, foreign, oids, members: members.rows, dbAcl: dbAcl.rows, databases: dbs.rows.map((r: { datname: string }) => r.datname), fingerprints };
    });

    const roles: RoleRow[] = shared.owned.map(({ row, comment }) => {
      const flags = ROLE_FLAGS.filter(([c]) => row[c] === true).map(([, f]) => f);
      if (row.rolinherit === false) flags.push('NOINHERIT');
      const ms = row.valid_until_ms as number | null;
      const rolname = String(row.rolname);
      return {
        name: rolname,
        login: row.rolcanlogin === true,
        validUntil: ms === null ? null : new Date(Math.round(ms)).toISOString(),
        flags,
        comment: comment!,
        ...(shared.fingerprints ? { verifierFingerprint: shared.fingerprints.get(rolname) ?? null } : {}),
      };
    });

    const facts: CatalogFacts = {
      backend: name,
      roles,
      memberships: shared.members.map((m: { grp: string; member: string }) => ({ group: m.grp, member: m.member })),
      databaseAcl: shared.dbAcl.map((r: { datname: string; rolname: string; privilege_type: string }) => ({
        database: r.datname,
        role: r.rolname,
        privilege: r.privilege_type,
      })),
      schemas: [],
      relations: [],
      schemaAcl: [],
      relationAcl: [],
      columnAcl: [],
      defaultAcl: [],
      credentials: ropts.credentials,
    };

    for (const database of shared.databases.sort()) {
      try {
        await readDatabase(database, shared.oids, facts);
      } catch (e) {
        // Dropped between the two queries: nothing of ours is left in it.
        if ((e as { code?: string }).code === '3D000') continue;
        throw e;
      }
    }
    return { backend: name, resources: resourcesFromCatalog(facts), ...(shared.foreign.length ? { foreign: shared.foreign } : {}) };
  }

  async function readDatabase(database: string, oids: string[], facts: CatalogFacts): Promise<void> {
    await withClient(
      database,
      async (q) => {
        const nsp = await q(
          `SELECT n.nspname, r.rolname, a.privilege_type
           FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a JOIN pg_roles r ON r.oid = a.grantee
          WHERE a.grantee = ANY($1::oid[])`,
          [oids],
        );
        const rel = await q(
          `SELECT n.nspname, c.relname, c.relkind = 'S' AS is_seq, r.rolname, a.privilege_type
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee
          WHERE c.relkind IN ('r','p','v','m','f','S') AND a.grantee = ANY($1::oid[])`,
          [oids],
        );
        const col = await q(
          `SELECT DISTINCT n.nspname, c.relname, r.rolname, a.privilege_type
           FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           CROSS JOIN LATERAL aclexplode(att.attacl) a JOIN pg_roles r ON r.oid = a.grantee
          WHERE att.attacl IS NOT NULL AND c.relkind IN ('r','p','v','m','f') AND a.grantee = ANY($1::oid[])`,
          [oids],
        );
        // Defaults not tied to a schema (IN SCHEMA omitted) are outside the model and not read.
        const def = await q(
          `SELECT n.nspname, pg_get_userbyid(d.defaclrole) AS owner, d.defaclobjtype, r.rolname, a.privilege_type
           FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace
           CROSS JOIN LATERAL aclexplode(d.defaclacl) a JOIN pg_roles r ON r.oid = a.grantee
          WHERE d.defaclobjtype IN ('r','S') AND a.grantee = ANY($1::oid[])`,
          [oids],
        );
        const schemas = sortedUnique([
          ...nsp.rows.map((r: { nspname: string }) => r.nspname),
          ...rel.rows.map((r: { nspname: string }) => r.nspname),
          ...def.rows.map((r: { nspname: string }) => r.nspname),
          ...col.rows.map((r: { nspname: string }) => r.nspname),
        ]);
        const { owners, relations } = await schemaObjects(q, database, schemas);
        facts.schemas.push(...owners);
        facts.relations.push(...relations);
        facts.schemaAcl.push(
          ...nsp.rows.map((r: { nspname: string; rolname: string; privilege_type: string }): AclRow => ({
            database,
            schema: r.nspname,
            role: r.rolname,
            privilege: r.privilege_type,
          })),
        );
        facts.relationAcl.push(
          ...rel.rows.map((r: { nspname: string; relname: string; is_seq: boolean; rolname: string; privilege_type: string }): AclRow => ({
            database,
            schema: r.nspname,
            relation: r.relname,
            kind: r.is_seq ? 'sequence' : 'table',
            role: r.rolname,
            privilege: r.privilege_type,
          })),
        );
        facts.columnAcl.push(
          ...col.rows.map((r: { nspname: string; relname: string; rolname: string; privilege_type: string }): AclRow => ({
            database,
            schema: r.nspname,
            relation: r.relname,
            kind: 'table',
            role: r.rolname,
            privilege: r.privilege_type,
          })),
        );
        facts.defaultAcl.push(
          ...def.rows.map((r: { nspname: string; owner: string; defaclobjtype: string; rolname: string; privilege_type: string }): DefaultAclRow => ({
            database,
            schema: r.nspname,
            owner: r.owner,
            objtype: r.defaclobjtype === 'S' ? 'sequence' : 'table',
            role: r.rolname,
            privilege: r.privilege_type,
          })),
        );
      },
      false,
    );
  }

  async function schemaObjects(q: Query, database: string, schemas: string[]) {
    const own = await q(`SELECT nspname, pg_get_userbyid(nspowner) AS owner FROM pg_namespace WHERE nspname = ANY($1::text[])`, [schemas]);
    const rels = await q(
      `SELECT n.nspname, c.relname, c.relkind = 'S' AS is_seq, pg_get_userbyid(c.relowner) AS owner, t.relname AS owned_by
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_depend dep ON c.relkind = 'S' AND dep.classid = 'pg_class'::regclass AND dep.objid = c.oid
                                AND dep.refclassid = 'pg_class'::regclass AND dep.deptype IN ('a','i')
         LEFT JOIN pg_class t ON t.oid = dep.refobjid
        WHERE c.relkind IN ('r','p','v','m','f','S') AND n.nspname = ANY($1::text[])`,
      [schemas],
    );
    return {
      owners: own.rows.map((r: { nspname: string; owner: string }) => ({ database, schema: r.nspname, owner: r.owner })),
      relations: rels.rows.map((r: { nspname: string; relname: string; is_seq: boolean; owner: string; owned_by: string | null }): RelationRow => ({
        database,
        schema: r.nspname,
        name: r.relname,
        kind: r.is_seq ? 'sequence' : 'table',
        owner: r.owner,
        ownedBy: r.owned_by,
      })),
    };
  }

  // ---------------------------------------------------------------- execute

  async function execute(change: Change): Promise<ExecuteResult> {
    try {
      switch (change.kind) {
        case 'role':
          if (change.action === 'delete') return await dropRole(change.before!.name, change.address);
          return await ensureRole(change.after!.name, change.after!.attrs as unknown as RoleAttrs, change.address);
        case 'membership': {
          const r = (change.after ?? change.before)!;
          const { group, member } = r.attrs as { group: string; member: string };
          if (change.action === 'delete') return await revokeMembership(group, member, change.address);
          if (change.action === 'replace' && change.before) {
            const b = change.before.attrs as { group: string; member: string };
            await revokeMembership(b.group, b.member, change.address);
          }
          return await grantMembership(group, member, change.address);
        }
        case 'connect': {
          const r = (change.after ?? change.before)!;
          const { role, database } = r.attrs as { role: string; database: string };
          const privileges = change.action === 'delete' ? [] : (change.after!.attrs.privileges as string[]);
          if (change.action === 'replace' && change.before) {
            const b = change.before.attrs as { role: string; database: string };
            await setDatabasePrivileges(b.role, b.database, [], change.address);
          }
          return await setDatabasePrivileges(role, database, privileges, change.address);
        }
        case 'grant': {
          if (change.before && change.action !== 'update') await convergeGrant(change.before.attrs as unknown as GrantAttrs, false, change.address);
          if (change.after) await convergeGrant(change.after.attrs as unknown as GrantAttrs, true, change.address);
          return {};
        }
        case 'password':
          if (change.action === 'delete') return await clearPassword(change.before!.name, textOf(change.before!.meta?.credentialId));
          return await setPassword(change.after!.name, change.address);
        default:
          throw new BackendError(`${name}: unknown resource kind ${change.kind}`, name, 'unknown-kind', false, change.address);
      }
    } catch (e) {
      return fail(e, change.address);
    }
  }

  async function ensureRole(role: string, attrs: RoleAttrs, address: string): Promise<ExecuteResult> {
    await admin(async (q) => {
      const live = await liveRole(q, role);
      const options = `${attrs.login ? 'LOGIN' : 'NOLOGIN'} ${validUntilSql(attrs.validUntil)}`;
      if (!live) {
        // Had someone made it meanwhile, CREATE fails and the retry finds it (and refuses it if unmarked).
        await atomic(q, [`CREATE ROLE ${ident(role)} WITH ${options}`, commentSql(role, marker())]);
        return;
      }
      if (!live.comment) throw notOurs(role, address);
      // Reset only flags that are set: PostgreSQL refuses SUPERUSER-related options from non-superusers.
      const resets = ROLE_FLAGS.filter(([, f]) => live.flags.includes(f)).map(([, , reset]) => reset);
      if (live.flags.includes('NOINHERIT')) resets.push('INHERIT');
      await q(`ALTER ROLE ${ident(role)} WITH ${options}${resets.length ? ` ${resets.join(' ')}` : ''}`);
      // A role made before installations had ids takes this one's on its first change.
      if (opts.installation && live.comment.installation === undefined) await q(commentSql(role, { ...live.comment, ...marker() }));
      // Open sessions keep working after NOLOGIN: a login taken away ends them too.
      if (live.login && !attrs.login)
        await q('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usesysid = $1::oid AND pid <> pg_backend_pid()', [live.oid]);
    }, false);
    return {};
  }

  async function grantMembership(group: string, member: string, address: string): Promise<ExecuteResult> {
    await admin(async (q) => {
      const live = await liveRoles(q, [group, member]);
      const g = live.get(group);
      const m = live.get(member);
      if (!g || !m)
        throw new BackendError(`${name}: cannot add ${member} to ${group}: role ${!g ? group : member} does not exist`, name, 'missing-role', false, address);
      if (!g.comment) throw notOurs(group, address);
      if (!m.comment) throw notOurs(member, address);
      await q(`GRANT ${ident(group)} TO ${ident(member)}`);
      if ((await grantorsOf(q, g.oid, m.oid)).length === 0) {
        throw new BackendError(
          `${name}: ${address}: GRANT ${ident(group)} TO ${ident(member)} did not take effect; the connecting role needs CREATEROLE or ADMIN OPTION on ${group}`,
          name,
          'not-granted',
          false,
          address,
        );
      }
    });
    return {};
  }

  async function revokeMembership(group: string, member: string, address: string): Promise<ExecuteResult> {
    await admin(async (q) => {
      const live = await liveRoles(q, [group, member]);
      const g = live.get(group);
      const m = live.get(member);
      if (!g || !m) return; // already gone
      await q(`REVOKE ${ident(group)} FROM ${ident(member)}`);
      // From PostgreSQL 16 on, a REVOKE removes only the membership its own role granted.
      const left = await grantorsOf(q, g.oid, m.oid);
      if (left.length) {
        throw new BackendError(
          `${name}: ${address}: ${member} is still a member of ${group}, granted by ${left.join(', ')}: a REVOKE removes only what the connecting role granted. As ${left.join(' or ')} or a superuser, run: REVOKE ${ident(group)} FROM ${ident(member)}; then apply again.`,
          name,
          'not-revoked',
          false,
          address,
        );
      }
    });
    return {};
  }

  async function grantorsOf(q: Query, groupOid: string, memberOid: string): Promise<string[]> {
    const r = await q('SELECT pg_get_userbyid(grantor) AS grantor FROM pg_auth_members WHERE roleid = $1::oid AND member = $2::oid', [groupOid, memberOid]);
    return sortedUnique((r.rows as { grantor: string }[]).map((x) => x.grantor));
  }

  async function databaseExists(q: Query, database: string): Promise<boolean> {
    return (await q('SELECT 1 FROM pg_database WHERE datname = $1', [database])).rowCount === 1;
  }

  async function setDatabasePrivileges(role: string, database: string, privileges: string[], address: string): Promise<ExecuteResult> {
    await admin(async (q) => {
      const live = await liveRole(q, role);
      const exists = await databaseExists(q, database);
      if (privileges.length === 0 && (!live || !exists)) return; // already gone
      if (!live) throw new BackendError(`${name}: role ${role} does not exist`, name, 'missing-role', false, address);
      if (!live.comment) throw notOurs(role, address);
      if (!exists) throw new BackendError(`${name}: database ${database} does not exist`, name, 'missing-database', false, address);
      await atomic(q, [
        lockSql(`database:${database}`),
        `REVOKE ALL ON DATABASE ${ident(database)} FROM ${ident(role)}`,
        ...(privileges.length ? [`GRANT ${privileges.join(', ')} ON DATABASE ${ident(database)} TO ${ident(role)}`] : []),
      ]);
      const acl = await q(
        `SELECT a.privilege_type AS privilege, pg_get_userbyid(a.grantor) AS grantor
           FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a
          WHERE d.datname = $1 AND a.grantee = $2::oid`,
        [database, live.oid],
      );
      const on = { kind: 'DATABASE', object: ident(database), label: `database ${database}` };
      const have = (acl.rows as { privilege: string; grantor: string }[]).map((r): Held => ({ ...on, privilege: r.privilege, grantor: r.grantor }));
      await confirm(
        q,
        address,
        role,
        shortfall(
          privileges.map((privilege): Held => ({ ...on, privilege })),
          have,
        ),
      );
    });
    return {};
  }

  /**
   * Makes the privileges that `attrs.level` adds equal `attrs` (want) or removes them (!want), in
   * one transaction: revoke the level's privileges everywhere in the schema, then grant the wanted
   * ones. Other sessions never see the intermediate state.
   */
  async function convergeGrant(attrs: GrantAttrs, want: boolean, address: string): Promise<void> {
    const { role, database, schema, level } = attrs;
    const exists = await admin(async (q) => ({ db: await databaseExists(q, database), role: await liveRole(q, role) }), false);
    if (!want && (!exists.db || !exists.role)) return; // already gone
    if (!exists.db) throw new BackendError(`${name}: database ${database} does not exist`, name, 'missing-database', false, address);
    if (!exists.role) throw new BackendError(`${name}: role ${role} does not exist`, name, 'missing-role', false, address);
    if (!exists.role.comment) throw notOurs(role, address);

    try {
      await withClient(database, async (q) => {
        await lock(q, `schema:${database}.${schema}`);
        const s = await q('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
        if (s.rowCount === 0) {
          if (!want) return;
          throw new BackendError(`${name}: schema ${schema} does not exist in database ${database}`, name, 'missing-schema', false, address);
        }
        const { owners: schemaOwners, relations } = await schemaObjects(q, database, [schema]);
        const candidates = sortedUnique([schemaOwners[0]!.owner, ...relations.map((r) => r.owner)]);
        const managed = new Set(
          (await q(`SELECT rolname, shobj_description(oid, 'pg_authid') AS comment FROM pg_roles WHERE rolname = ANY($1::text[])`, [candidates])).rows
            .filter((r: { comment: string | null }) => isDatagrantRole(r.comment))
            .map((r: { rolname: string }) => r.rolname),
        );
        const owners = defaultOwners(
          schemaOwners[0]!.owner,
          relations.map((r) => r.owner),
          managed,
        );
        // Defaults someone set for other owners are revoked too.
        const defOwners = (
          await q(
            `SELECT DISTINCT pg_get_userbyid(d.defaclrole) AS owner
               FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace CROSS JOIN LATERAL aclexplode(d.defaclacl) a
              WHERE n.nspname = $1 AND a.grantee = $2::oid`,
            [schema, exists.role!.oid],
          )
        ).rows.map((r: { owner: string }) => r.owner);

        const tablePrivs = TABLE_PRIVILEGES.filter((p) => levelOfTablePrivilege(p) === level);
        const seqPrivs = SEQUENCE_PRIVILEGES.filter((p) => levelOfSequencePrivilege(p) === level);
        const schemaPrivs = SCHEMA_PRIVILEGES.filter((p) => levelOfSchemaPrivilege(p) === level);
        const sch = ident(schema);
        const r = ident(role);

        if (schemaPrivs.length) await q(`REVOKE ${schemaPrivs.join(', ')} ON SCHEMA ${sch} FROM ${r}`);
        // A table-level REVOKE also revokes the same privilege granted on single columns.
        if (tablePrivs.length) await q(`REVOKE ${tablePrivs.join(', ')} ON ALL TABLES IN SCHEMA ${sch} FROM ${r}`);
        if (seqPrivs.length) await q(`REVOKE ${seqPrivs.join(', ')} ON ALL SEQUENCES IN SCHEMA ${sch} FROM ${r}`);
        for (const o of sortedUnique([...owners, ...defOwners])) {
          if (tablePrivs.length) await q(`ALTER DEFAULT PRIVILEGES FOR ROLE ${ident(o)} IN SCHEMA ${sch} REVOKE ${tablePrivs.join(', ')} ON TABLES FROM ${r}`);
          if (seqPrivs.length) await q(`ALTER DEFAULT PRIVILEGES FOR ROLE ${ident(o)} IN SCHEMA ${sch} REVOKE ${seqPrivs.join(', ')} ON SEQUENCES FROM ${r}`);
        }
        if (want) await grantLevel(q, attrs, relations, owners, address);

        const acl = await q(
          `SELECT 'SCHEMA' AS kind, NULL::text AS relation, NULL::text AS "column", a.privilege_type AS privilege, pg_get_userbyid(a.grantor) AS grantor
             FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a
            WHERE n.nspname = $1 AND a.grantee = $2::oid
           UNION ALL
           SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.relname::text, NULL, a.privilege_type, pg_get_userbyid(a.grantor)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace CROSS JOIN LATERAL aclexplode(c.relacl) a
            WHERE n.nspname = $1 AND c.relkind IN ('r','p','v','m','f','S') AND a.grantee = $2::oid
           UNION ALL
           SELECT 'COLUMN', c.relname::text, att.attname::text, a.privilege_type, pg_get_userbyid(a.grantor)
             FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             CROSS JOIN LATERAL aclexplode(att.attacl) a
            WHERE n.nspname = $1 AND att.attacl IS NOT NULL AND a.grantee = $2::oid`,
          [schema, exists.role!.oid],
        );
        const found = schemaGrantShortfall({
          schema,
          levelPrivileges: { schema: schemaPrivs, tables: tablePrivs, sequences: seqPrivs },
          privileges: want ? attrs.privileges : undefined,
          scope: attrs.tables,
          relations,
          facts: acl.rows as SchemaAclFact[],
        });
        await confirm(q, address, role, found);
      });
    } catch (e) {
      if (!want && (e as { code?: string }).code === '3D000') return; // database dropped meanwhile
      throw e;
    }
  }

  /** The GRANTs of one level's privileges on a schema, its tables and sequences, and its defaults. */
  async function grantLevel(q: Query, attrs: GrantAttrs, relations: RelationRow[], owners: string[], address: string): Promise<void> {
    const { role, database, schema } = attrs;
    const p = attrs.privileges;
    const sch = ident(schema);
    const r = ident(role);
    if (p.schema.length) await q(`GRANT ${p.schema.join(', ')} ON SCHEMA ${sch} TO ${r}`);
    if (attrs.tables === '*') {
      if (p.tables.length) await q(`GRANT ${p.tables.join(', ')} ON ALL TABLES IN SCHEMA ${sch} TO ${r}`);
      if (p.sequences.length) await q(`GRANT ${p.sequences.join(', ')} ON ALL SEQUENCES IN SCHEMA ${sch} TO ${r}`);
    } else {
      const missing = attrs.tables.filter((t) => !relations.some((rel) => rel.kind === 'table' && rel.name === t));
      if (missing.length) {
        throw new BackendError(
          `${name}: table${missing.length > 1 ? 's' : ''} ${missing.map((t) => `${schema}.${t}`).join(', ')} not found in database ${database}`,
          name,
          'missing-table',
          false,
          address,
        );
      }
      if (p.tables.length) await q(`GRANT ${p.tables.join(', ')} ON TABLE ${attrs.tables.map((t) => qualified(schema, t)).join(', ')} TO ${r}`);
      const seqs = relations
        .filter((rel) => rel.kind === 'sequence' && rel.ownedBy !== null && (attrs.tables as string[]).includes(rel.ownedBy))
        .map((rel) => rel.name);
      if (p.sequences.length && seqs.length)
        await q(
          `GRANT ${p.sequences.join(', ')} ON SEQUENCE ${seqs
            .sort()
            .map((sq) => qualified(schema, sq))
            .join(', ')} TO ${r}`,
        );
    }
    for (const o of owners) {
      if (p.defaultTables.length)
        await q(`ALTER DEFAULT PRIVILEGES FOR ROLE ${ident(o)} IN SCHEMA ${sch} GRANT ${p.defaultTables.join(', ')} ON TABLES TO ${r}`);
      if (p.defaultSequences.length)
        await q(`ALTER DEFAULT PRIVILEGES FOR ROLE ${ident(o)} IN SCHEMA ${sch} GRANT ${p.defaultSequences.join(', ')} ON SEQUENCES TO ${r}`);
    }
  }

  async function setPassword(role: string, address: string): Promise<ExecuteResult> {
    const password = generatePassword();
    const verifier = await scramVerifier(password);
    const credentialId = randomUUID();
    const createdAt = new Date().toISOString();
    const database = await admin(async (q) => {
      const live = await liveRole(q, role);
      if (!live) throw new BackendError(`${name}: role ${role} does not exist`, name, 'missing-role', false, address);
      if (!live.comment) throw notOurs(role, address);
      if (!live.login) throw new BackendError(`${name}: role ${role} cannot log in; a password would be useless`, name, 'not-login', false, address);
      // The verifier and the comment naming its credential id change together or not at all.
      await atomic(q, [
        `ALTER ROLE ${ident(role)} PASSWORD ${literal(verifier)}`,
        commentSql(role, { ...live.comment, ...marker(), credential: credentialId, createdAt, verifier: verifierFingerprint(verifier) }),
      ]);
      // The database to connect to: the first one the role (or one of its groups) may connect to.
      const db = await q(
        `SELECT d.datname FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a
          WHERE a.privilege_type = 'CONNECT'
            AND (a.grantee = $1::oid OR a.grantee IN (SELECT roleid FROM pg_auth_members WHERE member = $1::oid))
          ORDER BY 1 LIMIT 1`,
        [live.oid],
      );
      return (db.rows[0] as { datname: string } | undefined)?.datname ?? adminDatabase;
    }, false);
    return {
      secret: { username: role, password, host: base.hostname, port: base.port || '5432', database },
      credential: { credentialId, createdAt },
      meta: { credentialId, createdAt },
    };
  }

  /** Clears the password `credentialId` names, and only that one: a newer password is left alone. */
  async function clearPassword(role: string, credentialId: string): Promise<ExecuteResult> {
    await admin(async (q) => {
      const live = await liveRole(q, role);
      if (!live || !live.comment) return; // gone, or not ours to touch
      if (credentialId && live.comment.credential !== undefined && live.comment.credential !== credentialId) return;
      await atomic(q, [`ALTER ROLE ${ident(role)} PASSWORD NULL`, commentSql(role, marker())]);
    }, false);
    return {};
  }

  /**
   * Deprovision: no new logins, end open sessions, revoke everything, drop. Owned objects stop it:
   * datagrant never drops or reassigns data.
   */
  async function dropRole(role: string, address: string): Promise<ExecuteResult> {
    const state = await admin(async (q) => {
      const live = await liveRole(q, role);
      if (!live) return undefined;
      if (!live.comment) throw notOurs(role, address);
      const deps = await q(
        `SELECT s.dbid::int8::text AS dbid, d.datname, s.classid::int8::text AS classid, s.objid::int8::text AS objid, s.objsubid, s.deptype
           FROM pg_shdepend s LEFT JOIN pg_database d ON d.oid = s.dbid
          WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = $1::oid`,
        [live.oid],
      );
      return { live, deps: deps.rows as { dbid: string; datname: string | null; classid: string; objid: string; objsubid: number; deptype: string }[] };
    });
    if (!state) return {};

    // Lock out first, whatever happens next: no new logins, and open sessions (which keep their
    // privileges until they end) are ended.
    await admin((q) => q(`ALTER ROLE ${ident(role)} NOLOGIN`), false);
    await admin(
      (q) => q('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usesysid = $1::oid AND pid <> pg_backend_pid()', [state.live.oid]),
      false,
    );

    const owned = state.deps.filter((d) => d.deptype === 'o');
    if (owned.length) {
      const names: string[] = [];
      for (const o of owned) {
        const where = o.dbid === '0' ? adminDatabase : o.datname;
        if (!where) continue;
        const d = await withClient(where, (q) => q('SELECT pg_describe_object($1::oid, $2::oid, $3) AS what', [o.classid, o.objid, o.objsubid]), false);
        names.push(`${(d.rows[0] as { what: string }).what}${o.dbid === '0' ? '' : ` in database ${where}`}`);
      }
      throw new BackendError(
        `${name}: role ${role} owns ${names.sort().join(', ')}; its login is disabled and its sessions ended, but datagrant does not drop or reassign data — move or drop ${owned.length > 1 ? 'them' : 'it'} by hand (REASSIGN OWNED BY ${role} TO …), then apply again`,
        name,
        'owns-objects',
        false,
        address,
      );
    }

    // Nothing is owned, so DROP OWNED only revokes: privileges and default privileges per database.
    const databases = sortedUnique(state.deps.filter((d) => d.dbid !== '0' && d.datname).map((d) => d.datname!));
    // DROP OWNED would also drop anything the role came to own since the check above: check
    // again in the same transaction, just before it.
    const dropOwned = async (q: Query, where: string) => {
      const owns = await q(
        `SELECT count(*)::int AS n FROM pg_shdepend
          WHERE refclassid = 'pg_authid'::regclass AND refobjid = $1::oid AND deptype = 'o'
            AND dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))`,
        [state.live.oid],
      );
      if ((owns.rows[0] as { n: number }).n > 0) {
        throw new BackendError(
          `${name}: role ${role} came to own objects in database ${where} while being removed; nothing was dropped — apply again for details`,
          name,
          'owns-objects',
          true,
          address,
        );
      }
      await q(`DROP OWNED BY ${ident(role)}`);
    };
    for (const database of databases) {
      try {
        await withClient(database, (q) => dropOwned(q, database));
      } catch (e) {
        if ((e as { code?: string }).code !== '3D000') throw e;
      }
    }
    await admin(async (q) => {
      await lock(q, `role:${role}`);
      if (!(await liveRole(q, role))) return;
      await dropOwned(q, adminDatabase); // shared objects: database privileges
      await q(`DROP ROLE ${ident(role)}`);
    });
    return {};
  }

  return {
    name,
    type: 'postgres',
    read,
    execute,
    stats: () => ({ ...stats }),
    async close() {
      const all = [...pools.values()];
      pools.clear();
      await Promise.all(all.map((p) => p.end()));
    },
  } satisfies Backend;
}

function sortedUnique(xs: string[]): string[] {
  return [...new Set(xs)].sort();
}
