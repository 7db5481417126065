// Lossless JSON for the oracles: JSON.parse turns every number into a double, which loses digits
// (64-bit ids in twitter.json, 17-digit decimals in canada.json, 1e400 becomes Infinity, 1.10
// becomes 1.1). pollcast promises to keep each number's text, so the oracles must see that text
// too. parse() keeps every number as a "number string": a JS string made of the marker NUM
// followed by the number's exact text. fast-json-patch then moves these strings around like any
// other value, equality of two numbers is equality of their text (pollcast's own rule), and
// stringify() writes the text back unchanged.
//
// Contract that keeps the marker unambiguous: no real string value starts with NUM ("\u0000#").
// The corpora hold no NUL at all, and the mutator never generates a string that starts with NUL.
// parse() checks the input and throws when a real string would be mistaken for a number.

export const NUM = '\u0000#';

// One token at a time: a whole string literal (kept as is), or a number literal (wrapped).
// Outside string literals a digit or '-' can only start a number.
const TOKEN_RE = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
const MARKED_RE = /"\\u0000#(-?[0-9][0-9.eE+-]*)"/g;

export function isNum(v) {
  return typeof v === 'string' && v.startsWith(NUM);
}

// Returns the number string for a number literal's text (no validation: callers pass literals).
export function num(text) {
  return NUM + text;
}

// The literal text of a number string.
export function numText(v) {
  return v.slice(NUM.length);
}

// Parses JSON text, keeping each number's text. Throws SyntaxError on invalid JSON (the wrapped
// text is still valid JSON exactly when the input is: a number token becomes a string token).
export function parse(text) {
  const wrapped = text.replace(TOKEN_RE, (tok) => {
    if (tok.charCodeAt(0) !== 34) return '"\\u0000#' + tok + '"';
    if (tok.startsWith('"\\u0000#')) throw new Error('ljson: a string starts with the number marker');
    return tok;
  });
  return JSON.parse(wrapped);
}

// Compact JSON text of v, numbers written as their original text. Object members in JS order
// (JS puts integer-like keys first; callers write both sides of a pair with this function, so
// both sides agree).
export function stringify(v) {
  return JSON.stringify(v).replace(MARKED_RE, '$1');
}

// Returns null when a and b are the same JSON value, or a short description of the first
// difference found (RFC 6901 path and what differs). Object member order is not significant
// (RFC 6902 cannot express it); numbers compare by their text; strings by their code units.
export function firstDifference(a, b, path = '') {
  if (a === b) return null;
  const ta = kind(a);
  const tb = kind(b);
  if (ta !== tb) return `${path || '(root)'}: ${ta} ${brief(a)} vs ${tb} ${brief(b)}`;
  if (ta === 'array') {
    if (a.length !== b.length) {
      return `${path || '(root)'}: array length ${a.length} vs ${b.length}`;
    }
    for (let i = 0; i < a.length; i++) {
      const d = firstDifference(a[i], b[i], `${path}/${i}`);
      if (d) return d;
    }
    return null;
  }
  if (ta === 'object') {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    for (const k of ka) {
      if (!Object.prototype.hasOwnProperty.call(b, k)) {
        return `${path}/${escapeToken(k)}: present vs missing`;
      }
    }
    for (const k of kb) {
      if (!Object.prototype.hasOwnProperty.call(a, k)) {
        return `${path}/${escapeToken(k)}: missing vs present`;
      }
    }
    for (const k of ka) {
      const d = firstDifference(a[k], b[k], `${path}/${escapeToken(k)}`);
      if (d) return d;
    }
    return null;
  }
  return `${path || '(root)'}: ${brief(a)} vs ${brief(b)}`;
}

export function deepEqual(a, b) {
  return firstDifference(a, b) === null;
}

export function kind(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (isNum(v)) return 'number';
  if (typeof v === 'number') return 'js-number';
  return typeof v;
}

export function escapeToken(k) {
  return k.replace(/~/g, '~0').replace(/\//g, '~1');
}

function brief(v) {
  const s = v === undefined ? 'undefined' : stringify(v);
  return s.length > 80 ? s.slice(0, 77) + '...' : s;
}
