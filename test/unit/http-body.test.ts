import { describe, expect, it } from 'vitest';
import { Type } from '@sinclair/typebox';
import { bodyChecker } from '../../src/http/body.js';
import { buildOpenApi } from '../../src/http/openapi.js';
import {
  CommandBody,
  commandBadBody,
  commandRefine,
  REBALANCE_BAD_BODY,
  RebalanceBody,
  rebalanceRefine,
} from '../../src/protocols/sharding/admin.js';

const bad = (message: string) => ({ status: 400, body: { error: 'BAD_REQUEST', message } });

describe('HTTP edge: request bodies', () => {
  it('lets a body of the schema through, and refuses others with 400 and the first error', () => {
    const check = bodyChecker({ schema: Type.Object({ n: Type.Integer() }) });
    expect(check({ n: 1 })).toBeUndefined();
    expect(check({ n: 'x' })).toEqual(bad('body.n: Expected integer'));
    expect(check(null)).toEqual(bad('body: Expected object'));
    expect(check(undefined)).toEqual(bad('a JSON body is required'));
  });

  it('an optional body may be absent, but a JSON null is still checked', () => {
    const check = bodyChecker({ schema: Type.Object({}), optional: true });
    expect(check(undefined)).toBeUndefined();
    expect(check(null)?.status).toBe(400);
  });

  it('sharding rebalance: no body, {} or {to, shards}; anything else is refused with the same message as before', () => {
    const check = bodyChecker({ schema: RebalanceBody, optional: true, refine: rebalanceRefine, message: () => REBALANCE_BAD_BODY });
    for (const ok of [undefined, {}, { to: 'c', shards: [[0, 1]] }, { to: 'c', shards: [] }]) expect(check(ok), JSON.stringify(ok)).toBeUndefined();
    for (const body of [{ to: 'c' }, { shards: 3 }, { to: 'c', shards: [[3, 1]] }, { to: 'c', shards: [[-1, 1]] }, { to: 'c', shards: [[0.5, 1]] }, { foo: 1 }, null, [], 'rebalance', 0]) {
      expect(check(body), JSON.stringify(body)).toEqual(bad(REBALANCE_BAD_BODY));
    }
  });

  it('sharding command: restart_shard {shard_id} or restart_cluster {shards}; each refusal keeps its message', () => {
    const check = bodyChecker({ schema: CommandBody, refine: commandRefine, message: (b) => commandBadBody(b, 16) });
    for (const ok of [
      { command: 'restart_shard', args: { shard_id: 3 } },
      { command: 'restart_cluster', args: { shards: [[0, 1], [4, 4]] } },
      { command: 'restart_cluster', args: { shards: [0, 4] } },
    ]) {
      expect(check(ok), JSON.stringify(ok)).toBeUndefined();
    }
    const shape = 'body must be {"command": "restart_shard" | "restart_cluster", "args": {...}}';
    expect(check('x')).toEqual(bad(shape));
    expect(check({ args: {} })).toEqual(bad(shape));
    expect(check({ command: 'explode', args: {} })).toEqual(bad('unknown command "explode" (restart_shard, restart_cluster)'));
    for (const args of [{}, { shard_id: 'x' }, { shard_id: -1 }, { shard_id: 1.5 }, undefined]) {
      expect(check({ command: 'restart_shard', args }), JSON.stringify(args)).toEqual(bad('restart_shard needs args.shard_id, an integer in [0, 16)'));
    }
    for (const shards of [[], [[3, 1]], [1, [2, 3]], 'x', [[0]]]) {
      expect(check({ command: 'restart_cluster', args: { shards } }), JSON.stringify(shards)).toEqual(
        bad('restart_cluster needs args.shards, a non-empty list of [first, last] ranges or of shard ids'),
      );
    }
  });

  it('the OpenAPI document shows the body schema and the 400', () => {
    const doc = buildOpenApi(
      [{ method: 'POST', url: '/api/v1/x', access: 'admin', summary: 's', body: { schema: RebalanceBody, optional: true }, handler: () => ({}) }],
      '0',
    ) as { paths: Record<string, { post: { requestBody: { required: boolean; content: Record<string, { schema: unknown }> }; responses: Record<string, unknown> } }> };
    const op = doc.paths['/api/v1/x']!.post;
    expect(op.requestBody.required).toBe(false);
    expect(JSON.parse(JSON.stringify(op.requestBody.content['application/json']!.schema))).toMatchObject({ anyOf: [{ type: 'object' }, { type: 'object', required: ['to', 'shards'] }] });
    expect(op.responses['400']).toBeDefined();
  });
});
