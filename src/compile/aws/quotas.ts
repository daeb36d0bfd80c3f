// An AWS account's IAM quotas (users, groups, customer managed policies, roles), checked at plan:
// AWS refuses the object past the quota, so an apply that needs more would stop half-way. Only
// what datagrant makes is counted; a backend's `quotas` lowers the budget to leave room for the
// rest of the account. Pure.
import type { Resource } from '../../core/types.js';
import { IAM_ACCOUNT_QUOTAS, type AccountQuotaName } from '../../spec/limits.js';
import { awsAccountOf, type AwsBackendSpec, type Spec } from '../../spec/schema.js';

export type QuotaCounts = Record<AccountQuotaName, number>;

/** The resource kind each quota counts. */
const COUNTED_KIND: Record<AccountQuotaName, string> = { users: 'user', groups: 'group', policies: 'policy', roles: 'role' };
const NAMES = Object.keys(IAM_ACCOUNT_QUOTAS) as AccountQuotaName[];

const thousands = (n: number) => n.toLocaleString('en-US');

/** The objects of one desired state that count against the account's quotas. */
export function accountObjects(resources: readonly Resource[]): QuotaCounts {
  const counts = Object.fromEntries(NAMES.map((n) => [n, 0])) as QuotaCounts;
  const byKind = new Map(NAMES.map((n) => [COUNTED_KIND[n], n]));
  for (const r of resources) {
    const name = byKind.get(r.kind);
    if (name) counts[name]++;
  }
  return counts;
}

export interface Quotas {
  limit: QuotaCounts;
  /** The quotas the backend sets; the others are AWS's defaults. */
  set: ReadonlySet<AccountQuotaName>;
}

export function quotasOf(backend: AwsBackendSpec): Quotas {
  const given = backend.quotas ?? {};
  const limit = Object.fromEntries(NAMES.map((n) => [n, given[n] ?? IAM_ACCOUNT_QUOTAS[n].default])) as QuotaCounts;
  return { limit, set: new Set(NAMES.filter((n) => given[n] !== undefined)) };
}

/** What to do about too many of `name`, given the quota in force. */
function wayOut(name: AccountQuotaName, quota: number): string {
  const { max, what } = IAM_ACCOUNT_QUOTAS[name];
  const raise = quota < max ? `Raise the quota in AWS (up to ${thousands(max)}) and quotas.${name} with it` : undefined;
  switch (name) {
    case 'users':
      return quota < max
        ? `Raise quotas.${name} if the account has room (AWS allows ${thousands(max)} ${what} and raises that no further). Every principal with a grant on this backend is an IAM user`
        : `AWS raises it no further, and every principal with a grant on this backend is an IAM user: manage some of them from a spec and state of their own, in another AWS account`;
    case 'groups':
      return `${raise ?? 'AWS raises it no further'}, or grant through fewer groups: every group with a grant on this backend is an IAM group`;
    case 'policies':
      return `${raise ?? 'AWS raises it no further'}, or put principals with the same direct grants into a group: a group's policies count once, however many members it has`;
    case 'roles':
      return `${raise ?? 'AWS raises it no further'}, or give principals with the same access the same grants through groups: temporary principals share one role per distinct set of groups and direct grants`;
  }
}

/** The message for needing `need` of what quota `name` counts where `quota` is allowed. */
function exceeded(name: AccountQuotaName, need: number, quota: number, source: string, detail?: string): string {
  return `${thousands(need)} ${IAM_ACCOUNT_QUOTAS[name].what} needed${detail ? ` (${detail})` : ''}, the account quota is ${thousands(quota)} (${source}). ${wayOut(name, quota)}.`;
}

const sourceOf = (name: AccountQuotaName, quotas: Quotas) => (quotas.set.has(name) ? `quotas.${name}` : `AWS's default; quotas.${name} sets another`);

/** One message per quota exceeded: the count, the quota and where it comes from, and the way out. `details` says what a count is made of. */
export function quotaProblems(counts: QuotaCounts, quotas: Quotas, details: Partial<Record<AccountQuotaName, string>> = {}): string[] {
  return NAMES.filter((n) => counts[n] > quotas.limit[n]).map((n) => exceeded(n, counts[n], quotas.limit[n], sourceOf(n, quotas), details[n]));
}

/**
 * The account an aws backend reaches: its endpoint and the account of the role it assumes (or the
 * standard credential chain's). IAM is global: the region does not matter.
 */
const accountOf = (b: AwsBackendSpec) => {
  const { endpoint, account } = awsAccountOf(b);
  return JSON.stringify([endpoint, account]);
};

/**
 * Backends of one account share its quotas. Each passed its own check; what is left is their sum
 * against the smallest quota any of them sets.
 */
export function sharedAccountProblems(spec: Spec, resources: Record<string, readonly Resource[]>): string[] {
  const accounts = new Map<string, string[]>();
  for (const name of Object.keys(resources).sort()) {
    const b = spec.backends[name];
    if (b?.type !== 'aws') continue;
    const key = accountOf(b);
    accounts.set(key, [...(accounts.get(key) ?? []), name]);
  }
  const out: string[] = [];
  for (const names of accounts.values()) {
    if (names.length < 2) continue;
    const { account } = awsAccountOf(spec.backends[names[0]!] as AwsBackendSpec);
    const reach = account ? `account ${account}, by the roles they assume, at the same endpoint` : 'the same credentials and endpoint';
    const counts = accountObjects(names.flatMap((n) => resources[n]!));
    const quotas = names.map((n) => quotasOf(spec.backends[n] as AwsBackendSpec));
    for (const q of NAMES) {
      let at = 0;
      for (let i = 1; i < names.length; i++) if (quotas[i]!.limit[q] < quotas[at]!.limit[q]) at = i;
      const limit = quotas[at]!.limit[q];
      if (counts[q] <= limit) continue;
      const source = quotas[at]!.set.has(q) ? `quotas.${q} of backend ${names[at]}` : `AWS's default; quotas.${q} sets another`;
      out.push(
        `backends ${names.join(', ')}: they reach one AWS account (${reach}) and share its quotas: together ${exceeded(q, counts[q], limit, source)} Or give each backend a share in its quotas.`,
      );
    }
  }
  return out;
}
