/** The default branch of an exhaustive switch: a compile error when a case is missing, a throw if one slips through at run time. */
export function assertNever(x: never): never {
  throw new Error(`unexpected value: ${JSON.stringify(x)}`);
}
