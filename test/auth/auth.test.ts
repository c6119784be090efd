// Authentication through berth: the challenge, every htpasswd format, malformed headers, throttling,
// the credential cache and the watched file.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, readFileSync, renameSync, writeFileSync, appendFileSync } from 'node:fs'
import { join } from 'node:path'
import https from 'node:https'
import Fastify from 'fastify'
import { challenged, replyChallenge, replyError, type RegistryErrorShape } from '../../src/errors.js'
import { startBerth, startUpstream, tempDir, request, registryError, waitFor, sleep, basic, type Berth, type ConfigInput } from '../helper.js'

const FIXTURES = new URL('../fixtures/', import.meta.url)
const passwords = JSON.parse(readFileSync(new URL('passwords.json', FIXTURES), 'utf8')) as Record<string, string>

async function setup (t: Parameters<typeof startBerth>[0], auth: NonNullable<ConfigInput['auth']> = {}, upstreamPlain = true): Promise<{ berth: Berth, htpasswd: string, seen: () => number }> {
  const up = await startUpstream((req, res) => { req.resume(); req.on('end', () => res.end('{}')) }, { plain: upstreamPlain })
  t.after(() => up.close())
  const dir = tempDir(t)
  const htpasswd = join(dir, 'htpasswd')
  copyFileSync(new URL('htpasswd-all', FIXTURES), htpasswd)
  const berth = await startBerth(t, [up.url], { auth: { htpasswd, realm: 'Registry', ...auth } })
  return { berth, htpasswd, seen: () => up.seen.length }
}

test('no credentials: 401 with the Basic challenge, the API version header and UNAUTHORIZED', async (t) => {
  const { berth, seen } = await setup(t)
  const res = await request(berth, '/v2/')
  assert.equal(res.status, 401)
  assert.equal(res.headers['www-authenticate'], 'Basic realm="Registry"')
  assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
  assert.deepEqual(registryError(res.body), { code: 'UNAUTHORIZED', message: 'authentication required', detail: null } as never)
  assert.equal(seen(), 0)
})

test('the 401 answered from a hook is the one the error handler makes of a thrown challenge, byte for byte', async (t) => {
  // berth answers its 401s from its hooks (plugins/auth.ts, plugins/authorization.ts); the token endpoint
  // throws one to the error handler (src/app.ts: replyError), as a hook passing it to `done` would. Both
  // must say the same thing.
  const app = Fastify()
  t.after(() => app.close())
  app.decorateRequest('bodyBytesSent', 0)
  app.setErrorHandler((err, _request, reply) => { replyError(reply, err as RegistryErrorShape) })
  app.route({ method: ['GET', 'HEAD', 'PUT'], url: '/hook', onRequest: (_request, reply) => { replyChallenge(reply, 'Basic realm="R"') }, handler: async () => 'not reached' })
  app.route({ method: ['GET', 'HEAD', 'PUT'], url: '/thrown', onRequest: (_request, reply, done) => { done(challenged(reply, 'Basic realm="R"')) }, handler: async () => 'not reached' })
  const sent: Record<string, number> = {}
  app.addHook('onResponse', async (request) => { sent[`${request.method} ${request.url}`] = request.bodyBytesSent })
  for (const method of ['GET', 'HEAD', 'PUT'] as const) {
    // A PUT whose body is not read: the answer closes the connection.
    const body = method === 'PUT' ? 'x'.repeat(10) : undefined
    const [hook, thrown] = await Promise.all(['/hook', '/thrown'].map(async (url) => await app.inject({ method, url, payload: body })))
    const headers = (r: typeof hook) => { const { date, ...rest } = r.headers; return rest }
    assert.equal(hook.statusCode, 401, method)
    assert.deepEqual(headers(hook), headers(thrown), method)
    assert.equal(hook.body, thrown.body, method)
    assert.equal(sent[`${method} /hook`], sent[`${method} /thrown`], method)
    if (method === 'PUT') assert.equal(hook.headers.connection, 'close')
    if (method === 'GET') {
      assert.deepEqual(registryError(hook.rawPayload), { code: 'UNAUTHORIZED', message: 'authentication required', detail: null } as never)
      assert.equal(sent['GET /hook'], Buffer.byteLength(hook.body))
    }
  }
})

test('every htpasswd format and UTF-8 user names and passwords log in; wrong or unknown ones get 401', async (t) => {
  const { berth, seen } = await setup(t, { throttle: { failures: 1000 } })
  for (const [user, password] of Object.entries(passwords)) {
    const ok = await request(berth, '/v2/', { headers: { authorization: basic(user, password) } })
    assert.equal(ok.status, 200, user)
    const wrong = await request(berth, '/v2/', { headers: { authorization: basic(user, password + '!') } })
    assert.equal(wrong.status, 401, `${user} wrong password`)
    assert.equal(wrong.headers['www-authenticate'], 'Basic realm="Registry"')
  }
  const unknown = await request(berth, '/v2/', { headers: { authorization: basic('nobody', 'x') } })
  assert.equal(unknown.status, 401)
  assert.equal(registryError(unknown.body).code, 'UNAUTHORIZED')
  assert.equal(seen(), Object.keys(passwords).length)
})

test('malformed Authorization headers get the same 401, never a 500', async (t) => {
  const { berth, seen } = await setup(t, { throttle: { failures: 1000 } })
  const headers = [
    'Basic !!!not-base64!!!',
    `Basic ${Buffer.from('no-colon-here').toString('base64')}`,
    'Basic ',
    'Basic',
    '',
    ' ',
    'Bearer abc.def.ghi',
    'Digest username="a", realm="Registry"',
    `Basic ${'A'.repeat(12_000)}`,
    `Basic ${Buffer.from('apr1-user:apr1 secret\u0000').toString('base64')}`,
    `Basic ${Buffer.from(':').toString('base64')}`,
    `Basic ${Buffer.from('apr1-user:apr1 secret').toString('base64')} trailing`,
    `Basic ${Buffer.from([0xff, 0xfe, 0x3a, 0xff]).toString('base64')}`
  ]
  for (const authorization of headers) {
    const res = await request(berth, '/v2/', { headers: { authorization } })
    assert.equal(res.status, 401, JSON.stringify(authorization.slice(0, 40)))
    assert.equal(res.headers['www-authenticate'], 'Basic realm="Registry"')
    assert.equal(registryError(res.body).code, 'UNAUTHORIZED')
  }
  // the scheme is case-insensitive
  assert.equal((await request(berth, '/v2/', { headers: { authorization: basic('apr1-user', 'apr1 secret').replace('Basic', 'bAsIc') } })).status, 200)
  assert.equal(seen(), 1)
})

test('throttling: after `failures` failures an address gets 429 with Retry-After, whatever X-Forwarded-For it sends; other addresses still work, then it recovers', async (t) => {
  const { berth } = await setup(t, { throttle: { failures: 3, window: '1m', block: '1500ms' } })
  let forged = 0
  const from = (localAddress: string, authorization: string) => new Promise<{ status: number, retryAfter?: string, body: Buffer }>((resolve, reject) => {
    // Each request claims another client: the throttle must count the peer (no proxy is trusted).
    const headers = { authorization, 'x-forwarded-for': `198.51.100.${++forged}`, 'x-real-ip': `198.51.100.${forged}` }
    https.get({ host: '127.0.0.1', port: berth.port, path: '/v2/', ca: berth.ca, servername: 'localhost', agent: false, localAddress, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined, body: Buffer.concat(chunks) }))
    }).on('error', reject)
  })
  const good = basic('apr1-user', 'apr1 secret')
  const bad = basic('apr1-user', 'guess')
  for (let i = 0; i < 3; i++) assert.equal((await from('127.0.0.2', bad)).status, 401)
  const blocked = await from('127.0.0.2', good)
  assert.equal(blocked.status, 429)
  assert.equal(blocked.retryAfter, '2')
  assert.equal(registryError(blocked.body).code, 'TOOMANYREQUESTS')
  assert.equal((await from('127.0.0.3', good)).status, 200, 'another address is unaffected')
  assert.equal(berth.app.authState.throttle.blocked(), 1)
  await sleep(1600)
  assert.equal((await from('127.0.0.2', good)).status, 200, 'recovered after the block')
})

test('a blocked address is answered without a password check', async (t) => {
  const { berth } = await setup(t, { throttle: { failures: 2, window: '1m', block: '1m' } })
  const bcrypt12 = basic('bcrypt-user', 'wrong')
  for (let i = 0; i < 2; i++) assert.equal((await request(berth, '/v2/', { headers: { authorization: bcrypt12 } })).status, 401)
  const users = berth.app.authState.users
  const checks = users.hashChecks
  for (let i = 0; i < 20; i++) assert.equal((await request(berth, '/v2/', { headers: { authorization: bcrypt12 } })).status, 429)
  assert.equal(users.hashChecks, checks, 'no hash was verified for a blocked address')
})

test('a verified credential is cached (keyed hash, never the password); failures are not; a file change empties it', async (t) => {
  const { berth, htpasswd } = await setup(t)
  const cache = berth.app.authState.users.cache
  assert.equal((await request(berth, '/v2/', { headers: { authorization: basic('bcrypt-user', 'bcrypt secret') } })).status, 200)
  assert.equal((await request(berth, '/v2/', { headers: { authorization: basic('bcrypt-user', 'nope') } })).status, 401)
  assert.equal(cache.size, 1)
  const start = performance.now()
  for (let i = 0; i < 20; i++) assert.equal((await request(berth, '/v2/', { headers: { authorization: basic('bcrypt-user', 'bcrypt secret') } })).status, 200)
  assert.equal(cache.size, 1)
  t.diagnostic(`20 cached bcrypt cost-12 logins: ${(performance.now() - start).toFixed(0)} ms`)
  const { inspect } = await import('node:util')
  assert.doesNotMatch(inspect(cache, { showHidden: true, depth: 5 }), /bcrypt secret/)
  appendFileSync(htpasswd, readFileSync(new URL('htpasswd-all', FIXTURES), 'utf8').split('\n')[0].replace('apr1-user', 'apr1-copy') + '\n')
  await waitFor(() => cache.size === 0, 3000, 'cache emptied by the reload')
})

test('the htpasswd file is watched: a rename (editors, htpasswd) and an in-place write apply within 2 s; a broken file keeps the old users', async (t) => {
  const { berth, htpasswd } = await setup(t)
  const login = (u: string, p: string) => request(berth, '/v2/', { headers: { authorization: basic(u, p) } }).then((r) => r.status)
  const line = (await import('node:child_process')).execFileSync('htpasswd', ['-nbB', '-C', '4', 'newbie', 'fresh pass'], { encoding: 'utf8' }).trim()
  assert.equal(await login('newbie', 'fresh pass'), 401)
  // write a new file and rename it over the old one
  writeFileSync(htpasswd + '.tmp', readFileSync(htpasswd, 'utf8') + line + '\n')
  renameSync(htpasswd + '.tmp', htpasswd)
  const t0 = Date.now()
  while (await login('newbie', 'fresh pass') !== 200) {
    assert.ok(Date.now() - t0 < 2000, 'rename applied within 2 s')
    await sleep(100)
  }
  // in-place write that removes apr1-user
  const t1 = Date.now()
  writeFileSync(htpasswd, readFileSync(htpasswd, 'utf8').split('\n').filter((l) => !l.startsWith('apr1-user:')).join('\n'))
  while (await login('apr1-user', 'apr1 secret') !== 401) {
    assert.ok(Date.now() - t1 < 2000, 'in-place write applied within 2 s')
    await sleep(100)
  }
  // a broken file: the previous users stay, the error log says why
  writeFileSync(htpasswd, 'broken-line-without-colon\nnewbie:plaintext\n')
  await waitFor(() => readFileSync(join(berth.dir, 'error.log'), 'utf8').includes('htpasswd not reloaded'), 3000, 'error logged')
  assert.equal(await login('newbie', 'fresh pass'), 200)
  const log = readFileSync(join(berth.dir, 'error.log'), 'utf8')
  assert.match(log, /line 1: expected \\"user:hash\\"/)
  assert.match(log, /line 2: user \\"newbie\\": plain-text password/)
})

test('the access log shows the user; no password or Authorization value in any log', async (t) => {
  const { berth } = await setup(t)
  const auth = basic('jürgen', passwords['jürgen'])
  assert.equal((await request(berth, '/v2/', { headers: { authorization: auth } })).status, 200)
  assert.equal((await request(berth, '/v2/', { headers: { authorization: basic('apr1-user', 'not-the-password') } })).status, 401)
  await berth.close()
  const access = berth.accessLog()
  assert.match(access, /^127\.0\.0\.1 - j\\xC3\\xBCrgen \[/m)
  assert.match(access, /^127\.0\.0\.1 - - \[.*" 401 /m)
  const all = access + readFileSync(join(berth.dir, 'error.log'), 'utf8')
  for (const secret of [auth.slice(6), passwords['jürgen'], 'not-the-password', basic('apr1-user', 'not-the-password').slice(6)]) {
    assert.ok(!all.includes(secret), `log holds ${secret}`)
  }
})
