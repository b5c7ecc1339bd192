// A token-level diff of two outputs (pure), for the side-by-side of a run and the full
// model: the longest common subsequence of the token texts, each side's tokens marked as
// shared or as only its own. Unit-tested in test/unit/diff.test.mjs.

export interface DiffToken {
  text: string;
  /** Not part of the common subsequence: this side has it, the other does not. */
  changed: boolean;
}

export interface Diff {
  left: DiffToken[];
  right: DiffToken[];
  /** Tokens in the common subsequence. */
  same: number;
}

export function diffTokens(left: string[], right: string[]): Diff {
  const n = left.length;
  const m = right.length;
  // lcs[i][j]: the LCS length of left[i..] and right[j..].
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = left[i] === right[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const l: DiffToken[] = left.map((text) => ({ text, changed: true }));
  const r: DiffToken[] = right.map((text) => ({ text, changed: true }));
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (left[i] === right[j]) {
      l[i++].changed = false;
      r[j++].changed = false;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) {
      i++;
    } else {
      j++;
    }
  }
  return { left: l, right: r, same: lcs[0][0] };
}
