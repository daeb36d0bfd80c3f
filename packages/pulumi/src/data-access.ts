// Pulumi components over datagrant's compiler. Everything AWS is told (names, paths, tags, policy
// documents) comes from `compileAws`, the function `datagrant plan|apply` uses; this file only
// maps each compiled object to the Pulumi resource that creates the same IAM object.
import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { assertSpecInvariants, compile, parseSpec, readSpecFile, type Level, type Notice, type Resource, type Spec, type SpecInput } from './compiler.js';

export interface DataAccessArgs {
  /** The spec, as YAML (or JSON) text or as the same structure in an object. One of `spec`, `specFile`. */
  spec?: string | SpecInput;
  /** Path of a spec file (`datagrant.yaml`), read when the program runs. */
  specFile?: string;
  /**
   * Which aws backend of the spec to provision. May be left out when the spec has exactly one;
   * postgres backends are never provisioned by the component (use the datagrant CLI for them).
   */
  backend?: string;
  /** The clock for expiry: grants expired at `now` grant nothing. Defaults to the time the program runs. */
  now?: Date;
  /** Environment for `${VAR}` in the spec. Defaults to `process.env`. */
  env?: Record<string, string | undefined>;
}

/** What a principal needs to use its access, as the seed program exported it. */
export interface PrincipalCredentials {
  userName: pulumi.Output<string>;
  accessKeyId: pulumi.Output<string>;
  /** Always a Pulumi secret: encrypted in the state and in stack outputs. */
  secretAccessKey: pulumi.Output<string>;
}

export interface CompiledSpec {
  spec: Spec;
  /** Name of the aws backend that was compiled. */
  backend: string;
  /** The desired IAM state, exactly as `datagrant plan` computes it for that backend. */
  resources: Resource[];
  notices: Notice[];
}

function specText(args: DataAccessArgs, label: string): { file: string; text: string } {
  if ((args.spec === undefined) === (args.specFile === undefined)) {
    throw new Error(`${label}: give exactly one of \`spec\` and \`specFile\``);
  }
  if (args.specFile !== undefined) {
    return readSpecFile(args.specFile);
  }
  const spec = args.spec!;
  // An object goes through the same parser as a file (JSON is YAML), so it is validated alike.
  return { file: label, text: typeof spec === 'string' ? spec : JSON.stringify(spec, null, 2) };
}

function pickBackend(spec: Spec, wanted: string | undefined, file: string): string {
  const awsBackends = Object.entries(spec.backends)
    .filter(([, b]) => b.type === 'aws')
    .map(([n]) => n)
    .sort();
  if (wanted !== undefined) {
    const b = spec.backends[wanted];
    if (!b) throw new Error(`${file}: backend ${JSON.stringify(wanted)} is not defined; aws backends: ${awsBackends.join(', ') || '(none)'}`);
    if (b.type !== 'aws') {
      throw new Error(
        `${file}: backend ${JSON.stringify(wanted)} is a ${b.type} backend; the Pulumi component provisions aws backends only (use the datagrant CLI for ${b.type})`,
      );
    }
    return wanted;
  }
  if (awsBackends.length === 1) return awsBackends[0]!;
  throw new Error(
    awsBackends.length === 0
      ? `${file}: the spec has no aws backend; the Pulumi component provisions aws backends only`
      : `${file}: the spec has several aws backends (${awsBackends.join(', ')}); choose one with \`backend\``,
  );
}

/**
 * Parse, validate and compile a spec for one aws backend, as `datagrant plan` does. Throws
 * SpecError (every problem with file, line and column), CompileError (IAM quotas) or
 * InvariantError (a grant that breaks one of the spec's invariants).
 */
export function compileSpec(args: DataAccessArgs, label = '<spec>'): CompiledSpec {
  const { file, text } = specText(args, label);
  const now = args.now ?? new Date();
  const loaded = parseSpec(text, { file, env: args.env ?? process.env, now });
  const backend = pickBackend(loaded.spec, args.backend, file);
  const compiled = compile(loaded.spec, now);
  assertSpecInvariants(loaded.spec, now, loaded.source);
  const desired = compiled.desired[backend]!;
  return {
    spec: loaded.spec,
    backend,
    resources: desired.resources,
    notices: [...loaded.notices, ...compiled.notices, ...desired.notices],
  };
}

const str = (r: Resource, attr: string): string => {
  const v = r.attrs[attr];
  if (typeof v !== 'string') throw new Error(`${r.address}: attribute ${attr} is not a string`);
  return v;
};

/** Kinds in creation order; a kind the compiler gains later must be mapped here, not dropped. */
const KINDS = ['group', 'user', 'policy', 'attachment', 'inline-policy', 'membership', 'key'] as const;
type Kind = (typeof KINDS)[number];

/**
 * Least-privilege data access from a datagrant spec, as one Pulumi component: IAM users, groups,
 * managed policies, attachments, inline policies, group memberships and one access key per principal, with the
 * names, paths, tags and policy documents `datagrant apply` creates. All are children of the
 * component.
 */
export class DataAccess extends pulumi.ComponentResource {
  static readonly typeToken: string = 'datagrant:index:DataAccess';

  /** The aws backend of the spec this component provisions. */
  readonly backend: string;
  /** The compiled desired state the resources were made from (no secrets). */
  readonly desired: Resource[];
  readonly users: Record<string, aws.iam.User> = {};
  readonly groups: Record<string, aws.iam.Group> = {};
  /** By policy name (`dg-group-ml-researchers`, `dg-group-ml-researchers-2`, `dg-shared-0123456789ab`, …). */
  readonly policies: Record<string, aws.iam.Policy> = {};
  /** By principal name: its direct grants, when they fit an inline policy (`dg-direct-grants`). */
  readonly inlinePolicies: Record<string, aws.iam.UserPolicy> = {};
  /** By group name: one exclusive membership list per datagrant group. */
  readonly groupMemberships: Record<string, aws.iam.GroupMembership> = {};
  /** By principal name. */
  readonly accessKeys: Record<string, aws.iam.AccessKey> = {};
  /** Every resource by its datagrant address (`aws:user/alice`, `aws:membership/g/alice`, …). */
  readonly resources: Record<string, pulumi.CustomResource> = {};
  /** Per principal: user name, access key id and secret access key (a Pulumi secret). */
  readonly principals: Record<string, PrincipalCredentials> = {};

  constructor(name: string, args: DataAccessArgs, opts?: pulumi.ComponentResourceOptions) {
    const type = new.target.typeToken;
    super(type, name, {}, opts);
    const compiled = compileSpec(args, args.specFile ?? `<spec of ${type.split(':').pop()} ${name}>`);
    this.backend = compiled.backend;
    this.desired = compiled.resources;
    const parent = { parent: this };

    // Logging is asynchronous in Pulumi and a constructor cannot wait for it.
    for (const n of compiled.notices) void (n.level === 'warning' ? pulumi.log.warn : pulumi.log.info)(n.message, this);
    const others = Object.keys(compiled.spec.backends)
      .filter((b) => b !== compiled.backend)
      .sort();
    if (others.length) {
      void pulumi.log.warn(
        `backends ${others.join(', ')} of the spec are not provisioned by this component (it provisions ${compiled.backend} only); ` +
          'use another DataAccess with `backend` for an aws backend, or the datagrant CLI for postgres',
        this,
      );
    }

    const byKind = new Map<Kind, Resource[]>(KINDS.map((k) => [k, []]));
    for (const r of compiled.resources) {
      const list = byKind.get(r.kind as Kind);
      if (!list) throw new Error(`${r.address}: the Pulumi component cannot create a ${r.kind}`);
      list.push(r);
    }
    const at = <T>(record: Record<string, T>, key: string, what: string): T => {
      const v = record[key];
      if (v === undefined) throw new Error(`${what} ${key} is referenced but was not compiled`);
      return v;
    };

    for (const r of byKind.get('group')!) {
      const g = new aws.iam.Group(`${name}-group-${r.name}`, { name: r.name, path: str(r, 'path') }, parent);
      this.groups[r.name] = this.resources[r.address] = g;
    }
    for (const r of byKind.get('user')!) {
      const u = new aws.iam.User(`${name}-user-${r.name}`, { name: r.name, path: str(r, 'path'), tags: r.attrs.tags as Record<string, string> }, parent);
      this.users[r.name] = this.resources[r.address] = u;
    }
    for (const r of byKind.get('policy')!) {
      const p = new aws.iam.Policy(
        `${name}-policy-${r.name}`,
        // The document exactly as compiled: key order and all, so it is byte for byte what apply sends.
        { name: r.name, path: str(r, 'path'), policy: JSON.stringify(r.attrs.document) },
        parent,
      );
      this.policies[r.name] = this.resources[r.address] = p;
    }
    for (const r of byKind.get('attachment')!) {
      const entity = str(r, 'entity');
      const entityName = str(r, 'entityName');
      const policyArn = at(this.policies, str(r, 'policy'), 'policy').arn;
      const logical = `${name}-attach-${entity}-${entityName}-${str(r, 'policy')}`;
      this.resources[r.address] =
        entity === 'group'
          ? new aws.iam.GroupPolicyAttachment(logical, { group: at(this.groups, entityName, 'group').name, policyArn }, parent)
          : new aws.iam.UserPolicyAttachment(logical, { user: at(this.users, entityName, 'user').name, policyArn }, parent);
    }
    for (const r of byKind.get('inline-policy')!) {
      if (str(r, 'entity') !== 'user') throw new Error(`${r.address}: the Pulumi component cannot create an inline policy of a ${str(r, 'entity')}`);
      const user = str(r, 'entityName');
      const p = new aws.iam.UserPolicy(
        `${name}-inline-${user}-${r.name}`,
        // The document exactly as compiled, as for a managed policy.
        { name: r.name, user: at(this.users, user, 'user').name, policy: JSON.stringify(r.attrs.document) },
        parent,
      );
      this.inlinePolicies[user] = this.resources[r.address] = p;
    }
    const members = new Map<string, Resource[]>();
    for (const r of byKind.get('membership')!) {
      const g = str(r, 'group');
      members.set(g, [...(members.get(g) ?? []), r]);
    }
    for (const [group, rs] of [...members].sort(([a], [b]) => (a < b ? -1 : 1))) {
      // Exclusive, like apply: a member added by hand to a datagrant group is removed again.
      const m = new aws.iam.GroupMembership(
        `${name}-members-${group}`,
        { name: `dg-members-${group}`, group: at(this.groups, group, 'group').name, users: rs.map((r) => at(this.users, str(r, 'user'), 'user').name) },
        parent,
      );
      this.groupMemberships[group] = m;
      for (const r of rs) this.resources[r.address] = m;
    }
    const rotating: string[] = [];
    for (const r of byKind.get('key')!) {
      const user = at(this.users, str(r, 'user'), 'user');
      // Issued last, after its policies and memberships, so the key works the moment it is handed out.
      const dependsOn = [...new Set(r.deps.map((d) => this.resources[d]).filter((x): x is pulumi.CustomResource => x !== undefined))];
      const key = new aws.iam.AccessKey(`${name}-key-${r.name}`, { user: user.name, status: str(r, 'status') }, { parent: this, dependsOn });
      this.accessKeys[r.name] = this.resources[r.address] = key;
      this.principals[r.name] = { userName: user.name, accessKeyId: key.id, secretAccessKey: pulumi.secret(key.secret) };
      if (r.lifecycle?.rotateAfterSeconds) rotating.push(r.name);
    }
    if (rotating.length) {
      void pulumi.log.warn(
        `the spec asks to rotate the keys of ${rotating.join(', ')}; the Pulumi component does not rotate keys ` +
          '(replace a key by hand, or use `datagrant apply`, which rotates with a grace period)',
        this,
      );
    }
    this.registerOutputs({ principals: this.principals });
  }
}

export interface DataAccessUserArgs {
  /** IAM user name (and principal name in the spec). */
  userName: string;
  bucket: string;
  /** Limit access to keys under this prefix (`training/`). */
  prefix?: string;
  /** Defaults to `read`, the seed's s3:GetObject + s3:ListBucket (datagrant's read level). */
  access?: Level;
  /** Defaults to `person`. */
  type?: 'person' | 'service';
  email?: string;
  /** IAM path; defaults to `/datagrant/`. */
  iamPath?: string;
  /** Access ends at this date (`2027-01-31`) or instant. */
  expires?: string;
  now?: Date;
}

/**
 * The seed's case: one IAM user with one access key and one policy granting access to one bucket
 * (optionally one prefix). It builds a one-principal spec and is a DataAccess for it, so it uses
 * the same compiler and creates the same objects as `datagrant apply` would for that spec.
 */
export class DataAccessUser extends DataAccess {
  static override readonly typeToken: string = 'datagrant:index:DataAccessUser';

  readonly userName: pulumi.Output<string>;
  readonly accessKeyId: pulumi.Output<string>;
  /** A Pulumi secret. */
  readonly secretAccessKey: pulumi.Output<string>;
  readonly user: aws.iam.User;
  readonly accessKey: aws.iam.AccessKey;
  /** The user's inline policy: one grant always fits one, as `datagrant apply` makes it. */
  readonly policy: aws.iam.UserPolicy;

  constructor(name: string, args: DataAccessUserArgs, opts?: pulumi.ComponentResourceOptions) {
    super(name, { spec: DataAccessUser.spec(args), ...(args.now ? { now: args.now } : {}), env: {} }, opts);
    const creds = this.principals[args.userName];
    const policy = this.inlinePolicies[args.userName];
    if (!creds || !policy) throw new Error(`DataAccessUser ${name}: the access has expired, so no user is created`);
    this.userName = creds.userName;
    this.accessKeyId = creds.accessKeyId;
    this.secretAccessKey = creds.secretAccessKey;
    this.user = this.users[args.userName]!;
    this.accessKey = this.accessKeys[args.userName]!;
    this.policy = policy;
  }

  /** The one-principal spec a DataAccessUser provisions. */
  static spec(args: DataAccessUserArgs): SpecInput {
    return {
      version: 1,
      backends: { aws: { type: 'aws', ...(args.iamPath ? { iamPath: args.iamPath } : {}) } },
      datasets: { [args.bucket]: { backend: 'aws', bucket: args.bucket, ...(args.prefix ? { prefix: args.prefix } : {}) } },
      principals: {
        [args.userName]: {
          type: args.type ?? 'person',
          ...(args.email ? { email: args.email } : {}),
          grants: [{ dataset: args.bucket, access: args.access ?? 'read', ...(args.expires ? { expires: args.expires } : {}) }],
        },
      },
    };
  }
}
