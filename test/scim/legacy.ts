// SCIM tables as written by versions that did not store principal names, to prove the upgrade.
import Database from 'better-sqlite3';
import type { LegacyUser } from './store-contract.js';

const COLUMNS = `
  id TEXT PRIMARY KEY,
  unique_key TEXT NOT NULL UNIQUE,
  created TEXT NOT NULL,
  last_modified TEXT NOT NULL,
  version INTEGER NOT NULL,
  attrs TEXT NOT NULL`;

export const LEGACY_SQLITE_DDL = `
CREATE TABLE scim_users (${COLUMNS});
CREATE INDEX scim_users_order ON scim_users (created, id);
CREATE TABLE scim_groups (${COLUMNS});
CREATE INDEX scim_groups_order ON scim_groups (created, id);
`;

export function legacyPgDdl(schema: string): string {
  return ['scim_users', 'scim_groups']
    .map(
      (t) => `
CREATE TABLE ${schema}.${t} (
  id TEXT COLLATE "C" PRIMARY KEY,
  unique_key TEXT COLLATE "C" NOT NULL UNIQUE,
  created TEXT COLLATE "C" NOT NULL,
  last_modified TEXT NOT NULL,
  version BIGINT NOT NULL,
  attrs JSONB NOT NULL
);
CREATE INDEX ${t}_order ON ${schema}.${t} (created, id);`,
    )
    .join('\n');
}

/** Rows of `users` for an INSERT INTO scim_users (id, unique_key, created, last_modified, version, attrs). */
export const legacyRows = (users: LegacyUser[]) =>
  users.map((u) => [u.id, u.userName.toLowerCase(), u.created, u.created, 1, JSON.stringify({ userName: u.userName, active: u.active ?? true })] as const);

/** An SQLite file holding `users` in the legacy tables. */
export function writeLegacySqlite(file: string, users: LegacyUser[]): void {
  const db = new Database(file);
  db.exec(LEGACY_SQLITE_DDL);
  const insert = db.prepare('INSERT INTO scim_users (id, unique_key, created, last_modified, version, attrs) VALUES (?, ?, ?, ?, ?, ?)');
  for (const row of legacyRows(users)) insert.run(...row);
  db.close();
}
