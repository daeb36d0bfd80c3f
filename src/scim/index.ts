// The SCIM 2.0 service provider: what `datagrant serve` needs.
export { buildScimServer, hashToken, SCIM_PREFIX, DEFAULT_BODY_LIMIT, MAX_RESULTS, type ScimServerOptions } from './server.js';
export {
  openScimStore,
  openPgScimStore,
  SqliteScimStore,
  PgScimStore,
  type ScimStore,
  type ScimRecord,
  type ScimChange,
  type ChangeListener,
  type ScimStoreOptions,
  type CreateOptions,
  type PgScimStoreOptions,
} from './store.js';
export { scimPeople, scimPrincipals, principalBaseName, principalNameCandidates, type ScimPrincipal, type ScimPrincipalOptions } from './identities.js';
export { MetricsRegistry, Counter, Gauge, Histogram } from './metrics.js';
export { ScimError } from './errors.js';
