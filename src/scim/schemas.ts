// The SCIM schemas this service provider implements (RFC 7643 §4 core User and Group, §4.3 the
// enterprise User extension), as data. The same table drives input checking, attribute-name case
// folding, filter comparison rules (caseExact), PATCH paths and the /Schemas endpoint.
import type { Json } from '../core/types.js';
import { invalidSyntax, invalidValue, mutability } from './errors.js';
import { MAX_RESOURCE_BYTES, maxLength, maxValues } from './limits.js';

export const USER_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:User';
export const GROUP_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Group';
export const ENTERPRISE_SCHEMA = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
export const LIST_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';
export const PATCH_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
export const SEARCH_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:SearchRequest';

export type ResourceType = 'User' | 'Group';
export type JsonObject = { [key: string]: Json };

export interface AttrDef {
  name: string;
  type: 'string' | 'boolean' | 'complex' | 'dateTime' | 'reference' | 'integer' | 'decimal' | 'binary';
  multiValued: boolean;
  required: boolean;
  caseExact: boolean;
  mutability: 'readOnly' | 'readWrite' | 'immutable' | 'writeOnly';
  returned: 'always' | 'never' | 'default' | 'request';
  uniqueness: 'none' | 'server' | 'global';
  description: string;
  subAttributes?: AttrDef[];
  referenceTypes?: string[];
  canonicalValues?: string[];
}

type Opts = Partial<Omit<AttrDef, 'name' | 'type' | 'subAttributes'>>;
const attr = (name: string, type: AttrDef['type'], description: string, o: Opts = {}, subAttributes?: AttrDef[]): AttrDef => ({
  name,
  type,
  multiValued: false,
  required: false,
  caseExact: false,
  mutability: 'readWrite',
  returned: 'default',
  uniqueness: 'none',
  description,
  ...o,
  ...(subAttributes ? { subAttributes } : {}),
});
const str = (name: string, description: string, o: Opts = {}) => attr(name, 'string', description, o);
/** A reference always says what it may point at (RFC 7643 §2.3.7): a resource type, `external` or `uri`. */
const ref = (name: string, description: string, referenceTypes: string[], o: Opts = {}) => attr(name, 'reference', description, { ...o, referenceTypes });

/** The usual sub-attributes of a multi-valued attribute (emails, phoneNumbers, …). */
const multi = (name: string, description: string, value: AttrDef['type'] | { referenceTypes: string[] } = 'string', extra: AttrDef[] = []): AttrDef =>
  attr(name, 'complex', description, { multiValued: true }, [
    typeof value === 'string' ? attr('value', value, `The value of the ${name} entry.`) : ref('value', `The value of the ${name} entry.`, value.referenceTypes),
    str('display', 'A human-readable name, primarily used for display purposes.'),
    str('type', 'A label indicating the function of the entry, e.g. work or home.'),
    attr('primary', 'boolean', 'Whether this is the primary entry.'),
    ...extra,
  ]);

const ID = str('id', 'Unique identifier for the resource, assigned by the service provider.', {
  caseExact: true,
  mutability: 'readOnly',
  returned: 'always',
  uniqueness: 'server',
});
const EXTERNAL_ID = str('externalId', "The identifier of the resource in the client's system.", { caseExact: true });
const META = attr('meta', 'complex', 'Resource metadata.', { mutability: 'readOnly' }, [
  str('resourceType', 'The name of the resource type.', { mutability: 'readOnly', caseExact: true }),
  attr('created', 'dateTime', 'When the resource was added.', { mutability: 'readOnly' }),
  attr('lastModified', 'dateTime', 'When the resource was last changed.', { mutability: 'readOnly' }),
  ref('location', 'The URI of the resource.', ['uri'], { mutability: 'readOnly', caseExact: true }),
  str('version', 'The version (weak ETag) of the resource.', { mutability: 'readOnly', caseExact: true }),
]);

/** RFC 7643 §4.1.2: the one attribute that may hold line breaks. */
const ADDRESS_FORMATTED = str('formatted', 'The full mailing address; may contain line breaks.');

export const USER_ATTRS: AttrDef[] = [
  ID,
  EXTERNAL_ID,
  str('userName', 'Unique identifier for the user, typically used to sign in.', { required: true, uniqueness: 'server' }),
  attr('name', 'complex', "The components of the user's name.", {}, [
    str('formatted', 'The full name.'),
    str('familyName', 'The family name.'),
    str('givenName', 'The given name.'),
    str('middleName', 'The middle name(s).'),
    str('honorificPrefix', 'The honorific prefix(es).'),
    str('honorificSuffix', 'The honorific suffix(es).'),
  ]),
  str('displayName', 'The name of the user, suitable for display.'),
  str('nickName', 'The casual way to address the user.'),
  ref('profileUrl', "A URI of the user's online profile.", ['external']),
  str('title', "The user's title."),
  str('userType', 'The relationship between the organisation and the user.'),
  str('preferredLanguage', "The user's preferred written or spoken language."),
  str('locale', "The user's default location."),
  str('timezone', "The user's time zone (IANA)."),
  attr('active', 'boolean', "The user's administrative status; false deprovisions every grant."),
  str('password', 'Never stored or returned by this service provider.', { mutability: 'writeOnly', returned: 'never' }),
  multi('emails', 'Email addresses for the user.'),
  multi('phoneNumbers', 'Phone numbers for the user.'),
  multi('ims', 'Instant messaging addresses for the user.'),
  multi('photos', 'URLs of photos of the user.', { referenceTypes: ['external'] }),
  attr('addresses', 'complex', 'Physical mailing addresses for the user.', { multiValued: true }, [
    ADDRESS_FORMATTED,
    str('streetAddress', 'The street address.'),
    str('locality', 'The city or locality.'),
    str('region', 'The state or region.'),
    str('postalCode', 'The zip code or postal code.'),
    str('country', 'The country name (ISO 3166-1 alpha-2).'),
    str('type', 'A label indicating the function of the address.'),
    attr('primary', 'boolean', 'Whether this is the primary address.'),
  ]),
  attr('groups', 'complex', 'Groups the user belongs to (read-only; manage membership through /Groups).', { multiValued: true, mutability: 'readOnly' }, [
    str('value', 'The id of the group.', { mutability: 'readOnly', caseExact: true }),
    ref('$ref', 'The URI of the group.', ['User', 'Group'], { mutability: 'readOnly', caseExact: true }),
    str('display', 'The displayName of the group.', { mutability: 'readOnly' }),
    str('type', 'direct or indirect.', { mutability: 'readOnly' }),
  ]),
  multi('entitlements', 'Entitlements of the user.'),
  multi('roles', 'Roles of the user.'),
  multi('x509Certificates', 'X.509 certificates of the user.', 'binary'),
  META,
];

export const ENTERPRISE_ATTRS: AttrDef[] = [
  str('employeeNumber', 'Numeric or alphanumeric identifier assigned to a person.'),
  str('costCenter', 'The cost center.'),
  str('organization', 'The organisation.'),
  str('division', 'The division.'),
  str('department', 'The department.'),
  attr('manager', 'complex', "The user's manager.", {}, [
    str('value', 'The id of the manager.', { caseExact: true }),
    ref('$ref', 'The URI of the manager.', ['User'], { caseExact: true }),
    str('displayName', 'The displayName of the manager.', { mutability: 'readOnly' }),
  ]),
];

export const GROUP_ATTRS: AttrDef[] = [
  ID,
  EXTERNAL_ID,
  str('displayName', 'A human-readable name for the group; the name the spec maps to a datagrant group.', { required: true, uniqueness: 'server' }),
  attr('members', 'complex', 'A list of members of the group.', { multiValued: true }, [
    str('value', 'The id of the member.', { caseExact: true, mutability: 'immutable' }),
    ref('$ref', 'The URI of the member.', ['User', 'Group'], { caseExact: true, mutability: 'immutable' }),
    str('display', 'The display name of the member.', { mutability: 'immutable' }),
    str('type', 'User or Group.', { mutability: 'immutable', canonicalValues: ['User', 'Group'] }),
  ]),
  META,
];

export interface SchemaDef {
  id: string;
  name: string;
  description: string;
  attributes: AttrDef[];
}

export const SCHEMAS: SchemaDef[] = [
  { id: USER_SCHEMA, name: 'User', description: 'User Account', attributes: USER_ATTRS },
  { id: ENTERPRISE_SCHEMA, name: 'EnterpriseUser', description: 'Enterprise User', attributes: ENTERPRISE_ATTRS },
  { id: GROUP_SCHEMA, name: 'Group', description: 'Group', attributes: GROUP_ATTRS },
];

export const CORE_SCHEMA: Record<ResourceType, string> = { User: USER_SCHEMA, Group: GROUP_SCHEMA };
/** Extension schemas per resource type, by URN. */
export const EXTENSIONS: Record<ResourceType, Record<string, AttrDef[]>> = {
  User: { [ENTERPRISE_SCHEMA]: ENTERPRISE_ATTRS },
  Group: {},
};
export const CORE_ATTRS: Record<ResourceType, AttrDef[]> = { User: USER_ATTRS, Group: GROUP_ATTRS };

export function findAttr(defs: readonly AttrDef[], name: string): AttrDef | undefined {
  const lower = name.toLowerCase();
  return defs.find((d) => d.name.toLowerCase() === lower);
}

/** The extension URN as this server spells it, for any spelling (URNs compare case-insensitively). */
export function findExtension(type: ResourceType, urn: string): string | undefined {
  const lower = urn.toLowerCase();
  return Object.keys(EXTENSIONS[type]).find((u) => u.toLowerCase() === lower);
}

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A value for one attribute, checked against its definition: names folded to the schema's case,
 * booleans sent as "True"/"False" (Entra) turned into booleans, unknown sub-attributes refused.
 * `null` (and, for multi-valued attributes, an empty list) means "unassigned" and is returned as
 * undefined. `where` names the attribute in messages.
 */
export function checkValue(def: AttrDef, value: unknown, where: string): Json | undefined {
  if (value === null || value === undefined) return undefined;
  if (def.multiValued) {
    const items = Array.isArray(value) ? value : [value];
    checkCount(def, items.length, where);
    const out: Json[] = [];
    items.forEach((item, i) => {
      const v = checkSingle(def, item, `${where}[${i}]`);
      if (v !== undefined) out.push(v);
    });
    return out.length ? out : undefined;
  }
  if (Array.isArray(value)) throw invalidValue(`${where} is single-valued, but a list was given`);
  return checkSingle(def, value, where);
}

function checkSingle(def: AttrDef, value: unknown, where: string): Json | undefined {
  if (value === null || value === undefined) return undefined;
  switch (def.type) {
    case 'complex': {
      // Entra sends the enterprise `manager` as a bare id ("…:manager": "<id>"); a single-valued
      // complex attribute with a `value` sub-attribute takes a string as that value.
      if (typeof value === 'string' && !def.multiValued && findAttr(def.subAttributes!, 'value')) return value === '' ? undefined : { value };
      if (!isObject(value)) throw invalidValue(`${where} must be an object with the sub-attributes ${def.subAttributes!.map((s) => s.name).join(', ')}`);
      const out: JsonObject = {};
      for (const [k, v] of Object.entries(value)) {
        const sub = findAttr(def.subAttributes!, k);
        if (!sub) throw invalidSyntax(`${where}.${k} is not an attribute; ${def.name} has ${def.subAttributes!.map((s) => s.name).join(', ')}`);
        const checked = checkValue(sub, v, `${where}.${sub.name}`);
        if (checked !== undefined) out[sub.name] = checked;
      }
      return Object.keys(out).length ? out : undefined;
    }
    case 'boolean':
      if (typeof value === 'boolean') return value;
      // Entra sends "True"/"False".
      if (typeof value === 'string' && /^(true|false)$/i.test(value)) return value.toLowerCase() === 'true';
      throw invalidValue(`${where} must be a boolean, not ${JSON.stringify(value)}`);
    case 'integer':
      if (typeof value === 'number' && Number.isInteger(value)) return value;
      throw invalidValue(`${where} must be an integer, not ${JSON.stringify(value)}`);
    case 'decimal':
      if (typeof value === 'number') return value;
      throw invalidValue(`${where} must be a number, not ${JSON.stringify(value)}`);
    case 'dateTime':
      if (typeof value === 'string' && !Number.isNaN(Date.parse(value))) return value;
      throw invalidValue(`${where} must be an xsd:dateTime string, not ${JSON.stringify(value)}`);
    default:
      if (typeof value === 'string') return checkString(def, value, where);
      // Numbers and booleans where a string belongs are a common IdP mapping slip (employeeNumber: 42).
      if (typeof value === 'number' || typeof value === 'boolean') return String(value);
      throw invalidValue(`${where} must be a string, not ${JSON.stringify(value)}`);
  }
}

/** 400 when a multi-valued attribute would hold more values than it may. */
export function checkCount(def: AttrDef, n: number, where: string): void {
  if (n > maxValues(def)) throw invalidValue(`${where} has ${n} values; at most ${maxValues(def)} are allowed`);
}

// Control characters (C0, DEL, C1) and lone UTF-16 surrogates, which no UTF-8 text can carry;
// the multi-line form allows tab, line feed and carriage return.
const FORBIDDEN = /[\p{Cc}\p{Cs}]/u;
const FORBIDDEN_MULTI_LINE = /(?![\t\n\r])[\p{Cc}\p{Cs}]/u;

/**
 * A string is text (RFC 7643 §2.3.1: UTF-8, so no lone surrogates) without control characters,
 * and no longer than its attribute allows (limits.ts). Any script is fine, and so are the
 * invisible joiners and direction marks that real names in some scripts carry (format
 * characters, unlike control characters). Messages name the offending code point, never echo the value.
 */
function checkString(def: AttrDef, value: string, where: string): string {
  const max = maxLength(def);
  // UTF-16 length bounds the count of code points from above: count only when it might matter.
  if (value.length > max) {
    let n = 0;
    for (const _ of value) if (++n > max) throw invalidValue(`${where} is longer than ${max} characters`);
  }
  const bad = (def === ADDRESS_FORMATTED ? FORBIDDEN_MULTI_LINE : FORBIDDEN).exec(value);
  if (bad) {
    const cp = `U+${bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
    throw invalidValue(
      /\p{Cs}/u.test(bad[0])
        ? `${where} holds a lone surrogate (${cp}) at position ${bad.index + 1}, which is not text: strings must be valid Unicode (RFC 7643 §2.3.1)`
        : `${where} holds the control character ${cp} at position ${bad.index + 1}; control characters (NUL, ESC, line breaks, …) are not allowed${def === ADDRESS_FORMATTED ? ' except tab and line breaks' : ''}`,
    );
  }
  return value;
}

/**
 * A resource body (POST or PUT) as stored: attribute names folded to the schema's case, values
 * checked, read-only attributes (id, meta, groups) and the write-only password dropped, the
 * extension nested under its URN. Decisions: an attribute the schemas do not define is refused
 * with 400 invalidSyntax (a typo must not silently lose data); an extension URN this server does
 * not implement (for example a custom Okta or Entra extension) is ignored, because IdPs send
 * them whenever an admin maps custom attributes, and refusing would stop provisioning.
 */
export function checkResource(type: ResourceType, body: unknown): JsonObject {
  if (!isObject(body)) throw invalidSyntax('the request body must be a JSON object');
  const schemas = body.schemas;
  if (!Array.isArray(schemas) || !schemas.every((s) => typeof s === 'string')) {
    throw invalidSyntax(`"schemas" must be a list of schema URNs including ${CORE_SCHEMA[type]}`);
  }
  const lowerSchemas = schemas.map((s) => s.toLowerCase());
  if (!lowerSchemas.includes(CORE_SCHEMA[type].toLowerCase())) {
    throw invalidSyntax(`"schemas" must include ${CORE_SCHEMA[type]} for a ${type}; got ${JSON.stringify(schemas)}`);
  }
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(body)) {
    if (key.toLowerCase() === 'schemas') continue;
    if (/^urn:/i.test(key)) {
      const urn = findExtension(type, key);
      if (urn) {
        const ext = checkExtension(type, urn, value);
        if (ext) out[urn] = ext;
      } else if (key.toLowerCase().startsWith(`${CORE_SCHEMA[type].toLowerCase()}:`)) {
        // A core attribute written with its full URN.
        assign(type, out, key.slice(CORE_SCHEMA[type].length + 1), value);
      }
      continue;
    }
    assign(type, out, key, value);
  }
  for (const def of CORE_ATTRS[type]) {
    if (def.required && (typeof out[def.name] !== 'string' || (out[def.name] as string).trim() === '')) {
      throw invalidValue(`${def.name} is required for a ${type}`);
    }
  }
  const bytes = Buffer.byteLength(JSON.stringify(out));
  if (bytes > MAX_RESOURCE_BYTES[type]) throw invalidValue(`the ${type} would take ${bytes} bytes as JSON; at most ${MAX_RESOURCE_BYTES[type]} are allowed`);
  return out;
}

function assign(type: ResourceType, out: JsonObject, key: string, value: unknown): void {
  const def = findAttr(CORE_ATTRS[type], key);
  if (!def) throw invalidSyntax(`${key} is not an attribute of ${CORE_SCHEMA[type]}`);
  // Read-only attributes a client echoes back (id, meta, groups) are ignored (RFC 7643 §2.2).
  if (def.mutability === 'readOnly' || def.mutability === 'writeOnly') return;
  const v = checkValue(def, value, def.name);
  if (v !== undefined) out[def.name] = v;
}

export function checkExtension(type: ResourceType, urn: string, value: unknown): JsonObject | undefined {
  if (value === null || value === undefined) return undefined;
  if (!isObject(value)) throw invalidSyntax(`${urn} must be an object`);
  const defs = EXTENSIONS[type][urn]!;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value)) {
    const def = findAttr(defs, k);
    if (!def) throw invalidSyntax(`${k} is not an attribute of ${urn}`);
    if (def.mutability === 'readOnly') continue;
    const checked = checkValue(def, v, `${urn}:${def.name}`);
    if (checked !== undefined) out[def.name] = checked;
  }
  return Object.keys(out).length ? out : undefined;
}

/** A stored attribute set checked again after a PATCH: required attributes present, nothing readOnly. */
export function checkPatched(type: ResourceType, attrs: JsonObject): JsonObject {
  const extensions = Object.keys(EXTENSIONS[type]).filter((u) => attrs[u] !== undefined);
  const body = { ...attrs, schemas: [CORE_SCHEMA[type], ...extensions] };
  for (const key of ['id', 'meta']) if (key in attrs) throw mutability(`${key} is read-only`);
  return checkResource(type, body);
}

/** The schemas list of a stored resource: the core schema plus the extensions it carries. */
export function schemasOf(type: ResourceType, attrs: JsonObject): string[] {
  return [CORE_SCHEMA[type], ...Object.keys(EXTENSIONS[type]).filter((u) => attrs[u] !== undefined)];
}
