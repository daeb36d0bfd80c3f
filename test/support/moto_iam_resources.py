"""moto_server that judges IAM calls by the resource AWS authorises them on.

moto's IAM enforcement checks a policy's Action, but evaluates every IAM call (other than one
naming an existing role) against the resource "*": a statement scoped to a path, such as
arn:aws:iam::*:user/datagrant/*, then allows nothing, and one on "*" allows everything. The
least-privilege test (test/e2e/aws-provisioner-policy.test.ts) needs the path to count, so this
launcher gives each IAM request the ARN AWS documents for it (the service authorization
reference's resource type of the action), with the entity's path as IAM stores it:

- user calls (keys, inline and attached policies, tags, credentials): the user;
  CreateUser: the user at the request's Path;
- AddUserToGroup and RemoveUserFromGroup: the group; other group calls: the group;
- role calls: the role (CreateRole: at the request's Path);
- calls naming a PolicyArn, other than attaching and detaching: the policy; CreatePolicy: at Path;
- everything else (GetAccountAuthorizationDetails, the credential report, ListRoles): "*".

An entity that does not exist is named at the path "/". And a user's key acts as the user's ARN
with its path, as GetCallerIdentity says (moto leaves the path out there, so a role trusting a user
that has a path would never let it assume the role). Conditions stay as moto treats them
(operators other than StringEquals are not evaluated). Usage: python3 moto_iam_resources.py
[moto_server arguments].
"""

import sys

from moto.iam import access_control
from moto.iam import responses as iam_responses
from moto.server import main

GROUP_FIRST = {"AddUserToGroup", "RemoveUserFromGroup"}


def _arn(self, kind, name, path):
    return f"arn:{self.partition}:iam::{self.current_account}:{kind}{path or '/'}{name}"


def _stored_path(lookup, name):
    try:
        return lookup(name).path
    except Exception:  # NoSuchEntity: named at the root, as no path is known
        return "/"


def _param(self, name):
    value = self.data.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _determine_resource(self):
    action = self._get_action()
    user = _param(self, "UserName")
    group = _param(self, "GroupName")
    role = _param(self, "RoleName")
    policy_arn = _param(self, "PolicyArn")
    path = _param(self, "Path")
    if action == "CreateUser":
        return _arn(self, "user", user, path)
    if action == "CreateGroup":
        return _arn(self, "group", group, path)
    if action == "CreateRole":
        return _arn(self, "role", role, path)
    if action == "CreatePolicy":
        return _arn(self, "policy", _param(self, "PolicyName"), path)
    if group and (action in GROUP_FIRST or not user):
        return _arn(self, "group", group, _stored_path(self.backend.get_group, group))
    if user:
        return _arn(self, "user", user, _stored_path(self.backend.get_user, user))
    if role:
        return _arn(self, "role", role, _stored_path(self.backend.get_role, role))
    if policy_arn:
        return policy_arn
    return "*"


def _user_arn(self):
    user = self.backend.get_user(self._owner_user_name)
    return f"arn:{self.partition}:iam::{self.account_id}:user{user.path}{user.name}"


iam_responses.IamResponse._determine_resource = _determine_resource
access_control.IAMUserAccessKey.arn = property(_user_arn)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
