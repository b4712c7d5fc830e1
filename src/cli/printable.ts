// Text that others chose (a generation's label, a process's comm), made safe
// to print on an operator's terminal: control characters (C0, DEL, C1, which
// include ESC and CSI), line breaks and bidirectional overrides are written
// as escapes (\x1b, \n, \u202e), and a backslash as \\, so what is shown is
// what was sent, and nothing of it acts on the terminal.
const UNSAFE = /[\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

export function printable(text: string): string {
  return text.replace(UNSAFE, (ch) => {
    if (ch === '\\') return '\\\\';
    if (ch === '\n') return '\\n';
    if (ch === '\r') return '\\r';
    if (ch === '\t') return '\\t';
    const code = ch.charCodeAt(0);
    return code < 0x80 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}
