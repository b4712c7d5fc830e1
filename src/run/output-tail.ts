// The last lines a process wrote, kept so that a failure (a deploy that does
// not become ready, a crash) can be reported with the process's own words.
import { OUTPUT_TAIL_LINE_BYTES, OUTPUT_TAIL_LINES } from './defaults';

export class OutputTail {
  private readonly lines: string[] = [];
  private partial = '';

  constructor(private readonly max = OUTPUT_TAIL_LINES, private readonly lineBytes = OUTPUT_TAIL_LINE_BYTES) {}

  push(chunk: Buffer | string): void {
    const parts = (this.partial + chunk.toString()).split('\n');
    this.partial = parts.pop()!.slice(0, this.lineBytes);
    for (const p of parts) {
      this.lines.push(p.slice(0, this.lineBytes));
      if (this.lines.length > this.max) this.lines.shift();
    }
  }

  /** The kept lines, oldest first (an unfinished last line included). */
  text(): string[] {
    const out = this.partial ? [...this.lines, this.partial] : [...this.lines];
    return out.slice(-this.max);
  }
}
