// The one table that says what an access level means in PostgreSQL. Levels are cumulative
// (write = read + …, admin = write + …). Each privilege belongs to exactly one level, the lowest
// that includes it, so the grant resources of one role on one schema (one per level up to the
// granted one) hold disjoint privileges: revoking one never takes away another's.
import type { Level } from '../core/types.js';

export type TablePrivilege = 'SELECT' | 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE' | 'REFERENCES' | 'TRIGGER';
export type SequencePrivilege = 'USAGE' | 'SELECT' | 'UPDATE';
export type SchemaPrivilege = 'USAGE' | 'CREATE';
export type DatabasePrivilege = 'CONNECT' | 'TEMPORARY' | 'CREATE';

export interface PgPrivileges {
  database: readonly DatabasePrivilege[];
  schema: readonly SchemaPrivilege[];
  /** On the dataset's tables (and views); with all tables, also as default privileges. */
  tables: readonly TablePrivilege[];
  /** On the sequences of the dataset's tables; with all tables, also as default privileges. */
  sequences: readonly SequencePrivilege[];
}

const READ: PgPrivileges = { database: ['CONNECT'], schema: ['USAGE'], tables: ['SELECT'], sequences: [] };

const WRITE: PgPrivileges = {
  ...READ,
  tables: [...READ.tables, 'INSERT', 'UPDATE', 'DELETE'],
  sequences: ['USAGE', 'SELECT'],
};

const ADMIN: PgPrivileges = {
  ...WRITE,
  tables: [...WRITE.tables, 'TRUNCATE', 'REFERENCES', 'TRIGGER'],
};

export const PG_LEVELS: Record<Level, PgPrivileges> = { read: READ, write: WRITE, admin: ADMIN };

const ORDER: readonly Level[] = ['read', 'write', 'admin'];

/** The privileges a level adds to the one below it: what its own grant resource holds. */
export function levelIncrement(level: Level): PgPrivileges {
  const i = ORDER.indexOf(level);
  const below = i > 0 ? PG_LEVELS[ORDER[i - 1]!] : undefined;
  const minus = <T extends string>(a: readonly T[], b: readonly T[] | undefined) => a.filter((p) => !b?.includes(p));
  const own = PG_LEVELS[level];
  return {
    database: minus(own.database, below?.database),
    schema: minus(own.schema, below?.schema),
    tables: minus(own.tables, below?.tables),
    sequences: minus(own.sequences, below?.sequences),
  };
}

/** Levels up to and including `level`. */
export const levelsUpTo = (level: Level): Level[] => ORDER.slice(0, ORDER.indexOf(level) + 1);

/**
 * Which level's grant resource a privilege found in the catalogs belongs to. Privileges outside
 * every level (CREATE on a schema, UPDATE on a sequence) are attributed to a level anyway so that
 * read reports them there and the next apply revokes them.
 */
export function levelOfTablePrivilege(p: TablePrivilege): Level {
  return ORDER.find((l) => levelIncrement(l).tables.includes(p))!;
}
export function levelOfSequencePrivilege(p: SequencePrivilege): Level {
  return ORDER.find((l) => levelIncrement(l).sequences.includes(p)) ?? 'write';
}
export function levelOfSchemaPrivilege(p: SchemaPrivilege): Level {
  return ORDER.find((l) => levelIncrement(l).schema.includes(p)) ?? 'read';
}
