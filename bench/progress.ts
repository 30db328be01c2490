// Progress on stderr (stdout stays clean for --json): redrawn in place on a terminal, a line per step otherwise.

export interface Progress {
  tick(): void;
  done(summary: string): void;
}

export const log = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`);
};

export function progress(label: string, total: number): Progress {
  const tty = process.stderr.isTTY;
  let count = 0;
  let drawnAt = 0;
  const draw = () => process.stderr.write(`\r[bench] ${label}: ${count}/${total}`);
  return {
    tick() {
      count++;
      const now = performance.now();
      if (tty && now - drawnAt > 100) {
        drawnAt = now;
        draw();
      }
    },
    done(summary) {
      if (tty) process.stderr.write('\r\x1b[2K');
      log(`${label}: ${summary}`);
    },
  };
}
