// CSV that spreadsheets open as data: RFC 4180 quoting, and a cell that a spreadsheet would run as
// a formula (starting with = + - @, a tab or a carriage return) prefixed with ' so it stays text.
// Access reports and review evidence carry names an attacker may choose (an IAM user, a role).

const FORMULA = /^[=+\-@\t\r]/;

export function csvCell(value: string | number | boolean | null | undefined): string {
  let s = value === null || value === undefined ? '' : String(value);
  if (FORMULA.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) || s !== s.trim() ? `"${s.replace(/"/g, '""')}"` : s;
}

/** A header line and one line per row, CRLF-terminated as RFC 4180 says. */
export function csv(header: readonly string[], rows: readonly (readonly (string | number | boolean | null | undefined)[])[]): string {
  return [header, ...rows].map((r) => r.map(csvCell).join(',')).join('\r\n') + '\r\n';
}
