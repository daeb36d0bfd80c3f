// What the state knows of an issued credential, shared by the store and the drivers.

/** What the store knows about a credential datagrant issued (no secret). */
export interface KnownCredential {
  /** Address of the credential slot, e.g. `aws:key/alice`. */
  address: string;
  /** Backend-native id: the AWS access key id, or a password version for PostgreSQL. */
  credentialId: string;
  createdAt: string;
  /** `current` is the one handed out; `retiring` was superseded and lives until `retireAt`. */
  state: 'current' | 'retiring';
  retireAt?: string;
}
