// The SCIM 2.0 service provider: what `datagrant serve` needs.
export { buildScimServer, hashToken, SCIM_PREFIX, DEFAULT_BODY_LIMIT, MAX_RESULTS, type ScimServerOptions } from './server.js';
export type { ScimStore, ScimRecord, ScimChange, ChangeListener, ScimStoreOptions, CreateOptions } from './store/store.js';
export { SqliteScimStore } from './store/sqlite.js';
export { openPgScimStore, PgScimStore, type PgScimStoreOptions } from './store/postgres.js';
export { openScimStore } from './store/open.js';
export { scimPeople, scimPrincipals, principalBaseName, principalNameCandidates, type ScimPrincipal, type ScimPrincipalOptions } from './identities.js';
export { MetricsRegistry, Counter, Gauge, Histogram } from './metrics.js';
export { ScimError } from './errors.js';
