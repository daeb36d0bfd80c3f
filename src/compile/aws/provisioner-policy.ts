// The IAM policy datagrant's own identity needs on an aws backend (issue 16): what `datagrant
// iam-policy` prints. Pure: everything comes from the spec and the caller's options.
//
// Every action the AWS driver sends is in ACTION_TABLE, by the statement that grants it; a unit
// test reads the driver's source and fails when a command is sent that the table does not name (or
// the table names one nothing sends), so the policy cannot fall behind the driver.
//
// Scoping: IAM acts only in the account of the caller, so the account in a resource ARN narrows
// nothing further; what does is the path. Users and groups are datagrant's at exactly the backend's
// path (their names come from the spec), managed policies also by their `dg-` names and access-set
// roles by their `dg-s-` names. The bulk reads cannot be scoped: GetAccountAuthorizationDetails and
// the credential report are account-wide calls that IAM only authorises on `*`.
import type { Json } from '../../core/types.js';
import { DEFAULT_IAM_PATH, SESSION_ROLE_PREFIX } from '../../model/aws.js';
import { credentialsOf, isS3Dataset, ROLE_ARN_RE, type AwsBackendSpec, type Spec } from '../../spec/schema.js';

/** The statements of the policy, one concern each; their Sids are what operators read. */
export type PolicyConcern =
  | 'ReadAccount'
  | 'ManageUsers'
  | 'ManageAccessKeys'
  | 'ManageGroups'
  | 'ManagePolicies'
  | 'AttachOwnPoliciesOnly'
  | 'ManageAccessSetRoles'
  | 'IssueSessions'
  | 'ReadOwnRole'
  | 'ReadEffectiveAccess'
  | 'ReadDatasetBucketPolicies';

/**
 * Every AWS action datagrant's driver can send, and the statement that allows it. `caller` is what
 * the identity in the standard credential chain needs before any of these: STS AssumeRole on the
 * backend's `assumeRole`. `none`: AWS authorises it for everyone.
 */
export const ACTION_TABLE: Readonly<Record<string, PolicyConcern | 'caller' | 'none'>> = {
  // Who datagrant is (account, partition): every identity may ask.
  'sts:GetCallerIdentity': 'none',
  'sts:AssumeRole': 'IssueSessions',

  'iam:GetAccountAuthorizationDetails': 'ReadAccount',
  'iam:GenerateCredentialReport': 'ReadAccount',
  'iam:GetCredentialReport': 'ReadAccount',
  'iam:ListRoles': 'ReadAccount',

  'iam:CreateUser': 'ManageUsers',
  'iam:GetUser': 'ManageUsers',
  'iam:TagUser': 'ManageUsers',
  'iam:UntagUser': 'ManageUsers',
  'iam:UpdateUser': 'ManageUsers',
  'iam:DeleteUser': 'ManageUsers',
  'iam:PutUserPolicy': 'ManageUsers',
  'iam:DeleteUserPolicy': 'ManageUsers',
  'iam:DetachUserPolicy': 'ManageUsers',
  // What a user may hold that blocks DeleteUser: removed only when IAM refuses the delete.
  'iam:DeleteLoginProfile': 'ManageUsers',
  'iam:ListSigningCertificates': 'ManageUsers',
  'iam:DeleteSigningCertificate': 'ManageUsers',
  'iam:ListSSHPublicKeys': 'ManageUsers',
  'iam:DeleteSSHPublicKey': 'ManageUsers',
  'iam:ListServiceSpecificCredentials': 'ManageUsers',
  'iam:DeleteServiceSpecificCredential': 'ManageUsers',
  'iam:ListMFADevices': 'ManageUsers',
  'iam:DeactivateMFADevice': 'ManageUsers',

  'iam:CreateAccessKey': 'ManageAccessKeys',
  'iam:UpdateAccessKey': 'ManageAccessKeys',
  'iam:DeleteAccessKey': 'ManageAccessKeys',
  'iam:ListAccessKeys': 'ManageAccessKeys',
  'iam:GetAccessKeyLastUsed': 'ManageAccessKeys',

  'iam:CreateGroup': 'ManageGroups',
  'iam:GetGroup': 'ManageGroups',
  'iam:UpdateGroup': 'ManageGroups',
  'iam:DeleteGroup': 'ManageGroups',
  'iam:AddUserToGroup': 'ManageGroups',
  'iam:RemoveUserFromGroup': 'ManageGroups',
  'iam:PutGroupPolicy': 'ManageGroups',
  'iam:DeleteGroupPolicy': 'ManageGroups',
  'iam:DetachGroupPolicy': 'ManageGroups',

  'iam:CreatePolicy': 'ManagePolicies',
  'iam:GetPolicy': 'ManagePolicies',
  'iam:GetPolicyVersion': 'ManagePolicies',
  'iam:ListPolicyVersions': 'ManagePolicies',
  'iam:CreatePolicyVersion': 'ManagePolicies',
  'iam:DeletePolicyVersion': 'ManagePolicies',
  'iam:DeletePolicy': 'ManagePolicies',
  'iam:ListEntitiesForPolicy': 'ManagePolicies',

  'iam:AttachUserPolicy': 'AttachOwnPoliciesOnly',
  'iam:AttachGroupPolicy': 'AttachOwnPoliciesOnly',
  'iam:AttachRolePolicy': 'AttachOwnPoliciesOnly',

  'iam:CreateRole': 'ManageAccessSetRoles',
  'iam:GetRole': 'ManageAccessSetRoles',
  'iam:UpdateRole': 'ManageAccessSetRoles',
  'iam:UpdateAssumeRolePolicy': 'ManageAccessSetRoles',
  'iam:TagRole': 'ManageAccessSetRoles',
  'iam:UntagRole': 'ManageAccessSetRoles',
  'iam:DeleteRole': 'ManageAccessSetRoles',
  'iam:PutRolePolicy': 'ManageAccessSetRoles',
  'iam:DeleteRolePolicy': 'ManageAccessSetRoles',
  'iam:DetachRolePolicy': 'ManageAccessSetRoles',

  's3:GetBucketPolicy': 'ReadDatasetBucketPolicies',
};

/** Actions a statement allows beyond the table's one home (the same action, other resources). */
const ALSO: Partial<Record<PolicyConcern, string[]>> = {
  // sts:SetSourceIdentity: every session names its principal (the roles' trust policy requires it).
  IssueSessions: ['sts:SetSourceIdentity'],
  // The identity datagrant runs as, when it is a role: the access-set roles' trust policy names it.
  ReadOwnRole: ['iam:GetRole'],
  // Any attached policy the bulk read did not carry, AWS managed ones included.
  ReadEffectiveAccess: ['iam:GetPolicy', 'iam:GetPolicyVersion'],
};

const WHY: Record<PolicyConcern, string> = {
  ReadAccount:
    'the bulk read of every plan: GetAccountAuthorizationDetails, the credential report and ListRoles are account-wide calls that IAM authorises only on "*"; they read, never change',
  ManageUsers: "datagrant's IAM users, only at its path: create, tag, move, delete, their inline policies, detaching what someone else attached",
  ManageAccessKeys: "the access keys of datagrant's users: issue, rotate, deactivate, delete, list",
  ManageGroups: "datagrant's IAM groups, only at its path, their members and their inline policies",
  ManagePolicies: 'the managed policies datagrant writes (dg-*), only at its path, and their versions',
  AttachOwnPoliciesOnly:
    "attaching a managed policy to datagrant's users, groups or roles, only one of datagrant's own (iam:PolicyARN): it cannot attach AdministratorAccess",
  ManageAccessSetRoles: 'the roles temporary principals run as (dg-s-*), only at its path: create, trust policy, inline policies, delete',
  IssueSessions: 'sessions for temporary principals: AssumeRole on the access-set roles, naming the principal as SourceIdentity',
  ReadOwnRole: "the role datagrant runs as, which the access-set roles' trust policy names with its path",
  ReadEffectiveAccess:
    '`datagrant access` and reviews only: any managed policy (AWS managed too) attached to anyone in the account that the bulk read did not carry',
  ReadDatasetBucketPolicies: '`datagrant access` and reviews only: the bucket policy of each S3 dataset, which may grant access too',
};

export interface ProvisionerPolicyOptions {
  /** The account id; default the `assumeRole`'s, else `*` (IAM acts only in the caller's account). */
  account?: string;
  /** Add what `datagrant access` and reviews read. */
  withAccess?: boolean;
}

export interface ProvisionerPolicy {
  backend: string;
  document: Json;
  /** What each statement is for, by Sid. */
  statements: { sid: PolicyConcern; why: string; actions: string[]; resources: string[] }[];
  /** What the policy cannot say and the operator must know. */
  notes: string[];
  /** With `assumeRole`: the policy the identity of the standard credential chain needs to assume it. */
  caller?: Json;
}

/** Whether any principal gets sessions: the access-set roles and AssumeRole are needed only then. */
export function usesSessions(spec: Spec): boolean {
  return spec.settings?.credentials === 'temporary' || Object.values(spec.principals).some((p) => credentialsOf(spec, p) === 'temporary');
}

/** IAM's partition for a region, when no role ARN says it. */
function partitionOf(b: AwsBackendSpec): string {
  const role = b.assumeRole ? ROLE_ARN_RE.exec(b.assumeRole.roleArn) : null;
  if (role) return role[1]!;
  if (b.region?.startsWith('cn-')) return 'aws-cn';
  if (b.region?.startsWith('us-gov-')) return 'aws-us-gov';
  return 'aws';
}

export function provisionerPolicy(spec: Spec, backendName: string, opts: ProvisionerPolicyOptions = {}): ProvisionerPolicy {
  const b = spec.backends[backendName];
  if (!b || b.type !== 'aws') throw new Error(`backend ${backendName} is not an aws backend`);
  const role = b.assumeRole ? ROLE_ARN_RE.exec(b.assumeRole.roleArn) : null;
  const account = opts.account ?? role?.[3] ?? '*';
  const partition = partitionOf(b);
  const path = b.iamPath ?? DEFAULT_IAM_PATH;
  const iam = (type: string, name: string) => `arn:${partition}:iam::${account}:${type}${path}${name}`;
  const users = iam('user', '*');
  const groups = iam('group', '*');
  const policies = iam('policy', 'dg-*');
  const roles = iam('role', `${SESSION_ROLE_PREFIX}*`);
  const sessions = usesSessions(spec);
  const buckets = [
    ...new Set(
      Object.values(spec.datasets)
        .filter((d) => d.backend === backendName)
        .filter(isS3Dataset)
        .map((d) => d.bucket),
    ),
  ].sort();

  const resourcesOf: Record<PolicyConcern, string[]> = {
    ReadAccount: ['*'],
    ManageUsers: [users],
    ManageAccessKeys: [users],
    ManageGroups: [groups],
    ManagePolicies: [policies],
    AttachOwnPoliciesOnly: [users, groups, ...(sessions ? [roles] : [])],
    ManageAccessSetRoles: [roles],
    IssueSessions: [roles],
    ReadOwnRole: b.assumeRole ? [b.assumeRole.roleArn] : [],
    ReadEffectiveAccess: ['*'],
    ReadDatasetBucketPolicies: buckets.map((x) => `arn:${partition}:s3:::${x}`),
  };
  const wanted: PolicyConcern[] = [
    'ReadAccount',
    'ManageUsers',
    'ManageAccessKeys',
    'ManageGroups',
    'ManagePolicies',
    'AttachOwnPoliciesOnly',
    ...(sessions ? (['ManageAccessSetRoles', 'IssueSessions'] as const) : []),
    ...(sessions && b.assumeRole ? (['ReadOwnRole'] as const) : []),
    ...(opts.withAccess ? (['ReadEffectiveAccess'] as const) : []),
    ...(opts.withAccess && buckets.length ? (['ReadDatasetBucketPolicies'] as const) : []),
  ];
  const actionsOf = (sid: PolicyConcern) =>
    [
      ...Object.entries(ACTION_TABLE)
        .filter(([, home]) => home === sid)
        .map(([a]) => a),
      ...(ALSO[sid] ?? []),
    ]
      // A role's attach is needed only where roles exist.
      .filter((a) => sessions || a !== 'iam:AttachRolePolicy')
      .sort();

  const statements = wanted.map((sid) => ({ sid, why: WHY[sid], actions: actionsOf(sid), resources: resourcesOf[sid] }));
  const conditions: Partial<Record<PolicyConcern, Json>> = {
    AttachOwnPoliciesOnly: { ArnLike: { 'iam:PolicyARN': policies } },
    IssueSessions: { Null: { 'sts:SourceIdentity': 'false' } },
  };
  const document: Json = {
    Version: '2012-10-17',
    Statement: statements.map((s): Json => {
      const condition = conditions[s.sid];
      return {
        Sid: s.sid,
        Effect: 'Allow',
        Action: s.actions,
        Resource: s.resources.length === 1 ? s.resources[0]! : s.resources,
        ...(condition ? { Condition: condition } : {}),
      };
    }),
  };

  const notes = [
    `Attach it to the identity datagrant runs as, which must live outside ${path}: inside it, datagrant would own (and could rewrite) its own permissions.`,
    'sts:GetCallerIdentity, which datagrant asks once per run and to confirm new keys, needs no permission.',
    ...(account === '*'
      ? ['The account is "*": IAM acts only in the account of the caller, so this grants nothing in any other account. Pass --account to name it.']
      : []),
    ...(sessions
      ? []
      : [
          'No principal has temporary credentials, so there are no access-set roles and no STS statement. If roles were made before (a principal had credentials: temporary), keep the previous policy until an apply has deleted them.',
        ]),
    ...(sessions && !b.assumeRole
      ? [
          "If datagrant runs as an IAM role (an instance profile, a pod's role), add iam:GetRole on that role's ARN: the access-set roles' trust policy names it with its path, which only IAM knows. Without it, a role with a path gets a trust policy that names it without the path.",
        ]
      : []),
    ...(opts.withAccess ? [] : ['`datagrant access` and reviews read more (bucket policies, any attached policy): add --with-access for them.']),
    "Inline policies are datagrant's way to grant, so whoever holds this policy can give its own users any permission; keep datagrant's credentials as guarded as an administrator's, and watch CloudTrail for its calls outside this policy (AccessDenied).",
  ];
  const caller: Json | undefined = b.assumeRole
    ? {
        Version: '2012-10-17',
        Statement: [{ Sid: 'AssumeDatagrantRole', Effect: 'Allow', Action: ['sts:AssumeRole'], Resource: b.assumeRole.roleArn }],
      }
    : undefined;
  return { backend: backendName, document, statements, notes, ...(caller ? { caller } : {}) };
}
