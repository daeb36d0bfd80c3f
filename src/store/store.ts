// What datagrant remembers between runs: encrypted credentials, what it last applied (to tell
// drift from spec changes), the journal of intents and outcomes, the audit chain and the lock.
import type { KnownCredential } from '../backends/backend.js';
import type { Change } from '../core/types.js';

export interface CredentialRow extends KnownCredential {
  backend: string;
  /** Principal the credential belongs to (the spec's name). */
  principal: string;
}

export interface JournalEntry {
  id: number;
  runId: string;
  address: string;
  action: string;
  startedAt: string;
  finishedAt: string | null;
  outcome: 'pending' | 'ok' | 'failed' | 'interrupted';
  detail: string | null;
}

export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  /** What happened: `change.create`, `credential.issue`, `credential.reveal`, … */
  event: string;
  address: string | null;
  outcome: string;
  detail: string | null;
  prevHash: string;
  hash: string;
}

export type AuditInput = Pick<AuditEntry, 'actor' | 'event' | 'address' | 'outcome' | 'detail'>;

export interface AuditVerdict {
  ok: boolean;
  entries: number;
  /** The first entry that does not fit the chain, and why. */
  firstBad?: { seq: number; reason: string };
}

export interface LockHolder {
  holder: string;
  pid: number;
  host: string;
  acquiredAt: string;
}

export interface StateStore {
  credentials(): Promise<CredentialRow[]>;
  /**
   * Store a newly issued credential as the current one for its address. Any previous current
   * credential becomes `retiring` until `retireAt`, or is erased when no `retireAt` is given.
   * One transaction: there is never a moment with two current credentials or none stored.
   */
  saveCredential(row: Omit<CredentialRow, 'state' | 'retireAt'>, secret: Record<string, string>, retireAt?: string): Promise<void>;
  /** The current credential with its secret, for `credentials show --reveal` and `export`. */
  revealCredential(address: string): Promise<{ row: CredentialRow; secret: Record<string, string> } | undefined>;
  eraseCredential(address: string, credentialId: string): Promise<void>;
  retireCredential(address: string, credentialId: string, retireAt: string): Promise<void>;

  applied(): Promise<Record<string, string>>;
  setApplied(address: string, hash: string | null): Promise<void>;

  journalBegin(runId: string, change: Change, at: string): Promise<number>;
  journalEnd(id: number, outcome: 'ok' | 'failed', at: string, detail?: string): Promise<void>;
  /** Entries left `pending` by a run that died; marks them `interrupted` and returns them. */
  recoverJournal(): Promise<JournalEntry[]>;
  journal(limit?: number): Promise<JournalEntry[]>;

  audit(entry: AuditInput, at: string): Promise<void>;
  auditEntries(): Promise<AuditEntry[]>;
  verifyAudit(): Promise<AuditVerdict>;

  /** Take the state lock or throw LockError naming the holder. A dead holder's lock is taken over. */
  acquireLock(holder: string, waitMs?: number): Promise<void>;
  releaseLock(): Promise<void>;
  lockHolder(): Promise<LockHolder | undefined>;

  close(): Promise<void>;
}
