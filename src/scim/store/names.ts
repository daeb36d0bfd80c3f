// Principal names for new users (and users from before names were stored): the first candidate
// of identities.ts never given to any user and not reserved by the spec.
import { principalNameCandidates } from '../identities.js';

export const folded = (names: Iterable<string> | undefined) => new Set([...(names ?? [])].map((n) => n.toLowerCase()));

/** The first of `userName`'s candidate names outside `reserved` that `claim` (which records it) accepts. */
export function claimFirst(userName: string, reserved: ReadonlySet<string>, claim: (name: string) => boolean): string {
  const candidates = principalNameCandidates(userName);
  for (;;) {
    const name = candidates.next().value;
    if (!reserved.has(name) && claim(name)) return name;
  }
}

/**
 * Names for users without one (a store from before names were kept), in the order given: active
 * users first, in creation order — exactly the names the backends already hold for them, since
 * names used to be computed over active users only — then inactive ones. `taken` holds every name
 * ever given and grows.
 */
export function nameInOrder(
  users: readonly { id: string; user_name: string | null }[],
  taken: Set<string>,
  reserved: ReadonlySet<string>,
): { id: string; name: string }[] {
  const claim = (name: string) => {
    if (taken.has(name)) return false;
    taken.add(name);
    return true;
  };
  return users.map((u) => ({ id: u.id, name: claimFirst(u.user_name ?? '', reserved, claim) }));
}
