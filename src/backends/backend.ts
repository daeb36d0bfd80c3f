// The narrow contract every backend driver implements. A driver is the only code that talks to
// an identity system. Contract (checked by test/contract/backend-contract.ts):
//  - `read` returns only objects inside datagrant's ownership boundary (IAM path, role marker);
//  - `execute` performs exactly one change, and is idempotent: deleting what is already gone
//    succeeds, creating what already exists in the desired shape succeeds;
//  - a credential created by `execute` is returned in `secret` and nowhere else: never logged,
//    never in an error message;
//  - when issuing a credential fails ambiguously (a 5xx or a dropped connection, after which the
//    credential may exist without us holding its secret), the driver removes what that attempt
//    may have created before throwing, so the retry decorator may repeat the change.
import type { ActualState, Change, Json } from '../core/types.js';
import type { AccessQuery, AccessReading } from '../model/access.js';
import type { KnownCredential } from '../model/credential.js';

export type { KnownCredential };

export interface ReadOptions {
  /** Credentials the store holds, so the driver can tell its own keys from foreign ones. */
  credentials: KnownCredential[];
  /** Read every credential exactly (one call per user) rather than from a bulk summary. */
  exact?: boolean;
  /**
   * The plan needs each credential's last use (`settings.expireUnused`): an exact read asks for it
   * per key; otherwise it comes with the bulk summary at no extra cost.
   */
  usage?: boolean;
}

export interface ExecuteResult {
  /** Facts the backend assigned (key id, creation date). */
  meta?: { [key: string]: Json };
  /** Credential material to store encrypted at once. Never logged. */
  secret?: Record<string, string>;
  /** For a new credential: its id and creation time, to record in the store. */
  credential?: { credentialId: string; createdAt: string };
  /**
   * For a new credential: how long the backend took to accept it (IAM is eventually consistent; a
   * key is handed out only once it works, issue 12 item 8). Absent where nothing was waited for.
   */
  readyMs?: number;
  /** False when the backend still refused the new credential when the bounded wait ran out. */
  ready?: boolean;
}

export interface BackendStats {
  /** Requests sent to the identity system since the driver was made (retries included). */
  requests: number;
  retries: number;
}

/** One short-lived session (issue 12), asked of a driver by the session broker (src/app/sessions.ts). */
export interface SessionIssueRequest {
  /** The principal's spec name: AWS SourceIdentity and RoleSessionName; the base of a PostgreSQL login's name. */
  principal: string;
  /** What the session runs as, from the compiler's `sessionTarget`: an AWS role name; a PostgreSQL principal role. */
  target: string;
  /** Already capped by the broker (maxSession, the earliest grant expiry). AWS raises it to STS's 900 s floor. */
  durationSeconds: number;
}

export interface IssuedBackendSession {
  /** AWS: accessKeyId, secretAccessKey, sessionToken. PostgreSQL: user, password, host, port, database. Never logged. */
  secret: Record<string, string>;
  /** ISO instant the backend ends the session. */
  expiresAt: string;
  /** What the session log records: the AWS role name; the PostgreSQL login role's name. */
  target: string;
  /** Time spent confirming the backend accepts the new credentials (IAM is eventually consistent). */
  readyMs: number;
}

export interface Backend {
  readonly name: string;
  readonly type: string;
  read(opts: ReadOptions): Promise<ActualState>;
  execute(change: Change): Promise<ExecuteResult>;
  /** Issue one short-lived session; only backends that support `credentials: temporary` have it. */
  issueSession?(req: SessionIssueRequest): Promise<IssuedBackendSession>;
  /**
   * Effective access to the query's datasets as the system holds it (issue 13): every holder,
   * datagrant's or not, and through what. Reads only, in bulk; never changes anything.
   */
  readAccess?(query: AccessQuery): Promise<AccessReading>;
  stats(): BackendStats;
  close(): Promise<void>;
}
