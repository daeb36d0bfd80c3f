// Row shapes shared by the SQLite and PostgreSQL stores: the two keep the same columns.
import type { CredentialRow, SessionRecord } from './store.js';

export interface CredRow {
  address: string;
  credential_id: string;
  backend: string;
  principal: string;
  state: 'current' | 'retiring';
  created_at: string;
  retire_at: string | null;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

export function toCredential(r: CredRow): CredentialRow {
  return {
    address: r.address,
    credentialId: r.credential_id,
    backend: r.backend,
    principal: r.principal,
    state: r.state,
    createdAt: r.created_at,
    ...(r.retire_at ? { retireAt: r.retire_at } : {}),
  };
}

/** Associated data of a sealed secret: a ciphertext only opens in its own row. */
export const credentialAad = (address: string, credentialId: string) => `${address}#${credentialId}`;

export interface SessionRow {
  backend: string;
  principal: string;
  target: string;
  last_issued_at: string;
  expires_at: string;
}

export function toSession(r: SessionRow): SessionRecord {
  return { backend: r.backend, principal: r.principal, target: r.target, lastIssuedAt: r.last_issued_at, expiresAt: r.expires_at };
}

/**
 * One spelling for every instant the stores compare as text (`2026-11-30T12:00:00.000Z`), so that
 * text order is time order. Refuses what is not an instant.
 */
export function instant(iso: string): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) throw new TypeError(`not an ISO instant: ${JSON.stringify(iso)}`);
  return new Date(t).toISOString();
}
