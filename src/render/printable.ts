// Names an attacker may choose reach the terminal: a PostgreSQL role may be called "x\x1b[2K", an
// IAM path may hold a right-to-left override. Text output shows such characters as escapes, so a
// line can never be erased, hidden or reordered on the reader's screen. (HTML and CSV escape on
// their own terms.)

// C0 and C1 controls (tab and newline included: a name never holds one legitimately) and the
// bidirectional embeddings, overrides and isolates.
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

export function printable(s: string): string {
  return s.replace(UNPRINTABLE, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}

/** `printable` on every line of a text, its line breaks kept. */
export function printableLines(text: string): string {
  return text.split('\n').map(printable).join('\n');
}
