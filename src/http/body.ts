import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { HttpBody, HttpReply } from '../core/dialect.js';
import { httpError } from '../common/errors.js';

/**
 * The HTTP edge's check of a route's request body (HttpRoute.body): the schema is
 * compiled once, when the route is mounted. Returns the 400 to answer, or undefined
 * when the handler may run.
 */
export function bodyChecker(spec: HttpBody): (body: unknown) => HttpReply | undefined {
  const check = TypeCompiler.Compile(spec.schema);
  return (body) => {
    if (body === undefined && spec.optional) return undefined;
    if (check.Check(body) && (spec.refine === undefined || spec.refine(body))) return undefined;
    return httpError('BAD_REQUEST', spec.message ? spec.message(body) : describe(check, body));
  };
}

function describe(check: ReturnType<typeof TypeCompiler.Compile>, body: unknown): string {
  if (body === undefined) return 'a JSON body is required';
  const first = check.Errors(body).First();
  if (first === undefined) return 'the body is not valid';
  return first.path === '' ? `body: ${first.message}` : `body${first.path.replace(/\//g, '.')}: ${first.message}`;
}
