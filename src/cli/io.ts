// Where the CLI writes: stdout and stderr lines (tests pass their own).
export interface Io { out: (s: string) => void; err: (s: string) => void }
