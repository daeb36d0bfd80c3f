// Requests for access as text: `datagrant requests list` and what each other command reports.
import type { AccessRequest } from '../model/request.js';

/** A request with its state now, and who may decide it while pending. */
export type RequestView = AccessRequest & { stateNow: AccessRequest['state']; approvers?: string[] };

const q = (s: string) => JSON.stringify(s);

/** One line of what it asks for and what became of it. */
export function describeRequest(r: RequestView): string {
  const asks = `${r.requester}: ${r.level} on ${r.dataset} for ${r.duration}`;
  switch (r.stateNow) {
    case 'pending':
      return `${asks}, asked ${r.requestedAt}; approvers: ${r.approvers?.length ? r.approvers.join(', ') : '(none under the spec as it is now)'}`;
    case 'approved':
      return `${asks}, approved by ${r.decision!.by} ${r.decision!.at}; ends ${r.endsAt}`;
    case 'denied':
      return `${asks}, denied by ${r.decision!.by} ${r.decision!.at}`;
    case 'cancelled':
      return `${asks}, cancelled by ${r.closed!.by ?? 'the requester'} ${r.closed!.at}${r.decision ? ` (approved by ${r.decision.by})` : ''}`;
    case 'expired':
      return r.closed
        ? `${asks}, expired ${r.closed.at}: ${r.closed.reason}`
        : r.endsAt
          ? `${asks}, approved by ${r.decision!.by}; ended ${r.endsAt}`
          : `${asks}, asked ${r.requestedAt}; nobody decided it in time`;
  }
}

export function renderRequestList(requests: readonly RequestView[]): string {
  if (requests.length === 0) return 'No requests.\n';
  const width = Math.max(...requests.map((r) => `#${r.id}`.length));
  const out: string[] = [];
  for (const r of requests) {
    out.push(`${`#${r.id}`.padEnd(width)}  ${r.stateNow.padEnd(9)}  ${describeRequest(r)}`);
    const pad = ' '.repeat(width + 2);
    out.push(`${pad}reason: ${q(r.reason)}`);
    if (r.decision) out.push(`${pad}${r.state === 'denied' ? 'denied' : 'approved'}: ${q(r.decision.reason)}`);
    if (r.closed?.by) out.push(`${pad}cancelled: ${q(r.closed.reason)}`);
  }
  return `${out.join('\n')}\n`;
}
