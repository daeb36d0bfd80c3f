// The one table that says what an access level means in MariaDB/MySQL. Levels are cumulative
// (write = read + …, admin = write + …), and each privilege belongs to exactly one level, the
// lowest that includes it: the grant resources of one role on one database (one per level up to
// the granted one) hold disjoint privileges, so revoking one never takes away another's.
//
// A dataset without tables is granted `ON db.*`, which MariaDB applies to tables created later
// too (no default privileges to manage, unlike PostgreSQL); with tables, `ON db.t` for each one.
import type { Level } from '../core/types.js';

/** The privileges the table uses, as GRANT spells them; each is valid on a database and on a table. */
export type MysqlPrivilege =
  'SELECT' | 'INSERT' | 'UPDATE' | 'DELETE' | 'CREATE' | 'DROP' | 'ALTER' | 'INDEX' | 'REFERENCES' | 'TRIGGER' | 'CREATE VIEW' | 'SHOW VIEW';

const READ: readonly MysqlPrivilege[] = ['SELECT'];

const WRITE: readonly MysqlPrivilege[] = [...READ, 'INSERT', 'UPDATE', 'DELETE'];

/**
 * The dataset's tables as their owner would manage them: change their shape, index, constrain and
 * view them, and empty them (MariaDB's TRUNCATE needs DROP). On a whole database, DROP also lets
 * the holder drop the database itself.
 */
const ADMIN: readonly MysqlPrivilege[] = [...WRITE, 'CREATE', 'DROP', 'ALTER', 'INDEX', 'REFERENCES', 'TRIGGER', 'CREATE VIEW', 'SHOW VIEW'];

export const MYSQL_LEVELS: Record<Level, readonly MysqlPrivilege[]> = { read: READ, write: WRITE, admin: ADMIN };

const ORDER: readonly Level[] = ['read', 'write', 'admin'];

/** The privileges a level adds to the one below it: what its own grant resource holds. */
export function mysqlLevelIncrement(level: Level): MysqlPrivilege[] {
  const i = ORDER.indexOf(level);
  const below = i > 0 ? MYSQL_LEVELS[ORDER[i - 1]!] : [];
  return MYSQL_LEVELS[level].filter((p) => !below.includes(p));
}

/** Levels up to and including `level`. */
export const mysqlLevelsUpTo = (level: Level): Level[] => ORDER.slice(0, ORDER.indexOf(level) + 1);

/**
 * Which level's grant resource a privilege found on the server belongs to. One outside every
 * level (EXECUTE, EVENT, GRANT OPTION, LOCK TABLES, …) is attributed to admin anyway, so that read
 * reports it there and the next apply revokes it.
 */
export function mysqlLevelOf(privilege: string): Level {
  return ORDER.find((l) => (mysqlLevelIncrement(l) as string[]).includes(privilege)) ?? 'admin';
}

/**
 * The access a privilege held on a dataset gives (effective access, issue 13): the level whose
 * increment holds it, and admin for GRANT OPTION (its holder hands the dataset's privileges to
 * others). Any other (EXECUTE, LOCK TABLES, …) reaches none of the dataset's rows or tables by
 * itself: undefined, unlike `mysqlLevelOf`, which attributes it to admin so that apply revokes it.
 */
export function mysqlAccessLevel(privilege: string): Level | undefined {
  if (privilege === 'GRANT OPTION') return 'admin';
  return ORDER.find((l) => (mysqlLevelIncrement(l) as string[]).includes(privilege));
}
