// `fdbroker run --watch PATH`: development mode. A change under any watched
// path (a file, or a directory and everything under it) redeploys after
// WATCH_DEBOUNCE_MS of quiet, so an editor's burst of writes is one deploy.
// A change while a deploy is in flight is kept and deployed after it.
import * as fs from 'node:fs';

/** --watch: changes are gathered until none came for this long, then one deploy. */
export const WATCH_DEBOUNCE_MS = 300;

export class Watcher {
  private readonly watchers: fs.FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;

  /** Throws (ENOENT, ...) if a path cannot be watched; nothing is left watching then. */
  constructor(paths: string[], private readonly onChange: (path: string) => void, private readonly debounceMs = WATCH_DEBOUNCE_MS) {
    try {
      for (const p of paths) {
        const dir = fs.statSync(p).isDirectory();
        this.watchers.push(fs.watch(p, { recursive: dir, persistent: false }, (_e, name) => this.changed(name ? `${p}/${name}` : p)));
      }
    } catch (err) {
      this.close();
      throw err;
    }
  }

  private changed(path: string): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.onChange(path), this.debounceMs);
  }

  close(): void {
    clearTimeout(this.timer);
    for (const w of this.watchers) w.close();
    this.watchers.length = 0;
  }
}
