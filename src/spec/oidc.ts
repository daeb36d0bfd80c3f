// Which principal an OpenID Connect ID token names. Pure: validation uses it to refuse a spec in
// which one claim value would name two principals, and `serve` to map a verified token to exactly
// one principal (the spec's, plus the people SCIM added, which validation never sees).
//
// For an issuer, a principal is named by its explicit `oidc: { <issuer>: <value> }` entry; without
// one, a person is named by its `email` when the issuer's claim is `email`. Emails compare
// ignoring case, the whole address: RFC 5321 leaves the local part's case to the mail system,
// but IdPs and mail systems treat it as insignificant, and a spec that says `Alice@` must match a
// token that says `alice@`. Other claims (`sub`, a Kubernetes service account, a CI job's
// subject) compare exactly.
import type { SpecProblem } from '../core/errors.js';
import type { SourceMap } from './load.js';
import type { OidcIssuerSpec, PrincipalSpec, Spec } from './schema.js';

/** How a principal is named for one issuer: the value, and where in the spec it comes from. */
export interface OidcBinding {
  principal: string;
  /** The value as written in the spec. */
  value: string;
  /** `oidc`: an explicit entry; `email`: a person's email, for an issuer whose claim is `email`. */
  via: 'oidc' | 'email';
}

/** The form a claim value is compared in. */
export function claimKey(claim: string, value: string): string {
  // ASCII only: full Unicode case folding would make a Kelvin sign (U+212A) an ordinary k, so
  // another address could name the same person.
  return claim === 'email' ? value.replace(/[A-Z]/g, (c) => c.toLowerCase()) : value;
}

const has = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

/** The value that names `p` for `issuer`, or undefined when no token from it can name `p`. */
export function bindingOf(
  issuer: Pick<OidcIssuerSpec, 'name' | 'claim'>,
  name: string,
  p: Pick<PrincipalSpec, 'type' | 'email' | 'oidc'>,
): OidcBinding | undefined {
  const explicit = p.oidc !== null && typeof p.oidc === 'object' && has(p.oidc, issuer.name) ? p.oidc[issuer.name] : undefined;
  if (typeof explicit === 'string' && explicit !== '') return { principal: name, value: explicit, via: 'oidc' };
  if (explicit === undefined && issuer.claim === 'email' && p.type === 'person' && typeof p.email === 'string' && p.email !== '') {
    return { principal: name, value: p.email, via: 'email' };
  }
  return undefined;
}

/**
 * Per issuer name, claim key → every principal it names. More than one is a conflict: the spec's
 * own are refused by validation; one between the spec and a SCIM person makes `serve` refuse the
 * token rather than pick.
 */
export type OidcIndex = Map<string, Map<string, OidcBinding[]>>;

export function oidcIndex(
  issuers: readonly Pick<OidcIssuerSpec, 'name' | 'claim'>[],
  principals: Record<string, Pick<PrincipalSpec, 'type' | 'email' | 'oidc'>>,
): OidcIndex {
  const index: OidcIndex = new Map();
  for (const issuer of issuers) {
    const byKey = new Map<string, OidcBinding[]>();
    for (const [name, p] of Object.entries(principals)) {
      const b = bindingOf(issuer, name, p);
      if (!b) continue;
      const key = claimKey(issuer.claim, b.value);
      const list = byKey.get(key);
      if (list) list.push(b);
      else byKey.set(key, [b]);
    }
    index.set(issuer.name, byKey);
  }
  return index;
}

export type OidcMatch = { ok: true; principal: string } | { ok: false; reason: 'no-principal' | 'ambiguous'; principals: string[] };

/** The one principal a verified token's claim value names for `issuer`. */
export function matchPrincipal(index: OidcIndex, issuer: Pick<OidcIssuerSpec, 'name' | 'claim'>, value: string): OidcMatch {
  const found = index.get(issuer.name)?.get(claimKey(issuer.claim, value)) ?? [];
  if (found.length === 1) return { ok: true, principal: found[0]!.principal };
  return { ok: false, reason: found.length === 0 ? 'no-principal' : 'ambiguous', principals: found.map((b) => b.principal).sort() };
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Issuers named or configured twice, principals naming an issuer that is not configured, and
 * claim values that would name two principals. Runs on a salvaged spec too: what is not the
 * expected kind of value has been reported by the schema and is skipped.
 */
export function oidcProblems(spec: Spec, src: SourceMap): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const raw: unknown = isObject(spec.settings) ? spec.settings.oidc : undefined;
  const entries = Array.isArray(raw) ? raw.map((e, i) => [i, e] as const).filter((x): x is [number, Record<string, unknown>] => isObject(x[1])) : [];
  const issuers: Pick<OidcIssuerSpec, 'name' | 'claim'>[] = [];
  const names = new Map<string, number>();
  const urls = new Map<string, number>();
  for (const [i, e] of entries) {
    if (typeof e.name === 'string' && e.name !== '') {
      const prev = names.get(e.name);
      if (prev !== undefined) {
        problems.push(
          src.problem(
            ['settings', 'oidc', i, 'name'],
            `issuer name ${JSON.stringify(e.name)} is used twice (also settings.oidc[${prev}]); principals and the audit log refer to an issuer by its name, so each needs its own`,
          ),
        );
      } else {
        names.set(e.name, i);
        issuers.push({ name: e.name, claim: typeof e.claim === 'string' && e.claim !== '' ? e.claim : 'email' });
      }
    }
    if (typeof e.issuer === 'string' && e.issuer !== '') {
      const prev = urls.get(e.issuer);
      if (prev !== undefined) {
        problems.push(
          src.problem(
            ['settings', 'oidc', i, 'issuer'],
            `issuer ${JSON.stringify(e.issuer)} is configured twice (also settings.oidc[${prev}]); a token is matched to its entry by its iss claim, so keep one entry per issuer`,
          ),
        );
      } else urls.set(e.issuer, i);
    }
  }

  const defined = [...names.keys()].sort();
  const consoleIssuer: unknown = isObject(spec.settings) && isObject(spec.settings.console) ? spec.settings.console.oidc : undefined;
  if (typeof consoleIssuer === 'string' && consoleIssuer !== '' && !names.has(consoleIssuer)) {
    problems.push(
      src.problem(
        ['settings', 'console', 'oidc'],
        `issuer ${JSON.stringify(consoleIssuer)} is not defined under settings.oidc, so no one could sign in to the console; defined issuers: ${defined.length ? defined.join(', ') : '(none defined)'}`,
      ),
    );
  }
  for (const [name, p] of Object.entries(spec.principals)) {
    if (!isObject(p) || !isObject(p.oidc)) continue;
    for (const issuer of Object.keys(p.oidc)) {
      if (names.has(issuer)) continue;
      problems.push(
        src.problem(
          ['principals', name, 'oidc', issuer],
          `issuer ${JSON.stringify(issuer)} is not defined under settings.oidc; defined issuers: ${defined.length ? defined.join(', ') : '(none defined)'}`,
          true,
        ),
      );
    }
  }

  const principals = Object.fromEntries(Object.entries(spec.principals).filter(([, p]) => isObject(p)));
  const index = oidcIndex(issuers, principals);
  for (const issuer of issuers) {
    for (const bindings of index.get(issuer.name)!.values()) {
      const [first, ...rest] = bindings;
      for (const b of rest) {
        const how = issuer.claim === 'email' ? 'email (compared ignoring case)' : issuer.claim;
        problems.push(
          src.problem(
            b.via === 'oidc' ? ['principals', b.principal, 'oidc', issuer.name] : ['principals', b.principal, 'email'],
            `principal ${JSON.stringify(b.principal)} and principal ${JSON.stringify(first!.principal)} would both be named by an ID token from issuer ${JSON.stringify(issuer.name)} whose ${how} is ${JSON.stringify(b.value)}; a token must name exactly one principal: correct the value, or give one of them its own oidc: { ${issuer.name}: <value> }`,
          ),
        );
      }
    }
  }
  return problems;
}
