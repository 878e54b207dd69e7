/**
 * One formatter for every invalid-parameter error, in the style of sharp's `lib/is.js`:
 * `Expected <what> for <parameter> but received <value> of type <type>`.
 */

/** Describes a received value for an error message: its text (shortened) and its type. */
function describe(value: unknown): string {
  let text: string;
  try {
    text = typeof value === 'string' ? JSON.stringify(value) : String(value);
  } catch {
    text = Object.prototype.toString.call(value);
  }
  if (text.length > 120) text = `${text.slice(0, 117)}...`;
  return `${text} of type ${value === null ? 'null' : typeof value}`;
}

/**
 * Builds the error thrown for a bad parameter.
 *
 * @example
 * throw invalidParameterError('batchSize', 'positive integer', -1);
 * // Error: Expected positive integer for batchSize but received -1 of type number
 */
export function invalidParameterError(parameter: string, expected: string, received: unknown): Error {
  return new Error(`Expected ${expected} for ${parameter} but received ${describe(received)}`);
}

/** Returns `value` if it is an integer in [min, max], else throws {@link invalidParameterError}. */
export function expectInteger(parameter: string, value: unknown, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? (min === 1 ? 'positive integer' : `integer >= ${min}`) : `integer between ${min} and ${max}`;
    throw invalidParameterError(parameter, range, value);
  }
  return n;
}

/** Returns `value` as a finite number in [min, max], else throws {@link invalidParameterError}. */
export function expectNumber(parameter: string, value: unknown, min = -Infinity, max = Infinity): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < min || n > max) {
    throw invalidParameterError(parameter, `number between ${min} and ${max}`, value);
  }
  return n;
}
