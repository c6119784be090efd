// Custom plugins: the two shipped examples, options, encapsulation, what a plugin sees, broken plugins.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync, mkdirSync, copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { spawnSync } from 'node:child_process'
import { execFileSync } from 'node:child_process'
import { startBerth, startUpstream, request, registryError, tempDir } from '../helper.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const example = (name: string) => join(ROOT, 'plugins', 'examples', name)

test('block-old-docker refuses docker clients older than 1.6 with 404; newer ones pass', async (t) => {
  const up = await startUpstream((req, res) => res.end('{}'))
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], { plugins: [{ path: example('block-old-docker.ts') }] })
  for (const [agent, status] of [['docker/1.5.0 go/go1.4', 404], ['Go 1.1 package http', 404], ['docker/1.5.1-dev', 200], ['docker/1.6.0', 200], ['docker/24.0.7 go/go1.20.10', 200], ['skopeo/1.9.3', 200]] as const) {
    const res = await request(berth, '/v2/', { headers: { 'user-agent': agent } })
    assert.equal(res.status, status, agent)
    if (status === 404) assert.equal(registryError(res.body).code, 'UNSUPPORTED')
  }
})

test('rate-by-repo takes its options and limits each repository on its own', async (t) => {
  const up = await startUpstream((req, res) => res.end('{}'))
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], { plugins: [{ path: example('rate-by-repo.ts'), options: { perMinute: 3 } }] })
  const statuses = []
  for (let i = 0; i < 4; i++) statuses.push((await request(berth, '/v2/a/manifests/v1')).status)
  assert.deepEqual(statuses, [200, 200, 200, 429])
  const limited = await request(berth, '/v2/a/manifests/v1')
  assert.equal(registryError(limited.body).code, 'TOOMANYREQUESTS')
  assert.ok(Number(limited.headers['retry-after']) > 0)
  assert.equal((await request(berth, '/v2/b/manifests/v1')).status, 200, 'another repository is not limited')
  assert.equal((await request(berth, '/v2/')).status, 200, 'no repository, no limit')
})

test('plugins run after auth (they see request.user and request.registryAction), in order, encapsulated', async (t) => {
  const dir = tempDir(t)
  const seen: string[] = []
  const up = await startUpstream((req, res) => { seen.push(req.url ?? ''); res.end('{}') })
  t.after(() => up.close())
  mkdirSync(join(dir, 'p'))
  writeFileSync(join(dir, 'p', 'first.ts'), `
import type { FastifyInstance } from 'fastify'
import type {} from '${join(ROOT, 'src', 'index.js')}'
export default async function first (fastify: FastifyInstance, opts: { tag: string }) {
  fastify.decorate('firstOnly', opts.tag)
  fastify.addHook('onRequest', async (request, reply) => {
    ;(globalThis as Record<string, unknown>).firstSeesSecond = fastify.hasDecorator('secondOnly')
    reply.header('x-plugin', \`\${opts.tag}:\${request.user?.name ?? '-'}:\${request.registryAction?.kind}:\${request.registryAction?.repository}\`)
  })
}
`)
  writeFileSync(join(dir, 'p', 'second.js'), `
export default async function second (fastify) {
  fastify.decorate('secondOnly', true)
  fastify.addHook('onRequest', async (request, reply) => {
    reply.header('x-first-sees-second', String(globalThis.firstSeesSecond))
    reply.header('x-order', reply.hasHeader('x-plugin') ? 'after-first' : 'before-first')
  })
}
`)
  const htpasswd = join(dir, 'htpasswd')
  writeFileSync(htpasswd, execFileSync('htpasswd', ['-nbB', '-C', '4', 'alice', 'pw'], { encoding: 'utf8' }))
  const berth = await startBerth(t, [up.url], {
    auth: { htpasswd },
    plugins: [{ path: join(dir, 'p', 'first.ts'), options: { tag: 'hello' } }, { path: join(dir, 'p', 'second.js') }]
  })
  const res = await request(berth, '/v2/team/app/manifests/v1', { headers: { authorization: 'Basic ' + Buffer.from('alice:pw').toString('base64') } })
  assert.equal(res.status, 200)
  assert.deepEqual(seen, ['/v2/team/app/manifests/v1'])
  assert.equal(res.headers['x-plugin'], 'hello:alice:manifest:team/app', 'headers a plugin adds reach the client')
  assert.equal(res.headers['x-first-sees-second'], 'false', 'a later plugin\'s decorators do not leak into an earlier one')
  assert.equal(res.headers['x-order'], 'after-first')
  assert.equal(berth.app.hasDecorator('firstOnly'), false, 'nor into berth')
  assert.equal(berth.app.hasDecorator('secondOnly'), false)
  // refused by auth before any plugin runs
  assert.equal((await request(berth, '/v2/team/app/manifests/v1')).status, 401)
  assert.equal(seen.length, 1)
})

test('a plugin that fails to load stops berth check and berth start with its path and error', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'syntax.ts'), 'export default async function (fastify) { this is not code }\n')
  writeFileSync(join(dir, 'nodefault.mjs'), 'export const plugin = 1\n')
  const file = join(dir, 'berth.yaml')
  copyFileSync(example('block-old-docker.ts'), join(dir, 'ok.ts'))
  writeFileSync(file, [
    'upstream: { servers: [ { url: "http://127.0.0.1:5000" } ] }',
    'plugins:',
    '  - { path: syntax.ts }',
    '  - { path: nodefault.mjs }',
    '  - { path: missing.ts }'
  ].join('\n'))
  const bin = join(ROOT, 'bin', 'berth.js')
  const check = spawnSync(process.execPath, [bin, 'check', '--config', file], { encoding: 'utf8' })
  assert.equal(check.status, 1)
  assert.match(check.stderr, new RegExp(`plugins\\[0\\]\\.path: cannot load ${join(dir, 'syntax.ts')}: `))
  assert.match(check.stderr, new RegExp(`plugins\\[1\\]\\.path: ${join(dir, 'nodefault.mjs')}: the default export is not a Fastify plugin`))
  assert.match(check.stderr, new RegExp(`plugins\\[2\\]\\.path: cannot load ${join(dir, 'missing.ts')}`))
  const start = spawnSync(process.execPath, [bin, 'start', '--config', file], { encoding: 'utf8', timeout: 20_000 })
  assert.equal(start.status, 1)
  assert.match(start.stderr, /plugins\[0\]\.path: cannot load/)
})

test('a plugin\'s route schemas work as in Fastify (header keys lowercased, coercion, response filtering); without one berth loads no schema compiler', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'schema.mjs'), `
export default async function (fastify) {
  fastify.get('/plugin/echo', {
    schema: {
      headers: { type: 'object', required: ['X-Team'], properties: { 'X-Team': { type: 'string', minLength: 2 } } },
      querystring: { type: 'object', required: ['n'], properties: { n: { type: 'integer' } } },
      response: { 200: { type: 'object', properties: { n: { type: 'integer' }, team: { type: 'string' } } } }
    }
  }, async (request) => ({ n: request.query.n, team: request.headers['x-team'], secret: 'not in the schema' }))
}
`)
  const up = await startUpstream((req, res) => res.end('{}'))
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], { plugins: [{ path: join(dir, 'schema.mjs') }] })
  const ok = await request(berth, '/plugin/echo?n=3', { headers: { 'x-team': 'ops' } })
  assert.equal(ok.status, 200, ok.body.toString())
  assert.deepEqual(JSON.parse(ok.body.toString()), { n: 3, team: 'ops' })
  assert.equal((await request(berth, '/plugin/echo?n=3')).status, 400, 'the required header')
  assert.equal((await request(berth, '/plugin/echo?n=x', { headers: { 'x-team': 'ops' } })).status, 400, 'the querystring')

  // A berth without such a plugin, in a process of its own: Fastify's compilers were never required.
  const script = `
    import { createRequire } from 'node:module'
    import { startBerth, startUpstream } from ${JSON.stringify(join(ROOT, 'test', 'helper.ts'))}
    const up = await startUpstream((req, res) => res.end('{}'))
    const closers = []
    const berth = await startBerth({ after: (fn) => closers.push(fn) }, [up.url])
    const loaded = Object.keys(createRequire(import.meta.url).cache).filter((f) => /node_modules\\/(ajv|@fastify\\/(ajv|fast-json-stringify)-compiler)\\/|fast-json-stringify\\/index\\.js/.test(f))
    console.log(JSON.stringify({ port: berth.port, loaded }))
    for (const fn of closers.reverse()) await fn()
    await up.close()
  `
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', cwd: ROOT, timeout: 30_000 })
  assert.equal(run.status, 0, run.stderr)
  const out = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as { port?: number, loaded?: string[] }
  assert.ok((out.port ?? 0) > 0, 'berth listened')
  assert.deepEqual(out.loaded, [])
})
