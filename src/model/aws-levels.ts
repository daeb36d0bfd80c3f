// The one table that says what an access level means in S3. Object actions apply to
// `arn:aws:s3:::bucket/prefix*`; bucket actions to `arn:aws:s3:::bucket`.
import type { Level } from '../core/types.js';

export interface S3Actions {
  object: readonly string[];
  /** Bucket actions that reveal no object data. */
  bucket: readonly string[];
  /** Listing, kept inside a prefixed dataset's prefix by an `s3:prefix` condition. */
  listing: readonly string[];
  /** Bucket actions IAM cannot limit to a prefix: granted only when the dataset is a whole bucket. */
  wholeBucketOnly: readonly string[];
}

const READ: S3Actions = {
  object: ['s3:GetObject', 's3:GetObjectVersion'],
  bucket: ['s3:GetBucketLocation'],
  listing: ['s3:ListBucket'],
  wholeBucketOnly: [],
};

const WRITE: S3Actions = {
  ...READ,
  object: [...READ.object, 's3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'],
  wholeBucketOnly: ['s3:ListBucketMultipartUploads'],
};

const ADMIN: S3Actions = {
  ...WRITE,
  object: [...WRITE.object, 's3:DeleteObject', 's3:DeleteObjectVersion'],
};

export const S3_LEVELS: Record<Level, S3Actions> = { read: READ, write: WRITE, admin: ADMIN };

// ---------------------------------------------------------------- what gives a level (effective access)

/** An action that gives a level to whoever may do it on the dataset, and on what it is asked. */
export interface LevelAction {
  action: string;
  /** Its resource: the dataset's objects (`arn:aws:s3:::bucket/prefix*`) or its bucket (`arn:aws:s3:::bucket`). */
  on: 'object' | 'bucket';
  /**
   * What holding it lets one do, in words, for an action that is not itself reading, writing or
   * deleting data (the holder gets there by changing who may): named on the path.
   */
  gives?: (bucket: string) => string;
}

/**
 * What the access reader asks of every policy, level by level: a holder may do *any* of a level's
 * actions on some of the dataset, it has the level (so a Deny of s3:GetObject beside an Allow of
 * s3:* still leaves read, through s3:GetObjectVersion). Levels are read independently — a holder
 * that may write but not read shows write alone — which is why these are not cumulative like
 * S3_LEVELS.
 *
 * Admin is deleting data, or controlling the bucket in a way that gives oneself or anyone any
 * access, or destroys the data without a DeleteObject: rewriting or removing the bucket policy
 * (its Allows and its Denies), rewriting the bucket's or an object's ACL, lifecycle rules (an
 * expiration rule deletes every object, and every old version, within a day). Not
 * s3:PutBucketVersioning: suspending versioning changes no object and lets no one in; it only
 * makes later overwrites and deletes final, and those need write or admin, reported already.
 * Not s3:DeleteBucket either: S3 refuses it while the bucket holds any object.
 */
export const S3_LEVEL_ACTIONS: Record<Level, readonly LevelAction[]> = {
  read: [
    { action: 's3:GetObject', on: 'object' },
    { action: 's3:GetObjectVersion', on: 'object' },
  ],
  write: [{ action: 's3:PutObject', on: 'object' }],
  admin: [
    { action: 's3:DeleteObject', on: 'object' },
    { action: 's3:DeleteObjectVersion', on: 'object' },
    { action: 's3:PutObjectAcl', on: 'object', gives: () => 'can rewrite the ACLs of its objects' },
    { action: 's3:PutBucketPolicy', on: 'bucket', gives: (b) => `can rewrite the bucket policy of ${b}` },
    { action: 's3:DeleteBucketPolicy', on: 'bucket', gives: (b) => `can delete the bucket policy of ${b}` },
    { action: 's3:PutBucketAcl', on: 'bucket', gives: (b) => `can rewrite the ACL of bucket ${b}` },
    { action: 's3:PutLifecycleConfiguration', on: 'bucket', gives: (b) => `can set lifecycle rules that delete the objects of ${b}` },
  ],
};

/**
 * IAM actions with which a holder can give itself any access, whatever its policies allow on S3
 * now (privilege escalation), by what they must be allowed on:
 *  - `self`: the holder's own user or role (a policy of its own, or attached to it);
 *  - `own-groups`: a group the user is in; `own-policies`: a customer managed policy attached to
 *    it or to its groups (a new default version of it);
 *  - `other-users`, `other-roles`, `other-groups`: anyone else's (a key or password of another user,
 *    a role's trust policy rewritten to trust oneself, a role passed to code one runs, oneself
 *    added to a group), whose access becomes the holder's.
 */
export type EscalationTarget = 'self' | 'own-groups' | 'own-policies' | 'other-users' | 'other-roles' | 'other-groups';

export const IAM_ESCALATION: readonly { action: string; target: EscalationTarget; holder?: 'user' | 'role' }[] = [
  { action: 'iam:PutUserPolicy', target: 'self', holder: 'user' },
  { action: 'iam:AttachUserPolicy', target: 'self', holder: 'user' },
  { action: 'iam:PutRolePolicy', target: 'self', holder: 'role' },
  { action: 'iam:AttachRolePolicy', target: 'self', holder: 'role' },
  { action: 'iam:PutGroupPolicy', target: 'own-groups', holder: 'user' },
  { action: 'iam:AttachGroupPolicy', target: 'own-groups', holder: 'user' },
  { action: 'iam:CreatePolicyVersion', target: 'own-policies' },
  { action: 'iam:SetDefaultPolicyVersion', target: 'own-policies' },
  { action: 'iam:AddUserToGroup', target: 'other-groups', holder: 'user' },
  { action: 'iam:CreateAccessKey', target: 'other-users' },
  { action: 'iam:CreateLoginProfile', target: 'other-users' },
  { action: 'iam:UpdateLoginProfile', target: 'other-users' },
  { action: 'iam:UpdateAssumeRolePolicy', target: 'other-roles' },
  { action: 'iam:PassRole', target: 'other-roles' },
];

/**
 * iam:PassRole escalates only with a way to run code as the passed role: one of these (on any
 * resource). The common ones; a service missing here hides an escalation only for a holder that
 * may pass roles and run code nowhere else.
 */
export const RUN_CODE_ACTIONS: readonly string[] = [
  'lambda:CreateFunction',
  'ec2:RunInstances',
  'ecs:RunTask',
  'ecs:RegisterTaskDefinition',
  'glue:CreateJob',
  'glue:UpdateJob',
  'glue:CreateDevEndpoint',
  'cloudformation:CreateStack',
  'cloudformation:UpdateStack',
  'sagemaker:CreateNotebookInstance',
  'sagemaker:CreateTrainingJob',
  'sagemaker:CreateProcessingJob',
  'codebuild:CreateProject',
  'datapipeline:CreatePipeline',
  'states:CreateStateMachine',
  'batch:RegisterJobDefinition',
];
