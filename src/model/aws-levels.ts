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

/**
 * The object action each level adds to the one below (`s3:GetObject`, `s3:PutObject`,
 * `s3:DeleteObject`): what a holder must be allowed on a dataset's objects to have that level.
 * The access reader asks it of every policy it reads, level by level, so a holder that may write
 * but not read shows write alone.
 */
export const S3_LEVEL_ACTION: Record<Level, string> = {
  read: S3_LEVELS.read.object[0]!,
  write: S3_LEVELS.write.object.find((a) => !S3_LEVELS.read.object.includes(a))!,
  admin: S3_LEVELS.admin.object.find((a) => !S3_LEVELS.write.object.includes(a))!,
};
