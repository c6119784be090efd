// The access verdict without sockets: every repository a request names, with the action it needs.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AccessPolicy, decide, globToRegExp } from '../../src/auth/rules.js'
import { parseRegistryPath } from '../../src/registry/path.js'
import { parseConfig } from '../../src/config/load.js'
import type { BerthUser } from '../../src/types.js'

const rules = (yaml: string) => new AccessPolicy(parseConfig(`upstream: { servers: [ { url: "http://127.0.0.1:1" } ] }\nauth:\n  htpasswd: /x\n${yaml}`, '/x.yaml').auth as NonNullable<ReturnType<typeof parseConfig>['auth']>)
/** A user as the auth plugin makes one (null: anonymous). */
const who = (name: string | null): BerthUser | null => name === null ? null : { name }
const policy = rules(`
  groups: { readers: [alice] }
  access:
    - { users: [bot], repositories: ["team/**"], actions: [pull, push] }
    - { groups: [readers], repositories: ["team/**"], actions: [pull] }
    - { users: [lister], repositories: ["team/*"], actions: [catalog] }
    - { users: [lister], repositories: [team/a], actions: [pull] }
  anonymous: { repositories: ["public/**"], actions: [pull] }
`)
const verdict = (user: string | null, method: string, url: string) => {
  const path = url.split('?')[0]
  const v = decide(policy, who(user), parseRegistryPath(path), method, url)
  return v.allowed ? 'allowed' : v.why
}

test('each action needs its rule; anonymous needs a challenge, a user a denial', () => {
  const cases: Array<[string | null, string, string, string]> = [
    ['bot', 'GET', '/v2/team/app/manifests/v1', 'allowed'],
    ['bot', 'PATCH', '/v2/team/app/blobs/uploads/u', 'allowed'],
    ['bot', 'DELETE', '/v2/team/app/manifests/v1', 'denied'],
    ['alice', 'GET', '/v2/team/x/y/blobs/sha256:a', 'allowed'],
    ['alice', 'PATCH', '/v2/team/app/blobs/uploads/u', 'denied'],
    ['alice', 'PUT', '/v2/team/app/manifests/v1', 'denied'],
    ['alice', 'POST', '/v2/team/app/blobs/uploads/', 'denied'],
    ['alice', 'GET', '/v2/other/app/manifests/v1', 'denied'],
    [null, 'GET', '/v2/public/app/manifests/v1', 'allowed'],
    [null, 'GET', '/v2/team/app/manifests/v1', 'challenge'],
    [null, 'PUT', '/v2/public/app/manifests/v1', 'challenge'],
    [null, 'GET', '/v2/', 'challenge'],
    ['nobody-with-rules', 'GET', '/v2/', 'allowed'],
    ['bot', 'GET', '/healthz', 'not-api'],
    [null, 'GET', '/v2/team/app/nonsense/x', 'not-api']
  ]
  for (const [user, method, url, expected] of cases) assert.equal(verdict(user, method, url), expected, `${user} ${method} ${url}`)
})

test('a mount needs pull on every `from`; a bad name is NAME_INVALID', () => {
  const up = '/v2/team/x/blobs/uploads/?mount=sha256:a'
  assert.equal(verdict('bot', 'POST', `${up}&from=team/y`), 'allowed')
  assert.equal(verdict('bot', 'POST', `${up}&from=private/y`), 'denied')
  assert.equal(verdict('bot', 'POST', `${up}&from=team/y&from=private/y`), 'denied', 'every value, not the first')
  assert.equal(verdict('bot', 'POST', `${up}&from=Private/Y`), 'name')
  assert.equal(verdict('bot', 'POST', `${up}&from=public/y`), 'allowed', 'anonymous pull covers it')
  assert.equal(verdict('bot', 'GET', '/v2/team/x/blobs/uploads/u?from=private/y'), 'allowed', 'only a POST mounts')
})

test('the catalog: refused without a catalog rule; filtered to what a catalog rule covers and the user may pull', () => {
  assert.equal(verdict('bot', 'GET', '/v2/_catalog'), 'denied')
  assert.equal(verdict(null, 'GET', '/v2/_catalog'), 'challenge')
  const v = decide(policy, who('lister'), parseRegistryPath('/v2/_catalog'), 'GET', '/v2/_catalog')
  assert.ok(v.allowed && v.catalog !== null)
  assert.deepEqual(['team/a', 'team/b', 'team/a/deep', 'public/x', 'other'].filter(v.catalog), ['team/a'])
  const open = rules('')
  const all = decide(open, who('anyone'), parseRegistryPath('/v2/_catalog'), 'GET', '/v2/_catalog')
  assert.deepEqual(all, { allowed: true, catalog: null }, 'no rules: every user lists everything, unfiltered')
})

test('a refusal says which action on which repository; a request that is no API call, or no action at all, is not-api', () => {
  const v = decide(policy, who('alice'), parseRegistryPath('/v2/team/app/manifests/v1'), 'PUT', '/v2/team/app/manifests/v1')
  assert.deepEqual(v, { allowed: false, why: 'denied', action: 'push', repository: 'team/app' })
  const from = decide(policy, who('bot'), parseRegistryPath('/v2/team/x/blobs/uploads/'), 'POST', '/v2/team/x/blobs/uploads/?mount=sha256:a&from=private/y')
  assert.deepEqual(from, { allowed: false, why: 'denied', action: 'pull', repository: 'private/y' })
  assert.deepEqual(decide(policy, who('bot'), parseRegistryPath('/v2/_catalog'), 'GET', '/v2/_catalog'), { allowed: false, why: 'denied', action: 'catalog', repository: undefined })
  assert.deepEqual(decide(policy, who('bot'), null, 'GET', '/v2/'), { allowed: false, why: 'not-api' })
  assert.equal(verdict('bot', 'PUT', '/v2/team/app/manifests/v1?from=private/y'), 'allowed', 'a `from` outside an upload names nothing')
  assert.equal(verdict('bot', 'POST', '/v2/team/app/manifests/v1?from=private/y'), 'allowed', 'nor on a POST elsewhere')
})

test('rules: groups expand to their members, any of a rule\'s globs may match, no rules means every user but never anonymous', () => {
  const many = rules(`
  groups: { ops: [carol, dave], empty: [] }
  access:
    - { groups: [ops, empty], users: [erin], repositories: ["infra/*", "tools/**"], actions: [pull] }
`)
  for (const user of ['carol', 'dave', 'erin']) {
    assert.equal(many.allows(who(user), 'pull', 'infra/x'), true, user)
    assert.equal(many.allows(who(user), 'pull', 'tools/a/b'), true, `${user}: the second glob`)
    assert.equal(many.allows(who(user), 'pull', 'other/x'), false, user)
  }
  assert.equal(many.allows(who('frank'), 'pull', 'infra/x'), false)
  assert.equal(many.allows(who(null), 'pull', 'infra/x'), false)
  const none = rules('')
  assert.equal(none.allows(who('anyone'), 'delete', 'x/y'), true)
  assert.equal(none.allows(who(null), 'pull', 'x/y'), false, 'anonymous clients need an anonymous rule')
  assert.equal(none.catalogFilter(who(null)), null)
  const anon = rules(`
  access:
    - { users: [bot], repositories: ["**"], actions: [pull] }
  anonymous: { repositories: ["public/**"], actions: [pull, catalog] }
`)
  const listing = anon.catalogFilter(who(null))
  assert.ok(listing !== null)
  assert.deepEqual(['public/a', 'private/a'].filter(listing), ['public/a'], 'an anonymous catalog is filtered too')
  const anonOnly = rules('  anonymous: { repositories: ["public/**"], actions: [pull, catalog] }\n').catalogFilter(who(null))
  assert.ok(anonOnly !== null)
  assert.deepEqual(['public/a', 'private/a'].filter(anonOnly), ['public/a'], 'also without access rules')
})

test('globs: * within a segment, ** across segments, ? one character, the rest literal', () => {
  assert.ok(globToRegExp('team-a/**').test('team-a/app'))
  assert.ok(globToRegExp('team-a/**').test('team-a/x/y'))
  assert.ok(!globToRegExp('team-a/**').test('team-a'))
  assert.ok(!globToRegExp('team-a/**').test('team-ab/x'))
  assert.ok(globToRegExp('**').test('anything/at/all'))
  assert.ok(globToRegExp('bob/*').test('bob/app'))
  assert.ok(!globToRegExp('bob/*').test('bob/app/x'))
  assert.ok(globToRegExp('app-?').test('app-1'))
  assert.ok(!globToRegExp('app-?').test('app-12'))
  assert.ok(!globToRegExp('a.b').test('axb'), 'dots are literal')
  // picomatch's other syntax is off: what the schema would refuse anyway is never a pattern here
  assert.ok(globToRegExp('team/*').test('team/.hidden'), '* matches a leading dot too')
  assert.ok(!globToRegExp('a{b,c}').test('ab'), 'no braces')
  assert.ok(!globToRegExp('+(a)').test('a'), 'no extglobs')
  assert.ok(!globToRegExp('!a').test('b'), 'no negation')
  assert.ok(globToRegExp('a*b').test('a-x-b'))
  assert.ok(!globToRegExp('a*b').test('a/b'))
  assert.ok(globToRegExp('**/x').test('a/b/x'))
  assert.ok(globToRegExp('a/*/**').test('a/b/c'))
  assert.ok(!globToRegExp('a/*/**').test('a/b'))
  assert.ok(globToRegExp('*a*').test('bab'))
  assert.ok(!globToRegExp('*a*').test('b/a/b'))
})
