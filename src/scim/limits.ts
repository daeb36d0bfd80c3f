// How much one request may ask and one resource may hold. An IdP that loops (the same PATCH sent
// again and again, each adding values) must meet a clear 400, not grow a user without bound, and
// one request must not keep the server from answering the others. Every figure is advertised in
// /ServiceProviderConfig under LIMITS_SCHEMA and listed in the README.
import type { AttrDef, ResourceType } from './schemas.js';

/** The ServiceProviderConfig extension that advertises these limits and `.search`. */
export const LIMITS_SCHEMA = 'urn:datagrant:params:scim:schemas:extension:limits:1.0:ServiceProviderConfig';

/** Operations in one PATCH request (400 tooMany above it). */
export const MAX_PATCH_OPERATIONS = 1000;
/** Values of one multi-valued attribute (emails, phoneNumbers, roles, …) of a User. */
export const MAX_VALUES = 100;
/** Members of one Group: groups are big, but a member list must still fit in a PUT body. */
export const MAX_MEMBERS = 10_000;
/** Characters (Unicode code points) in a string value. */
export const MAX_STRING = 1024;
/** Characters in userName and a Group's displayName: unique keys, indexed by the store. */
export const MAX_KEY = 256;
/** Characters of a base64 binary value (x509Certificates). */
export const MAX_BINARY = 16_384;
/** The stored resource as JSON, in bytes (UTF-8). */
export const MAX_RESOURCE_BYTES: Record<ResourceType, number> = { User: 64 * 1024, Group: 1024 * 1024 };

export function maxValues(def: AttrDef): number {
  return def.name === 'members' ? MAX_MEMBERS : MAX_VALUES;
}

export function maxLength(def: AttrDef): number {
  if (def.type === 'binary') return MAX_BINARY;
  return def.uniqueness === 'server' ? MAX_KEY : MAX_STRING;
}
