import type { HttpRoute } from '../core/dialect.js';

/** An OpenAPI 3.1 document generated from the mounted routes. */
export function buildOpenApi(routes: readonly HttpRoute[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z_]+)/g, '{$1}');
    const params = [...r.url.matchAll(/:([A-Za-z_]+)/g)].map((m) => ({
      name: m[1],
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }));
    const ok: Record<string, unknown> = { description: 'OK', content: { 'application/json': { schema: r.response ?? {} } } };
    if (r.gathered !== undefined) ok.headers = instanceHeadersDoc(r.gathered);
    const op: Record<string, unknown> = {
      summary: r.summary,
      responses: {
        '200': ok,
        ...(r.access === 'admin' ? { '401': { description: 'Missing or wrong admin token' }, '429': { description: 'Too many failed admin tokens from this address (Retry-After)' } } : { '429': { description: 'Rate limited' } }),
      },
    };
    if (params.length > 0) op.parameters = params;
    if (r.body) {
      op.requestBody = { required: r.body.optional !== true, content: { 'application/json': { schema: r.body.schema } } };
      (op.responses as Record<string, unknown>)['400'] = { description: 'The body does not match its schema (BAD_REQUEST)' };
    }
    if (r.access === 'admin') op.security = [{ bearer: [] }];
    (paths[path] ??= {})[r.method.toLowerCase()] = op;
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Muster admin API', version },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    paths,
  };
}

/** The headers of an answer gathered from every instance (see cluster/admin-view.ts). */
function instanceHeadersDoc(when: 'always' | 'cluster'): Record<string, unknown> {
  const mode = when === 'cluster' ? 'cluster mode only; ' : '';
  return {
    'muster-instances': { description: `${mode}the instances that answered, comma-separated`, schema: { type: 'string' } },
    'muster-instances-missing': { description: `${mode}instances believed alive that did not answer, comma-separated (absent when none); their rows are not in the list`, schema: { type: 'string' } },
  };
}
