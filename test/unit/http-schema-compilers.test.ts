import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { LAZY_SCHEMA_COMPILERS } from '../../src/http/app.js';

describe('fastify schema compilers loaded on first use', () => {
  it('still validates bodies and serializes replies for a route with a fastify schema', async () => {
    const app = Fastify({ schemaController: { compilersFactory: LAZY_SCHEMA_COMPILERS } });
    app.post(
      '/x',
      {
        schema: {
          body: { type: 'object', required: ['a'], properties: { a: { type: 'integer' } } },
          response: { 200: { type: 'object', properties: { a: { type: 'integer' } } } },
        },
      },
      async (req) => ({ ...(req.body as object), secret: 'dropped by the serializer' }),
    );
    const bad = await app.inject({ method: 'POST', url: '/x', payload: { b: 1 } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'FST_ERR_VALIDATION' });
    const ok = await app.inject({ method: 'POST', url: '/x', payload: { a: 1 } });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toBe('{"a":1}');
    await app.close();
  });
});
