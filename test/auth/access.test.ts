// Access rules through berth: each action mapping, groups, anonymous, mounts, catalog, and the path
// tricks that must never let a user act on a repository the rules deny.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startBerth, startUpstream, request, registryError, basic, htpasswdFile, waitFor, type Berth, type ConfigInput } from '../helper.js'

const USERS = ['ci-bot', 'alice', 'bob', 'admin', 'eve']

const ACCESS: Auth = {
  groups: { readers: ['alice', 'bob'] },
  access: [
    { users: ['ci-bot'], repositories: ['team-a/**'], actions: ['pull', 'push'] },
    { groups: ['readers'], repositories: ['**'], actions: ['pull'] },
    { users: ['bob'], repositories: ['bob/*'], actions: ['push', 'delete'] },
    { users: ['admin'], repositories: ['**'], actions: ['pull', 'push', 'delete', 'catalog'] }
  ],
  anonymous: { repositories: ['public/**'], actions: ['pull'] }
}
type Auth = NonNullable<ConfigInput['auth']>

async function setup (t: Parameters<typeof startBerth>[0], auth: Auth = ACCESS): Promise<{ berth: Berth, seen: string[] }> {
  const seen: string[] = []
  const up = await startUpstream((req, res) => {
    seen.push(`${req.method} ${req.url}`)
    req.resume()
    req.on('end', () => res.end(req.url?.startsWith('/v2/_catalog') === true ? '{"repositories":["bob/app","team-a/app"]}' : '{}'))
  }, { plain: true })
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], { auth: { htpasswd: htpasswdFile(t, USERS), throttle: { failures: 10000 }, ...auth } })
  return { berth, seen }
}

async function as (berth: Berth, user: string | null, method: string, path: string, password?: string): Promise<number> {
  const headers: Record<string, string | number> = user === null ? {} : { authorization: password === undefined ? basic(user) : basic(user, password) }
  const body = method === 'PUT' || method === 'PATCH' || method === 'POST' ? 'x' : undefined
  if (body !== undefined) headers['content-length'] = 1
  return (await request(berth, path, { method, headers, body })).status
}

test('each action mapping and each rule: pull, push, delete, catalog, groups, anonymous', async (t) => {
  const { berth, seen } = await setup(t)
  const cases: Array<[string | null, string, string, number]> = [
    // GET /v2/ is for every authenticated user, never anonymous
    ['eve', 'GET', '/v2/', 200],
    [null, 'GET', '/v2/', 401],
    // ci-bot: pull and push on team-a/**
    ['ci-bot', 'GET', '/v2/team-a/app/manifests/v1', 200],
    ['ci-bot', 'HEAD', '/v2/team-a/app/blobs/sha256:abc', 200],
    ['ci-bot', 'POST', '/v2/team-a/app/blobs/uploads/', 200],
    ['ci-bot', 'PATCH', '/v2/team-a/app/blobs/uploads/u1', 200],
    // a pull-only user may not write any part of an upload
    ['alice', 'PATCH', '/v2/team-a/app/blobs/uploads/u1', 403],
    ['alice', 'POST', '/v2/team-a/app/blobs/uploads/', 403],
    ['alice', 'PUT', '/v2/team-a/app/blobs/uploads/u1?digest=sha256:x', 403],
    ['ci-bot', 'PUT', '/v2/team-a/app/manifests/v1', 200],
    ['ci-bot', 'DELETE', '/v2/team-a/app/manifests/sha256:abc', 403],
    ['ci-bot', 'GET', '/v2/team-b/app/manifests/v1', 403],
    ['ci-bot', 'GET', '/v2/team-a/deep/er/app/tags/list', 200],
    ['ci-bot', 'GET', '/v2/_catalog', 403],
    // readers (alice, bob): pull everywhere, no push
    ['alice', 'GET', '/v2/team-b/app/manifests/v1', 200],
    ['alice', 'PUT', '/v2/team-b/app/manifests/v1', 403],
    ['alice', 'POST', '/v2/team-a/app/blobs/uploads/', 403],
    ['bob', 'PUT', '/v2/bob/app/manifests/v1', 200],
    ['bob', 'DELETE', '/v2/bob/app/manifests/v1', 200],
    ['bob', 'PUT', '/v2/bob/app/sub/manifests/v1', 403],
    // admin: everything, catalog included
    ['admin', 'DELETE', '/v2/team-b/app/manifests/sha256:abc', 200],
    ['admin', 'GET', '/v2/_catalog', 200],
    // eve: authenticated, no rule
    ['eve', 'GET', '/v2/team-a/app/manifests/v1', 403],
    // anonymous: pull public/**, nothing else (401 so the client knows to log in)
    [null, 'GET', '/v2/public/base/manifests/latest', 200],
    [null, 'HEAD', '/v2/public/base/blobs/sha256:abc', 200],
    [null, 'PUT', '/v2/public/base/manifests/latest', 401],
    [null, 'GET', '/v2/team-a/app/manifests/v1', 401],
    [null, 'GET', '/v2/_catalog', 401],
    // authenticated users get what anonymous gets
    ['eve', 'GET', '/v2/public/base/manifests/latest', 200]
  ]
  for (const [user, method, path, status] of cases) {
    const before = seen.length
    assert.equal(await as(berth, user, method, path), status, `${user ?? 'anonymous'} ${method} ${path}`)
    assert.equal(seen.length - before, status === 200 ? 1 : 0, `forwarded only when allowed: ${method} ${path}`)
  }
  const denied = await request(berth, '/v2/team-b/app/manifests/v1', { method: 'PUT', headers: { authorization: basic('alice', 'alice-pw'), 'content-length': 1 }, body: 'x' })
  assert.deepEqual(registryError(denied.body), { code: 'DENIED', message: 'requested access to the resource is denied', detail: [{ Type: 'repository', Name: 'team-b/app', Action: 'push' }] } as never)
  assert.equal(denied.headers['www-authenticate'], undefined)
  // the same for a repository that exists nowhere: the answer tells nothing about existence
  const nowhere = await request(berth, '/v2/no/such/manifests/v1', { headers: { authorization: basic('eve', 'eve-pw') } })
  assert.deepEqual(registryError(nowhere.body), { code: 'DENIED', message: 'requested access to the resource is denied', detail: [{ Type: 'repository', Name: 'no/such', Action: 'pull' }] } as never)
  // log.level debug: each denial and each failed login, never the password
  await as(berth, 'alice', 'GET', '/v2/team-a/app/manifests/v1', 'not-the-password')
  await waitFor(() => berth.errorLog().includes('login failed'), 3000, 'the failed login logged')
  const log = berth.errorLog()
  assert.match(log, /"user":"eve","client":"127\.0\.0\.1","action":"pull","repository":"no\/such","msg":"access denied: no rule allows it"/)
  assert.match(log, /"user":"alice","client":"127\.0\.0\.1","reason":"wrong user or password","msg":"login failed"/)
  assert.doesNotMatch(log, /not-the-password/)
})

test('a cross-repository mount also needs pull on the source repository', async (t) => {
  const { berth } = await setup(t)
  const digest = 'sha256:' + 'a'.repeat(64)
  assert.equal(await as(berth, 'ci-bot', 'POST', `/v2/team-a/app/blobs/uploads/?mount=${digest}&from=team-a/base`), 200)
  assert.equal(await as(berth, 'ci-bot', 'POST', `/v2/team-a/app/blobs/uploads/?mount=${digest}&from=secret/base`), 403)
  assert.equal(await as(berth, 'ci-bot', 'POST', `/v2/team-a/app/blobs/uploads/?from=team-a/base&mount=${digest}&from=secret/base`), 403)
  assert.equal(await as(berth, 'ci-bot', 'POST', `/v2/team-a/app/blobs/uploads/?mount=${digest}&from=Bad/Name`), 400)
  assert.equal(await as(berth, 'ci-bot', 'POST', `/v2/team-a/app/blobs/uploads/?mount=${digest}&from=public/x`), 200, 'anonymous pull covers public/**')
})

test('without access rules every authenticated user may do everything (as nginx)', async (t) => {
  const { berth } = await setup(t, {})
  assert.equal(await as(berth, 'eve', 'DELETE', '/v2/any/repo/manifests/sha256:abc'), 200)
  assert.equal(await as(berth, 'eve', 'GET', '/v2/_catalog'), 200)
  assert.equal(await as(berth, null, 'GET', '/v2/any/repo/manifests/v1'), 401)
})
