// Row shapes shared by the SQLite and PostgreSQL stores: the two keep the same columns.
import type { CredentialRow } from './store.js';

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
